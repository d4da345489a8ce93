package normalize

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket/layers"
)

// Real SYN layouts. Hex is the IP packet; the tcpdump line above each says
// what it holds.
const (
	// Linux 6.18, captured on a veth in a test namespace (the checksum is
	// the unfinished pseudo-header sum of CHECKSUM_PARTIAL):
	// IP 198.18.7.1.51836 > 198.18.7.2.25: Flags [S], seq 1712211467, win 64240,
	// options [mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10], length 0
	linuxSYN = `4500 003c 3174 4000 4006 6f20 c612 0701
		c612 0702 ca7c 0019 660e 460b 0000 0000
		a002 faf0 9a56 0000 0204 05b4 0402 080a
		7013 a710 0000 0000 0103 030a`
	// IP 198.18.7.2.25 > 198.18.7.1.51836: Flags [S.], seq 1862513551, ack 1712211468,
	// win 65160, options [mss 1460,sackOK,TS val 772231631 ecr 1880336144,nop,wscale 10], length 0
	linuxSYNACK = `4500 003c 0000 4000 4006 a094 c612 0702
		c612 0701 0019 ca7c 6f03 b38f 660e 460c
		a012 fe88 9a56 0000 0204 05b4 0402 080a
		2e07 51cf 7013 a710 0103 030a`
	// Windows 10, from a published Wireshark walk-through (IP checksum left
	// to offload, as captured):
	// IP 192.168.1.30.59423 > 35.178.194.78.443: Flags [S], seq 3985401339, win 64240,
	// options [mss 1460,nop,wscale 8,nop,nop,sackOK], length 0
	windowsSYN = `4500 0034 5a29 4000 8006 0000 c0a8 011e
		23b2 c24e e81f 01bb ed8c 65fb 0000 0000
		8002 faf0 a7ed 0000 0204 05b4 0103 0308
		0101 0402`
)

var (
	lab4   = netip.MustParsePrefix("198.18.0.0/15")
	lab6   = netip.MustParsePrefix("2001:2::/48")
	remote = netip.MustParsePrefix("198.18.7.2/32")
)

func table(p *Policy, prefixes ...netip.Prefix) Table {
	var t ListTable
	for _, pf := range prefixes {
		t = append(t, ListEntry{Prefix: pf, Policy: p})
	}
	return t
}

func stripAll() *Policy {
	return &Policy{Name: "strip", Direction: Both, WindowScale: WSStrip, Timestamps: TSStrip,
		StripSACKOK: true, MSSMax: 1360, StripUnknown: true, ClearECN: true}
}

// fixed returns the fixture with a finished checksum.
func fixed(t *testing.T, h string) []byte {
	b := unhex(t, h)
	fixCsum(t, b)
	return b
}

func TestLinuxHandshake(t *testing.T) {
	tests := []struct {
		name       string
		pol        *Policy
		wantSYN    string
		wantSYNACK string
		changes    [2]Change
	}{
		{
			name:       "strip window scale",
			pol:        &Policy{Direction: Both, WindowScale: WSStrip},
			wantSYN:    "mss 1460,sackOK,TS val 1880336144 ecr 0,nop,nop,nop,nop",
			wantSYNACK: "mss 1460,sackOK,TS val 772231631 ecr 1880336144,nop,nop,nop,nop",
			changes:    [2]Change{ChWSStripped, ChWSStripped},
		},
		{
			name:       "strip timestamps",
			pol:        &Policy{Direction: Outbound, Timestamps: TSStrip},
			wantSYN:    "mss 1460,sackOK,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,wscale 10",
			wantSYNACK: "mss 1460,sackOK,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,wscale 10",
			changes:    [2]Change{ChTSStripped, ChTSStripped},
		},
		{
			name:       "clamp window scale and mss",
			pol:        &Policy{Direction: Both, WindowScale: WSClamp, WindowScaleMax: 2, MSSMax: 1360},
			wantSYN:    "mss 1360,sackOK,TS val 1880336144 ecr 0,nop,wscale 2",
			wantSYNACK: "mss 1360,sackOK,TS val 772231631 ecr 1880336144,nop,wscale 2",
			changes:    [2]Change{ChWSClamped | ChMSSClamped, ChWSClamped | ChMSSClamped},
		},
		{
			name:       "strip sackOK, keep the rest",
			pol:        &Policy{Direction: Both, StripSACKOK: true},
			wantSYN:    "mss 1460,nop,nop,TS val 1880336144 ecr 0,nop,wscale 10",
			wantSYNACK: "mss 1460,nop,nop,TS val 772231631 ecr 1880336144,nop,wscale 10",
			changes:    [2]Change{ChSACKOKStripped, ChSACKOKStripped},
		},
		{
			name:       "inbound policy does not match an outbound connection",
			pol:        &Policy{Direction: Inbound, WindowScale: WSStrip},
			wantSYN:    "mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10",
			wantSYNACK: "mss 1460,sackOK,TS val 772231631 ecr 1880336144,nop,wscale 10",
		},
		{
			name:       "port not covered",
			pol:        &Policy{Direction: Both, Ports: []uint16{465, 587}, WindowScale: WSStrip},
			wantSYN:    "mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10",
			wantSYNACK: "mss 1460,sackOK,TS val 772231631 ecr 1880336144,nop,wscale 10",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(Config{})
			tab := table(tt.pol, remote)
			for i, h := range []string{linuxSYN, linuxSYNACK} {
				pkt := fixed(t, h)
				orig := append([]byte(nil), pkt...)
				r := n.Packet(pkt, tab, Meta{})
				want := []string{tt.wantSYN, tt.wantSYNACK}[i]
				if diff := cmp.Diff(want, optString(tcpOf(t, pkt).Options())); diff != "" {
					t.Errorf("packet %d options (-want +got):\n%s", i, diff)
				}
				if r.Why.Changes != tt.changes[i] {
					t.Errorf("packet %d changes = %v, want %v", i, r.Why.Changes, tt.changes[i])
				}
				if r.Modified != (tt.changes[i] != 0) || r.Modified == bytes.Equal(orig, pkt) {
					t.Errorf("packet %d Modified = %v, bytes changed = %v", i, r.Modified, !bytes.Equal(orig, pkt))
				}
				if !verifies(t, pkt) {
					t.Errorf("packet %d: checksum does not verify after normalization", i)
				}
				if len(pkt) != len(orig) {
					t.Errorf("packet %d: length %d, want %d", i, len(pkt), len(orig))
				}
			}
		})
	}
}

// TestSYNACKFollowsSYN: a SYN-ACK is stripped only as its SYN was.
func TestSYNACKFollowsSYN(t *testing.T) {
	pol := &Policy{Direction: Both, WindowScale: WSStrip, Timestamps: TSStrip, MSSMax: 1400}
	tab := table(pol, remote)

	t.Run("no record: only MSS", func(t *testing.T) {
		n := New(Config{})
		pkt := fixed(t, linuxSYNACK)
		r := n.Packet(pkt, tab, Meta{})
		if r.Why.Reason != ReasonNoRecord || r.Why.Changes != ChMSSClamped {
			t.Fatalf("got %v, want no-record mss-clamp", r.Why)
		}
		want := "mss 1400,sackOK,TS val 772231631 ecr 1880336144,nop,wscale 10"
		if diff := cmp.Diff(want, optString(tcpOf(t, pkt).Options())); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("SYN carried no window scale", func(t *testing.T) {
		n := New(Config{})
		syn := build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 51836, dport: 25, syn: true,
			options: []byte{OptMSS, 4, 5, 0xb4}})
		if r := n.Packet(syn, tab, Meta{}); r.Why.Changes != ChMSSClamped {
			t.Fatalf("SYN changes = %v, want only mss-clamp", r.Why.Changes)
		}
		// A SYN-ACK carrying WS anyway keeps it: stripping needs the SYN's.
		pkt := fixed(t, linuxSYNACK)
		r := n.Packet(pkt, tab, Meta{})
		if r.Why.Changes != ChMSSClamped {
			t.Errorf("SYN-ACK changes = %v, want only mss-clamp", r.Why.Changes)
		}
	})
	t.Run("log-only records what it would do", func(t *testing.T) {
		lo := *pol
		lo.Mode = LogOnly
		n := New(Config{})
		tab := table(&lo, remote)
		for _, h := range []string{linuxSYN, linuxSYNACK} {
			pkt := fixed(t, h)
			orig := append([]byte(nil), pkt...)
			r := n.Packet(pkt, tab, Meta{})
			if r.Why.Reason != ReasonLogOnly || r.Why.Changes != ChWSStripped|ChTSStripped|ChMSSClamped || r.Modified {
				t.Errorf("got %+v, want log-only wscale-strip,ts-strip,mss-clamp unmodified", r.Why)
			}
			if !bytes.Equal(orig, pkt) {
				t.Errorf("log-only changed bytes")
			}
		}
	})
}

func TestOtherStacks(t *testing.T) {
	pol := stripAll()
	tests := []struct {
		name    string
		pkt     func(t *testing.T) []byte
		table   Table
		want    string
		changes Change
	}{
		{
			name:    "windows",
			pkt:     func(t *testing.T) []byte { return fixed(t, windowsSYN) },
			table:   table(pol, netip.MustParsePrefix("35.178.194.78/32")),
			want:    "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop",
			changes: ChWSStripped | ChSACKOKStripped | ChMSSClamped,
		},
		{
			// macOS, from a published tcpdump line (loopback MSS):
			// IP 127.0.0.1.57729 > 127.0.0.1.3000: Flags [S], seq 860356044, win 65535,
			// options [mss 16344,nop,wscale 6,nop,nop,TS val 1113971093 ecr 0,sackOK,eol], length 0
			name: "macos",
			pkt: func(t *testing.T) []byte {
				return build(t, seg{src: "127.0.0.1", dst: "127.0.0.1", sport: 57729, dport: 3000,
					syn: true, seq: 860356044, window: 65535, options: []byte{
						2, 4, 0x3f, 0xd8, 1, 3, 3, 6, 1, 1, 8, 10, 0x42, 0x65, 0x8e, 0x95, 0, 0, 0, 0, 4, 2, 0}})
			},
			table:   table(pol, netip.MustParsePrefix("127.0.0.1/32")),
			want:    "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,eol",
			changes: ChWSStripped | ChTSStripped | ChSACKOKStripped | ChMSSClamped,
		},
		{
			name: "linux ipv6 with ecn setup",
			pkt: func(t *testing.T) []byte {
				return build(t, seg{src: "2001:2:0:7::1", dst: "2001:2:0:7::2", sport: 40000, dport: 25,
					syn: true, ece: true, cwr: true, window: 64800, options: []byte{
						2, 4, 5, 0xa0, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7}})
			},
			table:   table(pol, lab6),
			want:    "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop",
			changes: ChWSStripped | ChTSStripped | ChSACKOKStripped | ChMSSClamped | ChECNCleared,
		},
		{
			name: "ipv6 behind hop-by-hop and destination options",
			pkt: func(t *testing.T) []byte {
				return build(t, seg{src: "2001:2:0:7::1", dst: "2001:2:0:7::2", sport: 40000, dport: 25,
					syn: true, options: []byte{1, 3, 3, 7},
					ipv6extNH: 0, ipv6ext: []byte{
						60, 0, 1, 4, 0, 0, 0, 0, // hop-by-hop -> dest opts, PadN
						6, 0, 1, 4, 0, 0, 0, 0, // dest opts -> TCP, PadN
					}})
			},
			table:   table(pol, lab6),
			want:    "nop,nop,nop,nop",
			changes: ChWSStripped,
		},
		{
			name: "tfo and mptcp are unknown",
			pkt: func(t *testing.T) []byte {
				return build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 40000, dport: 25, syn: true,
					options: []byte{OptTFO, 2, OptMPTCP, 4, 0, 0x81, 254, 4, 0xf9, 0x89}})
			},
			table:   table(pol, lab4),
			want:    "nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,eol",
			changes: ChUnknownStripped,
		},
		{
			name: "ipv4 with options",
			pkt: func(t *testing.T) []byte {
				return build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 40000, dport: 25, syn: true,
					options:   []byte{1, 3, 3, 14},
					v4options: []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}})
			},
			table:   table(pol, lab4),
			want:    "nop,nop,nop,nop",
			changes: ChWSStripped,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := tt.pkt(t)
			before := verifies(t, pkt)
			r := New(Config{}).Packet(pkt, tt.table, Meta{})
			if diff := cmp.Diff(tt.want, optString(tcpOf(t, pkt).Options())); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if r.Why.Changes != tt.changes {
				t.Errorf("changes = %v, want %v", r.Why.Changes, tt.changes)
			}
			if verifies(t, pkt) != before {
				t.Errorf("checksum verifies = %v after, %v before", !before, before)
			}
			if tcp := tcpOf(t, pkt); tt.changes&ChECNCleared != 0 && (tcp.Flags()&(FlagECE|FlagCWR) != 0 || tcp.AE()) {
				t.Errorf("ECN flags still set: %#x", tcp.Flags())
			}
		})
	}
}

// TestUntouched: packets that must pass unchanged, each with its reason.
func TestUntouched(t *testing.T) {
	pol := stripAll()
	pol.DropMalformed = true
	tab := table(pol, lab4, lab6)
	syn := func(opts ...byte) seg {
		return seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 40000, dport: 25, syn: true, options: opts}
	}
	tests := []struct {
		name    string
		pkt     []byte
		meta    Meta
		table   Table
		reason  Reason
		verdict Verdict
	}{
		{name: "md5", pkt: build(t, syn(2, 4, 5, 0xb4, 1, 3, 3, 7, 19, 18, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
			reason: ReasonAuthenticated},
		{name: "tcp-ao", pkt: build(t, syn(1, 3, 3, 7, 29, 6, 1, 2, 0, 0)), reason: ReasonAuthenticated},
		{name: "zero length option", pkt: build(t, syn(1, 3, 3, 7, 254, 0)), reason: ReasonMalformedDrop, verdict: Drop},
		{name: "overrun", pkt: build(t, syn(1, 3, 3, 7, 254, 9, 0, 0)), reason: ReasonMalformedDrop, verdict: Drop},
		{name: "truncated timestamps", pkt: build(t, syn(8, 8, 0, 0, 0, 1, 0, 0)), reason: ReasonMalformedDrop, verdict: Drop},
		{name: "short window scale", pkt: build(t, syn(3, 2, 1, 1)), reason: ReasonMalformedDrop, verdict: Drop},
		{name: "length byte missing", pkt: build(t, syn(1, 1, 1, 3)), reason: ReasonMalformedDrop, verdict: Drop},
		{name: "no policy", pkt: build(t, syn(1, 3, 3, 7)), table: ListTable{}, reason: ReasonNoPolicy},
		{name: "nil table", pkt: build(t, syn(1, 3, 3, 7)), table: nil, reason: ReasonNoPolicy},
		{name: "plain ack", pkt: build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, ack: true}),
			reason: ReasonNotHandshake},
		{name: "truncated copy", pkt: build(t, syn(1, 3, 3, 7)), meta: Meta{Truncated: true}, reason: ReasonTruncated},
		{name: "copy shorter than total length", pkt: build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25,
			syn: true, options: []byte{1, 3, 3, 7}, payload: make([]byte, 100)})[:60], reason: ReasonTruncated},
		{name: "ipv6 fragment", pkt: build(t, seg{src: "2001:2::1", dst: "2001:2::2", sport: 1, dport: 25, syn: true,
			options: []byte{1, 3, 3, 7}, ipv6extNH: 44, ipv6ext: []byte{6, 0, 0, 1, 0, 0, 0, 1}}), reason: ReasonFragment},
		{name: "empty", pkt: []byte{}, reason: ReasonNotTCP},
		{name: "ip version 5", pkt: []byte{0x50, 0, 0, 0}, reason: ReasonNotTCP},
		{name: "data offset past the end", pkt: build(t, syn(1, 3, 3, 7))[:30], reason: ReasonNotTCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := tt.table
			if tb == nil && tt.name != "nil table" {
				tb = tab
			}
			orig := append([]byte(nil), tt.pkt...)
			r := New(Config{}).Packet(tt.pkt, tb, tt.meta)
			if r.Why.Reason != tt.reason || r.Verdict != tt.verdict {
				t.Errorf("got %v/%v, want %v/%v", r.Verdict, r.Why.Reason, tt.verdict, tt.reason)
			}
			if r.Modified || !bytes.Equal(orig, tt.pkt) {
				t.Errorf("packet modified")
			}
		})
	}
}

func TestIPv4Fragment(t *testing.T) {
	pkt := build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true, options: []byte{1, 3, 3, 7}})
	pkt[6] |= 0x20 // more fragments
	if r := New(Config{}).Packet(pkt, table(stripAll(), lab4), Meta{}); r.Why.Reason != ReasonFragment || r.Modified {
		t.Errorf("got %v modified=%v, want fragment unmodified", r.Why.Reason, r.Modified)
	}
}

func TestWindowScaleAbove14(t *testing.T) {
	pkt := build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true,
		options: []byte{2, 4, 5, 0xb4, 3, 3, 255}}) // window-scale-range.pcap's layout
	pol := &Policy{Direction: Both, WindowScale: WSClamp, WindowScaleMax: 14}
	n := New(Config{})
	if r := n.Packet(pkt, table(pol, lab4), Meta{}); r.Modified {
		t.Errorf("shift 255 counts as 14: clamp to 14 must leave it, got %v", r.Why)
	}
	pol.WindowScaleMax = 8
	r := n.Packet(pkt, table(pol, lab4), Meta{})
	if r.Why.Changes != ChWSClamped || r.Why.WSOld != 255 || r.Why.WSNew != 8 {
		t.Errorf("got %v, want wscale-clamp 255->8", r.Why)
	}
	if got := optString(tcpOf(t, pkt).Options()); got != "mss 1460,wscale 8,eol" {
		t.Errorf("options = %q", got)
	}
}

// TestDuplicateOptions: an option that appears twice is acted on every
// time; stacks differ on which one they use.
func TestDuplicateOptions(t *testing.T) {
	dup := []byte{2, 4, 5, 0xb4, 3, 3, 9, 4, 2, 2, 4, 5, 0xb4, 3, 3, 12, 4, 2}
	tests := []struct {
		name string
		pol  *Policy
		want string
	}{
		{"strip", &Policy{Direction: Both, WindowScale: WSStrip, StripSACKOK: true},
			"mss 1460,nop,nop,nop,nop,nop,mss 1460,nop,nop,nop,nop,nop,eol"},
		{"clamp", &Policy{Direction: Both, WindowScale: WSClamp, WindowScaleMax: 10, MSSMax: 1400},
			"mss 1400,wscale 9,sackOK,mss 1400,wscale 10,sackOK,eol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkt := build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true, options: dup})
			r := New(Config{}).Packet(pkt, table(tc.pol, lab4), Meta{})
			if !r.Modified {
				t.Fatalf("not modified: %v", r.Why)
			}
			if got := optString(tcpOf(t, pkt).Options()); got != tc.want {
				t.Errorf("options = %q, want %q", got, tc.want)
			}
			if !verifies(t, pkt) {
				t.Errorf("checksum does not verify")
			}
		})
	}
}

// TestCsumNotReady: a packet whose checksum the kernel has not finished gets
// a full checksum when rewritten.
func TestCsumNotReady(t *testing.T) {
	pkt := unhex(t, linuxSYN) // captured with the partial checksum
	r := New(Config{}).Packet(pkt, table(stripAll(), remote), Meta{CsumNotReady: true})
	if !r.Modified {
		t.Fatalf("not modified: %v", r.Why)
	}
	if !verifies(t, pkt) {
		t.Errorf("full checksum does not verify")
	}
}

func TestIdempotent(t *testing.T) {
	for _, h := range []string{linuxSYN, windowsSYN} {
		n := New(Config{})
		tab := table(stripAll(), remote, netip.MustParsePrefix("35.178.194.78/32"))
		pkt := fixed(t, h)
		n.Packet(pkt, tab, Meta{})
		once := append([]byte(nil), pkt...)
		if r := n.Packet(pkt, tab, Meta{}); r.Modified || r.Why.Changes != 0 || !bytes.Equal(once, pkt) {
			t.Errorf("second pass changed %v", r.Why.Changes)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	n := New(Config{})
	tab := table(stripAll(), remote)
	syn, synack := fixed(t, linuxSYN), fixed(t, linuxSYNACK)
	buf := make([]byte, len(syn))
	var miss Table = ListTable{}
	allocs := testing.AllocsPerRun(200, func() {
		copy(buf, syn)
		n.Packet(buf, tab, Meta{})
		copy(buf, synack)
		n.Packet(buf, tab, Meta{})
		n.Packet(buf, miss, Meta{})
	})
	if allocs != 0 {
		t.Errorf("Packet allocates %v times per run", allocs)
	}
}

func TestHandshakeTableBounded(t *testing.T) {
	n := New(Config{HandshakeSlots: 8})
	tab := table(&Policy{Direction: Both, WindowScale: WSStrip}, lab4)
	for port := uint16(1); port <= 100; port++ {
		n.Packet(build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: port, dport: 25, syn: true,
			options: []byte{1, 3, 3, 7}}), tab, Meta{})
	}
	if got := len(n.hs.slots); got != 8 {
		t.Errorf("table grew to %d slots", got)
	}
	if n.Stats().HandshakeEvictions != 92 {
		t.Errorf("evictions = %d, want 92", n.Stats().HandshakeEvictions)
	}
	// The newest SYN's record is still there.
	synack := build(t, seg{src: "198.18.7.2", dst: "198.18.7.1", sport: 25, dport: 100, syn: true, ack: true,
		options: []byte{1, 3, 3, 7}})
	if r := n.Packet(synack, tab, Meta{}); r.Why.Changes != ChWSStripped {
		t.Errorf("newest SYN-ACK: %v, want wscale-strip", r.Why)
	}
}

// TestListTableSharedPrefix: two policies for one prefix with disjoint
// directions or ports; Lookup takes the one that fits the connection.
func TestListTableSharedPrefix(t *testing.T) {
	pfx := netip.MustParsePrefix("198.18.3.2/32")
	out := &Policy{Name: "out", Direction: Outbound}
	in25 := &Policy{Name: "in25", Direction: Inbound, Ports: []uint16{25}}
	wide := &Policy{Name: "wide", Direction: Both}
	tab := ListTable{{netip.MustParsePrefix("198.18.0.0/15"), wide}, {pfx, out}, {pfx, in25}}
	for _, tc := range []struct {
		port uint16
		dir  Direction
		want *Policy
	}{
		{25, Outbound, out},
		{25, Inbound, in25},
		{587, Inbound, wide},
	} {
		if got := tab.Lookup(pfx.Addr(), tc.port, tc.dir); got != tc.want {
			t.Errorf("Lookup(%d, %v) = %v, want %v", tc.port, tc.dir, got, tc.want.Name)
		}
	}
}

func TestEvidenceOriginal(t *testing.T) {
	tests := []struct {
		name     string
		pol      Policy
		wantOrig bool
	}{
		{name: "evidence, rewritten", pol: Policy{Direction: Both, WindowScale: WSStrip, Evidence: true}, wantOrig: true},
		{name: "evidence, nothing to change", pol: Policy{Direction: Both, MSSMax: 1460, Evidence: true}},
		{name: "evidence, log-only", pol: Policy{Direction: Both, WindowScale: WSStrip, Mode: LogOnly, Evidence: true}},
		{name: "no evidence", pol: Policy{Direction: Both, WindowScale: WSStrip}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(Config{})
			pkt := fixed(t, linuxSYN)
			received := append([]byte(nil), pkt...)
			r := n.Packet(pkt, table(&tt.pol, remote), Meta{})
			if got := r.Original != nil; got != tt.wantOrig {
				t.Fatalf("Original set = %v, want %v (why %v)", got, tt.wantOrig, r.Why)
			}
			if tt.wantOrig {
				if !bytes.Equal(r.Original, received) {
					t.Errorf("Original = %x, want the packet as received %x", r.Original, received)
				}
				if bytes.Equal(pkt, received) {
					t.Errorf("packet not rewritten")
				}
			}
		})
	}
	n := New(Config{})
	tab := table(&Policy{Direction: Both, WindowScale: WSStrip, Evidence: true}, remote)
	syn := fixed(t, linuxSYN)
	buf := make([]byte, len(syn))
	if allocs := testing.AllocsPerRun(200, func() {
		copy(buf, syn)
		n.Packet(buf, tab, Meta{})
	}); allocs != 0 {
		t.Errorf("evidence packet allocates %v times per run", allocs)
	}
}
