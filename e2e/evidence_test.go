//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// TestEvidence: a policy with evidence = true leaves a pcapng file that
// tcpdump and tshark read, holding the connection's SYN and SYN-ACK each as
// received and as sent, with comments naming the policy and the change (the
// server answers the stripped SYN without window scale: its SYN-ACK passes
// unchanged); log-only records what it would have done.
func TestEvidence(t *testing.T) {
	tests := []struct {
		name string
		mode normalize.Mode
		// the packets in the file, in order, as tcpdump prints them: the
		// flags and whether window scale is there; then their comments
		wantPackets  []pkt
		wantComments []string
	}{
		{
			name: "enforce", mode: normalize.Enforce,
			wantPackets: []pkt{{"[S]", true}, {"[S]", false}, {"[S.]", false}, {"[S.]", false}},
			wantComments: []string{
				"policy=lab.test ticket=LAB-1 syn outbound CLIENT > SERVER received",
				"policy=lab.test ticket=LAB-1 syn outbound CLIENT > SERVER sent: applied wscale-strip",
				"policy=lab.test ticket=LAB-1 syn-ack outbound CLIENT > SERVER received",
				"policy=lab.test ticket=LAB-1 syn-ack outbound CLIENT > SERVER sent unchanged",
			},
		},
		{
			name: "log-only", mode: normalize.LogOnly,
			wantPackets: []pkt{{"[S]", true}, {"[S.]", true}},
			wantComments: []string{
				"policy=lab.test ticket=LAB-1 syn outbound CLIENT > SERVER received; log-only, not changed; would rewrite: wscale-strip",
				"policy=lab.test ticket=LAB-1 syn-ack outbound CLIENT > SERVER received; log-only, not changed; would rewrite: wscale-strip",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, lab.FaultNone)
			pol := lab.FixPolicy(lab.FaultWScale, false, tt.mode)
			pol.Evidence = true
			d := startDaemon(t, l, pol)
			dst := lab.ServerAddr(false)
			if r, _, _ := transfer(t, l, lab.Transfer{Dst: dst, Size: 64 << 10, Timeout: okTimeout}); !r.OK {
				t.Fatalf("transfer: %s", r)
			}
			// The daemon writes what it queued before it exits.
			stopDaemon(t, l, d)

			file := d.EvidenceFile(lab.Domain)
			for p, want := range map[string]os.FileMode{filepath.Dir(file): os.ModeDir | 0o750, file: 0o640} {
				if st, err := os.Stat(p); err != nil || st.Mode() != want {
					t.Fatalf("%s: %v, want mode %v", p, err, want)
				}
			}
			out, err := exec.Command("tcpdump", "-nr", file).CombinedOutput()
			if err != nil {
				t.Fatalf("tcpdump -r %s: %v\n%s", file, err, out)
			}
			lines := packetLines(string(out))
			t.Logf("tcpdump -r:\n%s", strings.Join(lines, "\n"))
			if len(lines) != len(tt.wantPackets) {
				t.Fatalf("tcpdump shows %d packets, want %d", len(lines), len(tt.wantPackets))
			}
			var client, server string
			for i, w := range tt.wantPackets {
				if !strings.Contains(lines[i], "Flags "+w.flags) || strings.Contains(lines[i], "wscale") != w.wscale {
					t.Errorf("packet %d: %q, want flags %s, window scale %v", i+1, lines[i], w.flags, w.wscale)
				}
				if i == 0 {
					// IP 198.18.1.2.41234 > 198.18.3.2.25: Flags [S] ...
					f := strings.Fields(lines[i])
					client, server = hostPort(f[2]), hostPort(strings.TrimSuffix(f[4], ":"))
				}
			}
			if _, err := exec.LookPath("tshark"); err != nil {
				t.Fatalf("tshark not installed (make test-deps installs it): %v", err)
			}
			out, err = exec.Command("tshark", "-r", file, "-T", "fields", "-e", "frame.comment").Output()
			if err != nil {
				t.Fatalf("tshark -r %s: %v\n%s", file, err, out)
			}
			got := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(got) != len(tt.wantComments) {
				t.Fatalf("tshark: %d comments, want %d:\n%s", len(got), len(tt.wantComments), out)
			}
			for i, w := range tt.wantComments {
				w = strings.NewReplacer("CLIENT", client, "SERVER", server).Replace(w)
				if got[i] != w {
					t.Errorf("comment %d:\n got %q\nwant %q", i+1, got[i], w)
				}
			}

			// report, the daemon stopped: from the files.
			out, err = exec.Command("ip", "netns", "exec", d.NS, tcpnormBin, "report", "-c", filepath.Join(d.Dir, "tcpnorm.toml"), lab.Domain).CombinedOutput()
			if err != nil {
				t.Fatalf("tcpnorm report: %v\n%s", err, out)
			}
			t.Logf("tcpnorm report:\n%s", out)
			for _, want := range append([]string{
				"tcpnorm workaround lab.test (",
				"  ticket      LAB-1\n",
				"  daemon      not reachable (",
				"  evidence    " + file + ", ",
				"  recorded    1 connections (",
				"one handshake, each segment as tcpnorm received it and as it sent it on:\n",
				" IP " + strings.Replace(client, ":", ".", 1) + " > " + strings.Replace(server, ":", ".", 1) + ": Flags [S], seq ",
			}, tt.wantComments...) {
				want = strings.NewReplacer("CLIENT", client, "SERVER", server).Replace(want)
				if !strings.Contains(string(out), want) {
					t.Errorf("report lacks %q", want)
				}
			}
		})
	}
}

type pkt struct {
	flags  string
	wscale bool
}

// packetLines keeps tcpdump's packet lines.
func packetLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " IP ") || strings.Contains(l, " IP6 ") {
			lines = append(lines, l)
		}
	}
	return lines
}

// hostPort turns tcpdump's 198.18.1.2.41234 into 198.18.1.2:41234.
func hostPort(s string) string {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return s
	}
	return s[:i] + ":" + s[i+1:]
}

// TestStatus: `tcpnorm status` asks the running daemon and shows the policy
// with the connection it matched and rewrote, and the queues.
func TestStatus(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	pol := lab.FixPolicy(lab.FaultWScale, false, normalize.Enforce)
	pol.Evidence = true
	d := startDaemon(t, l, pol)
	if r, _, _ := transfer(t, l, lab.Transfer{Dst: lab.ServerAddr(false), Size: 64 << 10, Timeout: okTimeout}); !r.OK {
		t.Fatalf("transfer: %s", r)
	}
	out, err := exec.Command("ip", "netns", "exec", d.NS, tcpnormBin, "status", "-c", filepath.Join(d.Dir, "tcpnorm.toml")).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpnorm status: %v\n%s", err, out)
	}
	t.Logf("tcpnorm status:\n%s", out)
	for _, re := range []string{
		`(?m)^tcpnorm \S+, ready, up `,
		`(?m)^policy lab\.test$`,
		`(?m)^  mode +enforce, outbound, ports 25$`,
		`(?m)^  addresses +2 \(198\.18\.3\.2/32, 2001:2:0:3::2/128\); resolved \d+s ago, next in `,
		`(?m)^  matched +1 connections, last \d+s ago`,
		`(?m)^  rewrites +window_scale strip 1$`,
		`(?m)^  expires +never: WARNING: no expires`,
		`(?m)^  evidence +` + regexp.QuoteMeta(d.EvidenceFile(lab.Domain)) + ` \(\d+ packet copies written\)$`, // written asynchronously
		`(?m)^ +[01] +handshake +yes +[1-9]\d* +1 +0 `,                                                         // the balance hash picks the queue
		`(?m)^ +3 +stateful +yes `,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("status lacks %s", re)
		}
	}
	// report with the daemon running: its counters and the evidence.
	out, err = exec.Command("ip", "netns", "exec", d.NS, tcpnormBin, "report", "-c", filepath.Join(d.Dir, "tcpnorm.toml"), lab.Domain).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpnorm report: %v\n%s", err, out)
	}
	t.Logf("tcpnorm report:\n%s", out)
	for _, re := range []string{
		`(?m)^  active +since \S+ \(\d+s ago\)$`,
		`(?m)^  touched +1 connections \(SYNs matched\), the last \d+s ago$`,
		`(?m)^  rewrites +window_scale strip: 1 segments$`,
		`(?m)^  expires +never: WARNING`,
		`(?m)^  recorded +1 connections \(1 rewritten\)`,
		`(?m)^  \S+ IP 198\.18\.1\.2\.\d+ > 198\.18\.3\.2\.25: Flags \[S\], seq \d+, win \d+, options \[[^]]*wscale \d+\], length 0$`,
		`(?m)^      # policy=lab\.test ticket=LAB-1 syn outbound \S+ > \S+ sent: applied wscale-strip$`,
	} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("report lacks %s", re)
		}
	}
	stopDaemon(t, l, d)
	out, err = exec.Command("ip", "netns", "exec", d.NS, tcpnormBin, "status", "-c", filepath.Join(d.Dir, "tcpnorm.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cannot reach the daemon") {
		t.Errorf("status with the daemon stopped: %v\n%s", err, out)
	}
}

// TestEvidenceOnReload: evidence = true added to a running policy and
// reloaded (SIGHUP) records the next connection; nothing before it.
func TestEvidenceOnReload(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	pol := lab.FixPolicy(lab.FaultWScale, false, normalize.Enforce)
	d := startDaemon(t, l, pol)
	dst := lab.ServerAddr(false)
	if r, _, _ := transfer(t, l, lab.Transfer{Dst: dst, Size: 64 << 10, Timeout: okTimeout}); !r.OK {
		t.Fatalf("transfer: %s", r)
	}
	file := d.EvidenceFile(lab.Domain)
	if _, err := os.Stat(file); err == nil {
		t.Fatalf("%s exists before evidence was turned on", file)
	}
	pol.Evidence = true
	if err := os.WriteFile(filepath.Join(d.Dir, "policies.d", pol.Name+".toml"), []byte(pol.Text()), 0o644); err != nil {
		t.Fatal(err)
	}
	_, mark := d.LogLines(0)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitReload(t, d, mark); !ok {
		t.Fatalf("reload refused:\n%s", d.Log())
	}
	if r, _, _ := transfer(t, l, lab.Transfer{Dst: dst, Size: 64 << 10, Timeout: okTimeout}); !r.OK {
		t.Fatalf("transfer: %s", r)
	}
	stopDaemon(t, l, d)
	out, err := exec.Command("tcpdump", "-nr", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", file, err, out)
	}
	if n := len(packetLines(string(out))); n != 4 {
		t.Errorf("%d packets recorded, want the second connection's SYN and SYN-ACK, twice each:\n%s", n, out)
	}
}
