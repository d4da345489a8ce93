package config

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// TestFormatPolicyRoundTrip: Load(FormatPolicy(p)) is p, for every enum
// value and option.
func TestFormatPolicyRoundTrip(t *testing.T) {
	exp := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		pf   PolicyFile
	}{
		{name: "defaults", pf: PolicyFile{CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")},
			Policy: &normalize.Policy{Direction: normalize.Both}}},
		{name: "mail domain, strip", pf: PolicyFile{Domain: "example.net", MX: true,
			Policy: &normalize.Policy{Direction: normalize.Outbound, Ports: []uint16{25, 465, 587}, Expires: exp,
				Reason: `quotes " and \ and a tab	here`, Ticket: "NET-1", WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip, Evidence: true},
			Probe: 12 * time.Hour}},
		{name: "probe every 90m", pf: PolicyFile{CIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.3.2/32")},
			Policy: &normalize.Policy{Direction: normalize.Outbound, MSSMax: 1200}, Probe: 90 * time.Minute}},
		{name: "inbound spf, clamp 0, repair, log-only", pf: PolicyFile{Domain: "example.org", SPF: true,
			CIDRs:  []netip.Prefix{netip.MustParsePrefix("198.18.5.0/24"), netip.MustParsePrefix("2001:2::/48")},
			Policy: &normalize.Policy{Direction: normalize.Inbound, Mode: normalize.LogOnly, WindowScale: normalize.WSClamp, WindowScaleMax: 0, Timestamps: normalize.TSRepair}}},
		{name: "every other option", pf: PolicyFile{CIDRs: []netip.Prefix{netip.MustParsePrefix("2001:2::1/128")},
			Policy: &normalize.Policy{Direction: normalize.Both, WindowScale: normalize.WSClamp, WindowScaleMax: 14, StripSACKOK: true,
				MSSMax: 1360, StripUnknown: true, DropMalformed: true, ClearECN: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := FormatPolicy(&tc.pf, "a header\nof two lines")
			if !strings.HasPrefix(text, "# a header\n# of two lines\n") {
				t.Errorf("header not written as comments:\n%s", text)
			}
			path := writeTree(t, "policy_dir = \"policies.d\"\n", map[string]string{"p.toml": text})
			cfg, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v\n%s", err, text)
			}
			got := cfg.Policies[0]
			want := tc.pf
			wp := *want.Policy
			wp.Name, wp.Domain = "p", want.Domain
			want.Policy = &wp
			want.File = filepath.Join(filepath.Dir(path), "policies.d", "p.toml")
			if diff := cmp.Diff(&want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("round trip (-want +got):\n%s\n%s", diff, text)
			}
			if again := FormatPolicy(got, "a header\nof two lines"); again != text {
				t.Errorf("formatting the loaded policy differs:\n%s\nwant\n%s", again, text)
			}
		})
	}
}

// TestEnumText: every enum value prints as the policy-file value and parses
// back; unknown values are errors.
func TestEnumText(t *testing.T) {
	for _, v := range []normalize.Direction{normalize.Outbound, normalize.Inbound, normalize.Both} {
		b, err := v.MarshalText()
		var back normalize.Direction
		if err != nil || back.UnmarshalText(b) != nil || back != v || string(b) != v.String() {
			t.Errorf("direction %d: %q %v -> %d", v, b, err, back)
		}
	}
	for _, v := range []normalize.WindowScaleAction{normalize.WSKeep, normalize.WSStrip, normalize.WSClamp} {
		b, err := v.MarshalText()
		var back normalize.WindowScaleAction
		if err != nil || back.UnmarshalText(b) != nil || back != v {
			t.Errorf("window_scale %d: %q %v -> %d", v, b, err, back)
		}
	}
	for _, v := range []normalize.TimestampsAction{normalize.TSKeep, normalize.TSStrip, normalize.TSRepair} {
		b, err := v.MarshalText()
		var back normalize.TimestampsAction
		if err != nil || back.UnmarshalText(b) != nil || back != v {
			t.Errorf("timestamps %d: %q %v -> %d", v, b, err, back)
		}
	}
	for _, v := range []normalize.Mode{normalize.Enforce, normalize.LogOnly} {
		b, err := v.MarshalText()
		var back normalize.Mode
		if err != nil || back.UnmarshalText(b) != nil || back != v {
			t.Errorf("mode %d: %q %v -> %d", v, b, err, back)
		}
	}
	if _, err := normalize.Direction(0).MarshalText(); err == nil {
		t.Errorf("direction 0 marshalled")
	}
	if s := normalize.TimestampsAction(9).String(); s != "timestamps(9)" {
		t.Errorf("String of a bad value = %q", s)
	}
	var d normalize.Direction
	if err := d.UnmarshalText([]byte("sideways")); err == nil {
		t.Errorf("direction %q parsed", "sideways")
	}
}

// TestLoadDisjointDirections: one peer, one prefix, two files with
// different options per direction (and a third per port) load, and the
// compiled table gives each connection its own.
func TestLoadDisjointDirections(t *testing.T) {
	path := writeTree(t, "policy_dir = \"policies.d\"\n", map[string]string{
		"peer-out.toml":    "cidrs = [\"198.18.3.2\"]\ndirection = \"outbound\"\n[options]\nwindow_scale = \"strip\"\n",
		"peer-in.toml":     "cidrs = [\"198.18.3.2\"]\ndirection = \"inbound\"\nports = [25]\n[options]\nwindow_scale = \"clamp\"\nwindow_scale_max = 0\n",
		"peer-in-587.toml": "cidrs = [\"198.18.3.2\"]\ndirection = \"inbound\"\nports = [587]\n[options]\ntimestamps = \"strip\"\n",
	})
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	m := NewManager(cfg, nil)
	m.recompileLocked(time.Now(), false)
	addr := netip.MustParseAddr("198.18.3.2")
	for _, tc := range []struct {
		port uint16
		dir  normalize.Direction
		want string
	}{
		{25, normalize.Outbound, "peer-out"},
		{25, normalize.Inbound, "peer-in"},
		{587, normalize.Inbound, "peer-in-587"},
		{80, normalize.Inbound, "<nil>"},
	} {
		if got := name(m.Table().Lookup(addr, tc.port, tc.dir)); got != tc.want {
			t.Errorf("Lookup(%d, %v) = %s, want %s", tc.port, tc.dir, got, tc.want)
		}
	}
	if len(m.conflicts) != 0 {
		t.Errorf("conflicts %v, want none", m.conflicts)
	}
}

// TestManagerProbed: Probed lists the policies with a probe interval, as
// Status describes them, and no other.
func TestManagerProbed(t *testing.T) {
	path := writeTree(t, "policy_dir = \"policies.d\"\n", map[string]string{
		"probed.toml": "cidrs = [\"198.18.3.2\"]\nprobe = \"12h\"\n[options]\nwindow_scale = \"strip\"\n",
		"plain.toml":  "cidrs = [\"198.18.3.3\"]\n[options]\ntimestamps = \"strip\"\n",
	})
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	m := NewManager(cfg, nil)
	m.recompileLocked(time.Now(), false)
	got := m.Probed()
	if len(got) != 1 || got[0].Name != "probed" || got[0].ProbeEvery != 12*time.Hour {
		t.Fatalf("Probed() = %+v, want the policy probed every 12h alone", got)
	}
	for _, s := range m.Status() {
		if s.Name == "probed" && !cmp.Equal(s, got[0], cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })) {
			t.Errorf("Probed() = %+v, Status() has %+v", got[0], s)
		}
	}
	if n := len(m.Status()); n != 2 {
		t.Errorf("Status() lists %d policies, want 2", n)
	}
}
