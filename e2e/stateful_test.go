//go:build linux

package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Stateful normalization end to end: window_scale = "clamp" through a path
// that honours shifts only up to K, timestamps = "repair" through a path
// that moves the server's TSvals both ways, and both in host mode.

const (
	// capK is the wscale-cap path's largest honoured shift for the
	// pass/fail tests; rttK and rtt make the throughput comparison.
	capK = 2
	rttK = 3
	rtt  = 20 * time.Millisecond
	// rttSize is long enough for slow start to be a small part of it.
	rttSize    = 12 << 20
	rttTimeout = 30 * time.Second
	// restartSize takes a clamped download through the rtt path several
	// times restartAfter, when TestClampAcrossRestart restarts the daemon.
	restartSize  = 48 << 20
	restartAfter = 1500 * time.Millisecond
	// minSpeedup is how much faster a clamped download must be than a
	// stripped one through the same slow path.
	minSpeedup = 3.0
)

// newPathLab builds a lab with fault f and path options opt.
func newPathLab(t *testing.T, f lab.Fault, opt lab.PathOptions) *lab.Lab {
	t.Helper()
	l := newLab(t, lab.FaultNone)
	if err := l.SetPath(context.Background(), f, opt); err != nil {
		t.Fatalf("SetPath(%s, %+v): %v", f, opt, err)
	}
	return l
}

func labPolicy(options normalize.Policy) lab.Policy {
	return lab.Policy{Name: lab.Domain, Options: options, Reason: "lab: stateful e2e"}
}

// metricValue sums the series of metric name whose labels contain every
// one of subs.
func metricValue(text, name string, subs ...string) float64 {
	var sum float64
	for _, ln := range strings.Split(text, "\n") {
		if !strings.HasPrefix(ln, name+"{") && !strings.HasPrefix(ln, name+" ") {
			continue
		}
		all := true
		for _, s := range subs {
			all = all && strings.Contains(ln, s)
		}
		f := strings.Fields(ln)
		if !all || len(f) < 2 {
			continue
		}
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func metrics(t *testing.T, d *lab.Daemon) string {
	t.Helper()
	m, err := d.Get(context.Background(), "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return m
}

// checkHandshakeShift checks the SYN the server received and the SYN-ACK
// the client received both announce shift want.
func checkHandshakeShift(t *testing.T, cseg, sseg []lab.Segment, dst lab.Transfer, want int) {
	t.Helper()
	syn, ok1 := firstSYN(sseg, dst.Dst, false)
	synack, ok2 := firstSYN(cseg, dst.Dst, true)
	if !ok1 || !ok2 {
		t.Fatalf("handshake not captured: SYN at server %v, SYN-ACK at client %v", ok1, ok2)
	}
	if syn.WScale != want || synack.WScale != want {
		t.Errorf("shifts: server received SYN [%s], client received SYN-ACK [%s]; want wscale %d in both",
			syn.Options, synack.Options, want)
	}
}

// TestWScaleCapClamp: a path honouring shifts only up to capK stalls
// uploads and downloads; tcpnorm with clamp on the gateway carries both,
// and no conntrack on the way finds a packet invalid.
func TestWScaleCapClamp(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: capK})
			dst := lab.ServerAddr(v6)
			for _, dir := range []lab.Direction{lab.Upload, lab.Download} {
				r, _, _ := transfer(t, l, lab.Transfer{Dst: dst, Size: size, Dir: dir, Timeout: failTimeout})
				if r.OK {
					t.Errorf("without tcpnorm: %s completed through the wscale-cap path in %s; want failure", dir, r.Elapsed)
				}
			}
			t.Logf("without tcpnorm the path dropped %d segments", l.FaultPackets())

			d := startDaemon(t, l, labPolicy(lab.ClampOptions(capK)))
			before := invalidCounters(t, l)
			drops := l.FaultPackets()
			for _, dir := range []lab.Direction{lab.Upload, lab.Download} {
				tr := lab.Transfer{Dst: dst, Size: size, Dir: dir, Timeout: okTimeout}
				r, cseg, sseg := transfer(t, l, tr)
				if !r.OK {
					t.Errorf("with clamp: %s", r)
				}
				checkHandshakeShift(t, cseg, sseg, tr, capK)
			}
			// Retransmissions of the connections abandoned above count too.
			t.Logf("with clamp the path dropped %d segments", l.FaultPackets()-drops)
			checkNoNewInvalid(t, l, before)
			m := metrics(t, d)
			if v := metricValue(m, "tcpnorm_rewrites_total", `action="window-rewrite"`); v == 0 {
				t.Errorf("no window-rewrite counted:\n%s", grep(m, "tcpnorm_rewrites_total"))
			}
			t.Logf("metrics:\n%s", grep(m, "tcpnorm_rewrites_total"))
		})
	}
}

// TestWScaleCapRTT: through a path honouring shifts up to rttK with rtt
// added, a download with clamp is at least minSpeedup faster than with
// strip, and the server sees the client's windows above 64 KiB.
func TestWScaleCapRTT(t *testing.T) {
	l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: rttK, RTT: rtt})
	dst := lab.ServerAddr(false)
	tr := lab.Transfer{Dst: dst, Size: rttSize, Dir: lab.Download, Timeout: rttTimeout}
	var elapsed [2]time.Duration
	var serverSegs []lab.Segment
	for i, opts := range []normalize.Policy{{WindowScale: normalize.WSStrip}, lab.ClampOptions(rttK)} {
		d, err := l.StartDaemon(context.Background(), tcpnormBin, t.TempDir(), []lab.Policy{labPolicy(opts)}, readyTimeout)
		if err != nil {
			t.Fatalf("StartDaemon: %v", err)
		}
		before := invalidCounters(t, l)
		r, _, sseg := transfer(t, l, tr)
		checkNoNewInvalid(t, l, before)
		stopDaemon(t, l, d)
		if !r.OK {
			t.Fatalf("%s: %s", "window_scale "+opts.WindowScale.String(), r)
		}
		elapsed[i], serverSegs = r.Elapsed, sseg
	}
	ratio := elapsed[0].Seconds() / elapsed[1].Seconds()
	t.Logf("download of %d MiB through a %s RTT path honouring shift %d: strip %.2fs, clamp %.2fs: clamp %.1fx faster",
		rttSize>>20, rtt, rttK, elapsed[0].Seconds(), elapsed[1].Seconds(), ratio)
	if ratio < minSpeedup {
		t.Errorf("clamp only %.1fx faster than strip, want at least %.0fx", ratio, minSpeedup)
	}
	// The windows of the client's segments as the path and the server saw
	// them: the field scaled by the shift the server was told, rttK.
	most := 0
	for _, s := range serverSegs {
		if !s.Outgoing && !s.SYN && s.Dst.Addr() == dst {
			most = max(most, int(s.Window)<<rttK)
		}
	}
	t.Logf("largest client window the server saw: %d bytes", most)
	if most <= 0xffff {
		t.Errorf("largest client window the server saw with clamp: %d bytes; want above 64 KiB", most)
	}
}

// TestClampAcrossRestart: a clamped download goes on being rewritten by a
// daemon started while it runs. The flow's delta lives in its connmark, so
// the new daemon's rules queue its segments and its workers rewrite them
// without having seen the handshake; in the gap between the two the local
// host's windows pass unrewritten, which the path reads as smaller than
// they are: slower, never wrong.
func TestClampAcrossRestart(t *testing.T) {
	l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: rttK, RTT: rtt})
	policy := labPolicy(lab.ClampOptions(rttK))
	d1, err := l.StartDaemon(context.Background(), tcpnormBin, t.TempDir(), []lab.Policy{policy}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	before := invalidCounters(t, l)
	tr := lab.Transfer{Dst: lab.ServerAddr(false), Size: restartSize, Dir: lab.Download, Timeout: rttTimeout}
	type outcome struct {
		r   lab.TransferResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		r, err := l.Transfer(context.Background(), tr)
		done <- outcome{r, err}
	}()
	time.Sleep(restartAfter)
	m1 := metrics(t, d1)
	stopDaemon(t, l, d1)
	d2 := startDaemon(t, l, policy)
	o := <-done
	if o.err != nil {
		t.Fatalf("Transfer: %v", o.err)
	}
	t.Logf("download across the restart: %s", o.r)
	if !o.r.OK {
		t.Fatalf("download across a restart: %s", o.r)
	}
	if o.r.Elapsed < restartAfter {
		t.Fatalf("the download ended in %s, before the restart at %s: make restartSize larger", o.r.Elapsed, restartAfter)
	}
	checkNoNewInvalid(t, l, before)
	if v := metricValue(m1, "tcpnorm_rewrites_total", `action="window-rewrite"`); v == 0 {
		t.Errorf("the first daemon rewrote no window:\n%s", grep(m1, "tcpnorm_rewrites_total"))
	}
	m2 := metrics(t, d2)
	t.Logf("second daemon:\n%s", grep(m2, "tcpnorm_rewrites_total"))
	if v := metricValue(m2, "tcpnorm_rewrites_total", `action="window-rewrite"`); v == 0 {
		t.Errorf("the second daemon rewrote no window of the flow it never saw start")
	}
}

// tsOrder checks the client received data segments from the server, every
// one carrying timestamps, and that their TSvals never went backwards.
func tsOrder(t *testing.T, cseg []lab.Segment, server lab.Transfer) {
	t.Helper()
	n, without := 0, 0
	var last uint32
	for _, s := range cseg {
		if s.Outgoing || s.SYN || s.Len == 0 || s.Src.Addr() != server.Dst {
			continue
		}
		if !s.TS {
			without++
			continue
		}
		if n > 0 && int32(s.TSval-last) < 0 {
			t.Errorf("client received TSval %d after %d: %s", s.TSval, last, s)
		}
		last = s.TSval
		n++
	}
	if n == 0 || without > 0 {
		t.Errorf("client received %d data segments with timestamps and %d without; want all with", n, without)
	}
}

// TestTSScrambleRepair: a path moving some of the server's TSvals into the
// past and some into the future stalls a download; with repair it completes
// and the client receives timestamps on every segment, never going back.
func TestTSScrambleRepair(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			l := newPathLab(t, lab.FaultTSScramble2, lab.PathOptions{})
			tr := lab.Transfer{Dst: lab.ServerAddr(v6), Size: size, Dir: lab.Download, Timeout: failTimeout}
			r, _, _ := transfer(t, l, tr)
			if r.OK {
				t.Errorf("without tcpnorm: download completed through the ts-scramble2 path in %s; want failure", r.Elapsed)
			}

			d := startDaemon(t, l, labPolicy(normalize.Policy{Timestamps: normalize.TSRepair}))
			before := invalidCounters(t, l)
			scrambled := l.FaultPackets()
			tr.Timeout = okTimeout
			r, cseg, _ := transfer(t, l, tr)
			if !r.OK {
				t.Errorf("with repair: %s", r)
			}
			scrambled = l.FaultPackets() - scrambled
			checkNoNewInvalid(t, l, before)
			tsOrder(t, cseg, tr)
			m := metrics(t, d)
			repaired := metricValue(m, "tcpnorm_rewrites_total", `option="timestamps"`, `action="repair"`)
			t.Logf("path scrambled %d TSvals, tcpnorm repaired %.0f", scrambled, repaired)
			if scrambled == 0 || repaired == 0 {
				t.Errorf("scrambled %d, repaired %.0f: want both non-zero\n%s", scrambled, repaired, grep(m, "tcpnorm_rewrites_total"))
			}
		})
	}
}

// csumErrors reads TcpInCsumErrors in every namespace.
func csumErrors(t *testing.T, l *lab.Lab) map[string]uint64 {
	t.Helper()
	m := map[string]uint64{}
	for _, ns := range l.Namespaces() {
		v, err := netns.TCPInCsumErrors(ns)
		if err != nil {
			t.Fatalf("TcpInCsumErrors: %v", err)
		}
		m[ns] = v
	}
	return m
}

// TestHostMode: tcpnorm in host mode on the client itself (the gateway only
// forwards) clamps an upload through the wscale-cap path and repairs a
// download through the ts-scramble2 path. The rewritten segments leave and
// arrive with correct checksums: small locally generated segments (OUTPUT)
// and segments delivered locally (INPUT); TcpInCsumErrors stays 0.
func TestHostMode(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(family(v6), func(t *testing.T) {
			l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: capK})
			if buildErr != nil {
				t.Fatalf("no tcpnorm binary: %v", buildErr)
			}
			ctx := context.Background()
			opts := lab.ClampOptions(capK)
			opts.Timestamps = normalize.TSRepair
			pol := labPolicy(opts)
			d, err := l.StartHostDaemon(ctx, tcpnormBin, t.TempDir(), []lab.Policy{pol}, readyTimeout)
			if err != nil {
				t.Fatalf("StartHostDaemon: %v", err)
			}
			t.Cleanup(func() {
				if err := d.Stop(); err != nil {
					t.Errorf("daemon exit after SIGTERM: %v\nlog:\n%s", err, d.Log())
				}
				if left, err := l.TcpnormRulesIn(ctx, l.Client); err != nil || len(left) != 0 {
					t.Errorf("rules left in the client after the daemon exited (%v):\n%s", err, strings.Join(left, "\n"))
				}
			})
			before, csum := invalidCounters(t, l), csumErrors(t, l)
			dst := lab.ServerAddr(v6)

			tr := lab.Transfer{Dst: dst, Size: size, Dir: lab.Upload, Timeout: okTimeout}
			r, _, sseg := transfer(t, l, tr)
			if !r.OK {
				t.Errorf("upload with clamp in host mode: %s", r)
			}
			// The client's capture sees packets on the wire, before INPUT
			// where tcpnorm works in host mode: only the server's is
			// checked.
			if syn, ok := firstSYN(sseg, dst, false); !ok || syn.WScale != capK {
				t.Errorf("server received SYN [%s] (seen %v); want wscale %d", syn.Options, ok, capK)
			}

			if err := l.SetPath(ctx, lab.FaultTSScramble2, lab.PathOptions{}); err != nil {
				t.Fatal(err)
			}
			tr.Dir = lab.Download
			r, _, _ = transfer(t, l, tr)
			if !r.OK {
				t.Errorf("download with repair in host mode: %s", r)
			}

			checkNoNewInvalid(t, l, before)
			after := csumErrors(t, l)
			t.Logf("TcpInCsumErrors before %v, after %v", csum, after)
			for _, ns := range []string{l.Client, l.Server} {
				if after[ns] != csum[ns] {
					t.Errorf("TcpInCsumErrors in %s went %d -> %d", ns, csum[ns], after[ns])
				}
			}
			m := metrics(t, d)
			t.Logf("metrics:\n%s", grep(m, "tcpnorm_rewrites_total"))
			for _, sub := range []string{`action="window-rewrite"`, `action="repair"`} {
				if metricValue(m, "tcpnorm_rewrites_total", sub) == 0 {
					t.Errorf("no rewrite with %s counted", sub)
				}
			}
		})
	}
}
