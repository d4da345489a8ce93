package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
)

func TestReportCommand(t *testing.T) {
	path := writeConfig(t, "[metrics]\nlisten = \"\"\n[evidence]\ndir = \"ev\"\n")
	dir := filepath.Dir(path)
	pol := "cidrs = [\"198.18.5.0/24\"]\nports = [25]\ndirection = \"outbound\"\nexpires = 2026-12-05T00:00:00Z\nreason = \"window scale mangled\"\nticket = \"NET-7\"\n[options]\nwindow_scale = \"strip\"\n"
	if err := os.WriteFile(filepath.Join(dir, "policies.d", "example.net.toml"), []byte(pol), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err []string
	}{
		{
			name: "evidence off, no daemon", args: []string{"-c", path, "example.net"},
			out: []string{
				"tcpnorm workaround example.net (" + filepath.Join(dir, "policies.d", "example.net.toml") + ")\n",
				"  ticket      NET-7\n",
				"  reason      window scale mangled\n",
				"  peer        198.18.5.0/24\n",
				"  scope       outbound connections, enforce, ports 25\n",
				"  changes     window_scale=strip\n",
				"  expires     in 3d0h (2026-12-05T00:00:00Z): WARNING: within 7 days\n",
				"  daemon      not reachable ([metrics] listen is \"\"",
				"  evidence    off: add `evidence = true` to " + filepath.Join(dir, "policies.d", "example.net.toml") + " and reload; handshakes are then kept in " + filepath.Join(dir, "ev", "example.net.pcapng") + "\n",
			},
		},
		{name: "flags after the policy", args: []string{"example.net.toml", "-c", path}, out: []string{"tcpnorm workaround example.net"}},
		{name: "unknown policy", args: []string{"-c", path, "other.net"}, code: 1, err: []string{`tcpnorm report: no policy "other.net" in`, "(policies: example.net)"}},
		{name: "no policy named", args: []string{"-c", path}, code: 2, err: []string{"tcpnorm report: missing POLICY", "usage: tcpnorm report [-c FILE] POLICY"}},
		{name: "two policies", args: []string{"-c", path, "a", "b"}, code: 2, err: []string{`unexpected argument "b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runReport(tt.args, &out, &errb, now)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, errb.String())
			}
			wantIn(t, "stdout", out.String(), tt.out)
			wantIn(t, "stderr", errb.String(), tt.err)
		})
	}
}

// TestReportProbe: without a daemon, report reads what the daemon's
// re-tests saved for a policy with probe.
func TestReportProbe(t *testing.T) {
	path := writeConfig(t, "[metrics]\nlisten = \"\"\n[evidence]\ndir = \"ev\"\n")
	dir := filepath.Dir(path)
	for _, p := range []struct{ name, addr, every string }{{"fixed.net", "198.18.5.1", "12h"}, {"new.net", "198.18.5.2", "1h"}} {
		pol := "cidrs = [\"" + p.addr + "\"]\ndirection = \"outbound\"\nprobe = \"" + p.every + "\"\n[options]\nmss_max = 1200\n"
		if err := os.WriteFile(filepath.Join(dir, "policies.d", p.name+".toml"), []byte(pol), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	since := now.Add(-36 * time.Hour)
	err := config.WriteProbeStates(filepath.Join(dir, "ev", "probe-state.json"), map[string]config.ProbeState{
		"fixed.net": {Need: config.NeedNo, Since: since, Last: now.Add(-time.Hour), Streak: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"fixed.net": "  probe       NO LONGER NEEDED since 2026-11-30T12:00:00Z (3 probes in a row): the path works as sent; remove the policy; every 12h; last 1h0m ago\n",
		"new.net":   "  probe       every 1h; not probed yet\n",
	} {
		var out, errb bytes.Buffer
		if code := runReport([]string{"-c", path, name}, &out, &errb, now); code != 0 {
			t.Fatalf("%s: exit %d\n%s", name, code, errb.String())
		}
		wantIn(t, name, out.String(), []string{want})
	}
}
