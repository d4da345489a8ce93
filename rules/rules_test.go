//go:build linux

package rules

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBuildString(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{
			name: "gateway, one queue",
			spec: Spec{Mode: ModeGateway, First: 0, Count: 1},
			want: `# ipset restore
create tcpnorm4-q0 hash:net family inet maxelem 1048576 -exist
create tcpnorm6-q0 hash:net family inet6 maxelem 1048576 -exist
# iptables-restore --noflush
*mangle
:TCPNORM-FWD - [0:0]
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q0 src -j NFQUEUE --queue-num 0 --queue-bypass
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q0 dst -j NFQUEUE --queue-num 0 --queue-bypass
-I FORWARD 1 -j TCPNORM-FWD
COMMIT
# ip6tables-restore --noflush
*mangle
:TCPNORM-FWD - [0:0]
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q0 src -j NFQUEUE --queue-num 0 --queue-bypass
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q0 dst -j NFQUEUE --queue-num 0 --queue-bypass
-I FORWARD 1 -j TCPNORM-FWD
COMMIT
`,
		},
		{
			name: "gateway, four queues from 10",
			spec: Spec{Mode: ModeGateway, First: 10, Count: 4},
			want: `# ipset restore
create tcpnorm4-q10 hash:net family inet maxelem 1048576 -exist
create tcpnorm6-q10 hash:net family inet6 maxelem 1048576 -exist
# iptables-restore --noflush
*mangle
:TCPNORM-FWD - [0:0]
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q10 src -j NFQUEUE --queue-balance 10:13 --queue-bypass
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q10 dst -j NFQUEUE --queue-balance 10:13 --queue-bypass
-I FORWARD 1 -j TCPNORM-FWD
COMMIT
# ip6tables-restore --noflush
*mangle
:TCPNORM-FWD - [0:0]
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q10 src -j NFQUEUE --queue-balance 10:13 --queue-bypass
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q10 dst -j NFQUEUE --queue-balance 10:13 --queue-bypass
-I FORWARD 1 -j TCPNORM-FWD
COMMIT
`,
		},
		{
			name: "host, one queue",
			spec: Spec{Mode: ModeHost, First: 7, Count: 1},
			want: `# ipset restore
create tcpnorm4-q7 hash:net family inet maxelem 1048576 -exist
create tcpnorm6-q7 hash:net family inet6 maxelem 1048576 -exist
# iptables-restore --noflush
*mangle
:TCPNORM-OUT - [0:0]
:TCPNORM-IN - [0:0]
-A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q7 dst -j NFQUEUE --queue-num 7 --queue-bypass
-A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q7 src -j NFQUEUE --queue-num 7 --queue-bypass
-I OUTPUT 1 -j TCPNORM-OUT
-I INPUT 1 -j TCPNORM-IN
COMMIT
# ip6tables-restore --noflush
*mangle
:TCPNORM-OUT - [0:0]
:TCPNORM-IN - [0:0]
-A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q7 dst -j NFQUEUE --queue-num 7 --queue-bypass
-A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q7 src -j NFQUEUE --queue-num 7 --queue-bypass
-I OUTPUT 1 -j TCPNORM-OUT
-I INPUT 1 -j TCPNORM-IN
COMMIT
`,
		},
		{
			name: "host, two queues",
			spec: Spec{Mode: ModeHost, First: 0, Count: 2, Mark: 0xff000000},
			want: `# ipset restore
create tcpnorm4-q0 hash:net family inet maxelem 1048576 -exist
create tcpnorm6-q0 hash:net family inet6 maxelem 1048576 -exist
# iptables-restore --noflush
*mangle
:TCPNORM-OUT - [0:0]
:TCPNORM-IN - [0:0]
:TCPNORM-FLOW - [0:0]
-A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q0 dst -j NFQUEUE --queue-balance 0:1 --queue-bypass
-A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm4-q0 src -j NFQUEUE --queue-balance 0:1 --queue-bypass
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-FLOW -j CONNMARK --restore-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-A TCPNORM-FLOW -m conntrack --ctdir ORIGINAL -j MARK --set-xmark 0x40000000/0x40000000
-A TCPNORM-FLOW -m mark --mark 0x60000000/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x0/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x30000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3
-A TCPNORM-FLOW -m mark --mark 0x50000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3
-A TCPNORM-FLOW -m mark --mark 0x70000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x10000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-I OUTPUT 1 -j TCPNORM-OUT
-I INPUT 1 -j TCPNORM-IN
COMMIT
*filter
:TCPNORM-SAVE - [0:0]
-A TCPNORM-SAVE -p tcp -m tcp --tcp-flags SYN SYN -m mark ! --mark 0x0/0x3f000000 -j CONNMARK --save-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-I OUTPUT 1 -j TCPNORM-SAVE
-I INPUT 1 -j TCPNORM-SAVE
COMMIT
# ip6tables-restore --noflush
*mangle
:TCPNORM-OUT - [0:0]
:TCPNORM-IN - [0:0]
:TCPNORM-FLOW - [0:0]
-A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q0 dst -j NFQUEUE --queue-balance 0:1 --queue-bypass
-A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm6-q0 src -j NFQUEUE --queue-balance 0:1 --queue-bypass
-A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW
-A TCPNORM-FLOW -j CONNMARK --restore-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-A TCPNORM-FLOW -m conntrack --ctdir ORIGINAL -j MARK --set-xmark 0x40000000/0x40000000
-A TCPNORM-FLOW -m mark --mark 0x60000000/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x0/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x30000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3
-A TCPNORM-FLOW -m mark --mark 0x50000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3
-A TCPNORM-FLOW -m mark --mark 0x70000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-A TCPNORM-FLOW -m mark --mark 0x10000000/0x70000000 -m mark ! --mark 0x0/0x10000000 -j NFQUEUE --queue-balance 2:3 --queue-bypass
-I OUTPUT 1 -j TCPNORM-OUT
-I INPUT 1 -j TCPNORM-IN
COMMIT
*filter
:TCPNORM-SAVE - [0:0]
-A TCPNORM-SAVE -p tcp -m tcp --tcp-flags SYN SYN -m mark ! --mark 0x0/0x3f000000 -j CONNMARK --save-mark --nfmask 0x3f000000 --ctmask 0x3f000000
-I OUTPUT 1 -j TCPNORM-SAVE
-I INPUT 1 -j TCPNORM-SAVE
COMMIT
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Build(tt.spec)
			if err != nil {
				t.Fatalf("Build(%+v): %v", tt.spec, err)
			}
			if diff := cmp.Diff(tt.want, rs.String()); diff != "" {
				t.Errorf("String() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{name: "no queues", spec: Spec{Mode: ModeGateway, Count: 0}, want: "at least 1"},
		{name: "past 65535", spec: Spec{Mode: ModeGateway, First: 65535, Count: 2}, want: "end at 65535"},
		{name: "bad mode", spec: Spec{Mode: "router", Count: 1}, want: `mode "router"`},
		{name: "empty mode", spec: Spec{Count: 1}, want: `mode ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build(%+v) = %v, want error containing %q", tt.spec, err, tt.want)
			}
		})
	}
}

func TestParseSave(t *testing.T) {
	save := `# Generated by iptables-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:TCPNORM-FWD - [0:0]
:TCPNORM-IN - [0:0]
-A FORWARD -j TCPNORM-FWD
-A FORWARD -s 198.18.0.1/32 -j TCPNORM-FWD
-A FORWARD -j TCPNORM-FWD
-A OUTPUT -j TCPNORM-OUT
-A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE --queue-num 0 --queue-bypass
COMMIT
*filter
-A INPUT -j TCPNORM-IN
COMMIT
`
	got := parseSave(save, Known)
	want := saved{
		chains: map[string]bool{"PREROUTING": true, "FORWARD": true, "TCPNORM-FWD": true, "TCPNORM-IN": true},
		jumps:  map[Jump]int{Known[0]: 2, Known[1]: 1},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(saved{})); diff != "" {
		t.Errorf("parseSave (-want +got):\n%s", diff)
	}
}

func TestUpdateScript(t *testing.T) {
	tests := []struct {
		name     string
		first    uint16
		prefixes []string // "" is the zero (invalid) prefix
		want     string
	}{
		{
			name:  "empty",
			first: 0,
			want: `create tcpnorm4-q0 hash:net family inet maxelem 1048576 -exist
create tcpnorm4-q0-new hash:net family inet maxelem 1048576 -exist
flush tcpnorm4-q0-new
swap tcpnorm4-q0-new tcpnorm4-q0
destroy tcpnorm4-q0-new
create tcpnorm6-q0 hash:net family inet6 maxelem 1048576 -exist
create tcpnorm6-q0-new hash:net family inet6 maxelem 1048576 -exist
flush tcpnorm6-q0-new
swap tcpnorm6-q0-new tcpnorm6-q0
destroy tcpnorm6-q0-new
`,
		},
		{
			name:     "both families, unmasked, /0 halved, invalid skipped",
			first:    12,
			prefixes: []string{"198.18.3.7/24", "2001:2:0:3::2/128", "0.0.0.0/0", "::/0", "::ffff:198.18.0.0/112", ""},
			want: `create tcpnorm4-q12 hash:net family inet maxelem 1048576 -exist
create tcpnorm4-q12-new hash:net family inet maxelem 1048576 -exist
flush tcpnorm4-q12-new
add tcpnorm4-q12-new 198.18.3.0/24 -exist
add tcpnorm4-q12-new 0.0.0.0/1 -exist
add tcpnorm4-q12-new 128.0.0.0/1 -exist
swap tcpnorm4-q12-new tcpnorm4-q12
destroy tcpnorm4-q12-new
create tcpnorm6-q12 hash:net family inet6 maxelem 1048576 -exist
create tcpnorm6-q12-new hash:net family inet6 maxelem 1048576 -exist
flush tcpnorm6-q12-new
add tcpnorm6-q12-new 2001:2:0:3::2/128 -exist
add tcpnorm6-q12-new ::/1 -exist
add tcpnorm6-q12-new 8000::/1 -exist
add tcpnorm6-q12-new ::ffff:198.18.0.0/112 -exist
swap tcpnorm6-q12-new tcpnorm6-q12
destroy tcpnorm6-q12-new
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps []netip.Prefix
			for _, p := range tt.prefixes {
				var pf netip.Prefix
				if p != "" {
					pf = netip.MustParsePrefix(p)
				}
				ps = append(ps, pf)
			}
			s := Spec{Mode: ModeGateway, First: tt.first, Count: 1}
			if diff := cmp.Diff(tt.want, s.UpdateScript(ps)); diff != "" {
				t.Errorf("UpdateScript (-want +got):\n%s", diff)
			}
		})
	}
}
