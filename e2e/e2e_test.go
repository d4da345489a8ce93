//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

const (
	// Big enough that every fault bites (the window-scale fault crawls at a
	// few Mbit/s), small enough for the suite to stay quick.
	size = 4 << 20
	// A broken transfer is given failTimeout to prove it fails; a fixed one
	// okTimeout to complete (it takes well under a second).
	failTimeout  = 5 * time.Second
	okTimeout    = 15 * time.Second
	readyTimeout = 20 * time.Second
)

var (
	tcpnormBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "tcpnorm-e2e-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		tcpnormBin = filepath.Join(dir, "tcpnorm")
		// As the Makefile builds it: without cgo (the daemon drops its
		// capabilities in every thread).
		build := exec.Command("go", "build", "-o", tcpnormBin, "../cmd/tcpnorm")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ../cmd/tcpnorm: %v\n%s", err, out)
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e: needs root for network namespaces and iptables; run `make test` as root")
	}
}

// newLab builds a lab with fault f, removed when the test ends.
func newLab(t *testing.T, f lab.Fault) *lab.Lab {
	t.Helper()
	needRoot(t)
	ctx := context.Background()
	l, err := lab.New(ctx, lab.Options{})
	if err != nil {
		t.Fatalf("lab.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab.Close: %v", err)
		}
	})
	if err := l.SetFault(ctx, f); err != nil {
		t.Fatalf("SetFault(%s): %v", f, err)
	}
	return l
}

// startDaemon runs tcpnorm on the lab's gateway with policies. When the test
// ends it stops the daemon and checks it exited cleanly and took its rules
// with it.
func startDaemon(t *testing.T, l *lab.Lab, policies ...lab.Policy) *lab.Daemon {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	ctx := context.Background()
	d, err := l.StartDaemon(ctx, tcpnormBin, t.TempDir(), policies, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	t.Cleanup(func() { stopDaemon(t, l, d) })
	return d
}

// startHostDaemon runs tcpnorm in host mode on the lab's client with
// policies. When the test ends it stops the daemon and checks it exited
// cleanly and took its rules, the probe's included, with it.
func startHostDaemon(t *testing.T, l *lab.Lab, policies ...lab.Policy) *lab.Daemon {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	ctx := context.Background()
	d, err := l.StartHostDaemon(ctx, tcpnormBin, t.TempDir(), policies, readyTimeout)
	if err != nil {
		t.Fatalf("StartHostDaemon: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("daemon exit after SIGTERM: %v\nlog:\n%s", err, d.Log())
		}
		if out, _ := netns.Run(context.Background(), l.Client, "iptables-save"); strings.Contains(out, "TCPNORM") {
			t.Errorf("rules left in the client after the daemon exited:\n%s", out)
		}
	})
	return d
}

// startPostfix runs a Postfix instance in namespace ns with its state in a
// temporary directory, stopped when the test ends.
func startPostfix(t *testing.T, ns string, opt lab.PostfixOptions) *lab.Postfix {
	t.Helper()
	pf, err := lab.StartPostfix(context.Background(), ns, t.TempDir(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pf.Stop(); err != nil {
			t.Errorf("postfix stop: %v", err)
		}
	})
	return pf
}

func stopDaemon(t *testing.T, l *lab.Lab, d *lab.Daemon) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Errorf("daemon exit after SIGTERM: %v\nlog:\n%s", err, d.Log())
	}
	left, err := l.TcpnormRules(context.Background())
	if err != nil {
		t.Errorf("reading rules: %v", err)
	}
	if len(left) != 0 {
		t.Errorf("rules left in the gateway after the daemon exited:\n%s", strings.Join(left, "\n"))
	}
}

// transfer runs one transfer with captures at the client and the server and
// returns the outcome and the segments each end saw.
func transfer(t *testing.T, l *lab.Lab, tr lab.Transfer) (r lab.TransferResult, client, server []lab.Segment) {
	t.Helper()
	cc, err := netns.StartCapture(l.Client, lab.IfClient)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	sc, err := netns.StartCapture(l.Server, lab.IfServer)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Stop()
	r, err = l.Transfer(context.Background(), tr)
	if err != nil {
		t.Fatalf("Transfer: %v", err)
	}
	t.Logf("%s to %s: %s", tr.Dir, tr.Dst, r)
	return r, lab.Segments(cc.Stop()), lab.Segments(sc.Stop())
}

// firstSYN returns the first SYN (synack false) or SYN-ACK an end received
// on the connection to dst.
func firstSYN(segs []lab.Segment, dst netip.Addr, synack bool) (lab.Segment, bool) {
	for _, s := range segs {
		if s.Outgoing || !s.SYN || s.ACK != synack {
			continue
		}
		if s.Dst.Addr() == dst || s.Src.Addr() == dst {
			return s, true
		}
	}
	return lab.Segment{}, false
}

func invalidCounters(t *testing.T, l *lab.Lab) map[string]uint64 {
	t.Helper()
	m, err := l.ConntrackInvalidAll()
	if err != nil {
		t.Fatalf("conntrack stats: %v", err)
	}
	return m
}

func checkNoNewInvalid(t *testing.T, l *lab.Lab, before map[string]uint64) {
	t.Helper()
	after := invalidCounters(t, l)
	for _, ns := range l.Namespaces() {
		if after[ns] != before[ns] {
			t.Errorf("conntrack invalid counter in %s went %d -> %d", ns, before[ns], after[ns])
		}
	}
}

func family(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}

// TestFaultWithoutTcpnorm: each fault class breaks its transfer on a path
// without tcpnorm, and the same lab without the fault carries it.
func TestFaultWithoutTcpnorm(t *testing.T) {
	for _, f := range lab.Faults() {
		for _, v6 := range []bool{false, true} {
			t.Run(f.String()+"/"+family(v6), func(t *testing.T) {
				l := newLab(t, f)
				tr := lab.Transfer{Dst: lab.ServerAddr(v6), Size: size, Dir: f.Direction(), Timeout: failTimeout}
				r, _, _ := transfer(t, l, tr)
				if r.OK {
					t.Errorf("%s: transfer completed through the faulty path in %s; want failure", f, r.Elapsed)
				}
				if err := l.SetFault(context.Background(), lab.FaultNone); err != nil {
					t.Fatal(err)
				}
				tr.Timeout = okTimeout
				if r, _, _ := transfer(t, l, tr); !r.OK {
					t.Errorf("clean path: %s", r)
				}
			})
		}
	}
}

// TestFaultFixedByTcpnorm: with tcpnorm on the gateway and the policy that
// fixes the fault, the transfer completes with the right checksum, the
// server receives the normalized handshake, and no conntrack on the way
// finds a packet invalid.
func TestFaultFixedByTcpnorm(t *testing.T) {
	for _, f := range lab.Faults() {
		for _, v6 := range []bool{false, true} {
			t.Run(f.String()+"/"+family(v6), func(t *testing.T) {
				l := newLab(t, f)
				startDaemon(t, l, lab.FixPolicy(f, v6, normalize.Enforce))
				before := invalidCounters(t, l)
				dst := lab.ServerAddr(v6)
				r, cseg, sseg := transfer(t, l, lab.Transfer{Dst: dst, Size: size, Dir: f.Direction(), Timeout: okTimeout})
				if !r.OK {
					t.Errorf("with tcpnorm: %s", r)
				}
				checkNoNewInvalid(t, l, before)

				syn, ok := firstSYN(sseg, dst, false)
				if !ok {
					t.Fatalf("no SYN reached the server")
				}
				synack, ok := firstSYN(cseg, dst, true)
				if !ok {
					t.Fatalf("no SYN-ACK reached the client")
				}
				t.Logf("server received SYN [%s]; client received SYN-ACK [%s]", syn.Options, synack.Options)
				switch f {
				case lab.FaultSYNTS, lab.FaultTSScramble:
					if syn.TS || synack.TS {
						t.Errorf("timestamps reached an end: SYN [%s], SYN-ACK [%s]", syn.Options, synack.Options)
					}
				case lab.FaultWScale:
					if syn.WScale >= 0 || synack.WScale >= 0 {
						t.Errorf("window scale reached an end: SYN [%s], SYN-ACK [%s]", syn.Options, synack.Options)
					}
				case lab.FaultPMTU:
					mss := lab.PMTUMSS(v6)
					if syn.MSS < 0 || syn.MSS > mss || synack.MSS < 0 || synack.MSS > mss {
						t.Errorf("MSS above %d: SYN [%s], SYN-ACK [%s]", mss, syn.Options, synack.Options)
					}
				}
			})
		}
	}
}

// TestLogOnly: a log-only policy leaves the wire alone (the server still
// receives window scale) but logs and counts what it would have done.
func TestLogOnly(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			l := newLab(t, lab.FaultNone)
			d := startDaemon(t, l, lab.FixPolicy(lab.FaultWScale, v6, normalize.LogOnly))
			dst := lab.ServerAddr(v6)
			r, _, sseg := transfer(t, l, lab.Transfer{Dst: dst, Size: size, Timeout: okTimeout})
			if !r.OK {
				t.Errorf("log-only: %s", r)
			}
			syn, ok := firstSYN(sseg, dst, false)
			if !ok {
				t.Fatal("no SYN reached the server")
			}
			if syn.WScale < 0 {
				t.Errorf("log-only policy removed window scale: server received SYN [%s]", syn.Options)
			}
			waitLog(t, d, "msg=would-rewrite", dst.String())
			m, err := d.Get(context.Background(), "/metrics")
			if err != nil {
				t.Fatalf("metrics: %v", err)
			}
			if !hasNonZero(m, `tcpnorm_would_rewrite_total{action="strip",option="window_scale",policy="lab.test"}`) {
				t.Errorf("log-only window-scale strip not counted:\n%s", grep(m, "tcpnorm_"))
			}
		})
	}
}

// TestNonMatchingDestination: a policy for the lab domain changes the
// handshake to the MX host and leaves one to an address outside it alone.
func TestNonMatchingDestination(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			l := newLab(t, lab.FaultNone)
			startDaemon(t, l, lab.FixPolicy(lab.FaultWScale, v6, normalize.Enforce))
			before := invalidCounters(t, l)

			other := lab.OtherAddr(v6)
			r, cseg, sseg := transfer(t, l, lab.Transfer{Dst: other, Size: size, Timeout: okTimeout})
			if !r.OK {
				t.Errorf("to %s: %s", other, r)
			}
			sent, ok1 := firstSentSYN(cseg, other)
			got, ok2 := firstSYN(sseg, other, false)
			if !ok1 || !ok2 {
				t.Fatalf("SYN to %s: sent %v, received %v", other, ok1, ok2)
			}
			if sent.Options != got.Options {
				t.Errorf("SYN to unmatched %s changed on the way:\nsent     [%s]\nreceived [%s]", other, sent.Options, got.Options)
			}

			mx := lab.ServerAddr(v6)
			r, _, sseg = transfer(t, l, lab.Transfer{Dst: mx, Size: size, Timeout: okTimeout})
			if !r.OK {
				t.Errorf("to %s: %s", mx, r)
			}
			if syn, ok := firstSYN(sseg, mx, false); !ok || syn.WScale >= 0 {
				t.Errorf("SYN to the MX %s: want window scale stripped, server received [%s] (seen %v)", mx, syn.Options, ok)
			}
			checkNoNewInvalid(t, l, before)
		})
	}
}

func firstSentSYN(segs []lab.Segment, dst netip.Addr) (lab.Segment, bool) {
	for _, s := range segs {
		if s.Outgoing && s.SYN && !s.ACK && s.Dst.Addr() == dst {
			return s, true
		}
	}
	return lab.Segment{}, false
}

// waitLog waits up to 2s for a daemon log line containing every one of subs.
func waitLog(t *testing.T, d *lab.Daemon, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := lineWith(d.Log(), subs...); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no daemon log line with %q; log:\n%s", subs, d.Log())
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineWith returns the first line of text that contains every one of subs.
func lineWith(text string, subs ...string) (string, bool) {
	for _, ln := range strings.Split(text, "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(ln, s)
		}
		if all {
			return ln, true
		}
	}
	return "", false
}

func hasNonZero(metrics, sub string) bool {
	for _, ln := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(ln, "#") || !strings.Contains(ln, sub) {
			continue
		}
		f := strings.Fields(ln)
		if len(f) >= 2 && f[len(f)-1] != "0" {
			return true
		}
	}
	return false
}

func grep(text, sub string) string {
	var out []string
	for _, ln := range strings.Split(text, "\n") {
		if strings.Contains(ln, sub) {
			out = append(out, ln)
		}
	}
	return strings.Join(out, "\n")
}

// TestRulesRemovedOnExit: the daemon's rules are in the gateway while it
// runs and gone once SIGTERM ended it.
func TestRulesRemovedOnExit(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	d, err := l.StartDaemon(context.Background(), tcpnormBin, t.TempDir(),
		[]lab.Policy{lab.FixPolicy(lab.FaultWScale, false, normalize.Enforce)}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	rules, err := l.TcpnormRules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rules) == 0 {
		t.Errorf("daemon ready but no tcpnorm rules in the gateway")
	}
	stopDaemon(t, l, d)
}
