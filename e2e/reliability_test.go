//go:build linux

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// What the flows through tcpnorm do when the daemon dies without removing
// its rules (SIGKILL, the OOM killer, a crash), and when it is restarted.

const (
	// killTransfers run at once when the daemon is killed, each killSize
	// through a path with rtt added: long enough to be in flight at the
	// kill.
	killTransfers = 50
	killSize      = 4 << 20
	killAfter     = 300 * time.Millisecond
	killTimeout   = 20 * time.Second
	// restartDelay is examples/tcpnorm.service's RestartSec.
	restartDelay = time.Second
	// restartWithin bounds the time from the kill to the new daemon's
	// ready.
	restartWithin = 2 * time.Second
)

// killCase is one daemon death: the policy in force, whether the daemon is
// restarted after restartDelay, and the transfers that run through it.
type killCase struct {
	name    string
	policy  lab.Policy
	restart bool
	dirs    []lab.Direction // alternating among the transfers
	upSize  int             // uploads; downloads are killSize
	timeout time.Duration   // each transfer's; default killTimeout
}

// killed is what happened to a killCase's transfers.
type killed struct {
	results []lab.TransferResult
	counts  map[outcome]int
	before  int           // completed before the kill
	ready   time.Duration // from the kill to the restarted daemon's ready
	// rewrites counts the stateful rewrites of the killed daemon and of
	// the restarted one.
	rewrites, rewritesAfter float64
}

// rulesOfCleanStart starts and stops a daemon with policy and returns the
// rules it had installed, to compare later starts with.
func rulesOfCleanStart(t *testing.T, l *lab.Lab, policy lab.Policy) []string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	d, err := l.StartDaemon(context.Background(), tcpnormBin, t.TempDir(), []lab.Policy{policy}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	clean, err := l.TcpnormRules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stopDaemon(t, l, d)
	return clean
}

// killDuring runs tc: a daemon started over whatever rules the previous
// case left (they must come out as clean), killTransfers transfers, SIGKILL
// killAfter after they all connected, the rules still in place, and a
// restart if tc says so. A restarted daemon is stopped at the end; a killed
// one leaves its rules for the next case.
func killDuring(t *testing.T, l *lab.Lab, clean []string, tc killCase) killed {
	t.Helper()
	ctx := context.Background()
	d, err := l.StartDaemon(ctx, tcpnormBin, t.TempDir(), []lab.Policy{tc.policy}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemon: %v", err)
	}
	defer d.Kill()
	checkRules(t, l, clean, "after a start over a killed daemon's rules")
	timeout := tc.timeout
	if timeout == 0 {
		timeout = killTimeout
	}
	ts := make([]lab.Transfer, killTransfers)
	for i := range ts {
		ts[i] = lab.Transfer{Dst: lab.ServerAddr(false), Size: killSize, Dir: tc.dirs[i%len(tc.dirs)], Timeout: timeout, Seed: uint64(i)}
		if ts[i].Dir == lab.Upload && tc.upSize > 0 {
			ts[i].Size = tc.upSize
		}
	}
	b, err := startBatch(ctx, l, ts)
	if err != nil {
		t.Fatal(err)
	}
	<-b.connected()
	time.Sleep(killAfter)
	var k killed
	k.before = b.completed()
	k.rewrites = statefulRewrites(t, d)
	d.Kill()
	at := time.Now()
	checkRules(t, l, clean, "after SIGKILL")
	var d2 *lab.Daemon
	if tc.restart {
		time.Sleep(restartDelay)
		d2, err = l.StartDaemon(ctx, tcpnormBin, t.TempDir(), []lab.Policy{tc.policy}, readyTimeout)
		if err != nil {
			t.Fatalf("restart: %v", err)
		}
		k.ready = time.Since(at)
		checkRules(t, l, clean, "after the restart")
	}
	k.results = b.wait()
	k.counts = countOutcomes(k.results)
	if d2 != nil {
		k.rewritesAfter = statefulRewrites(t, d2)
		stopDaemon(t, l, d2)
	}
	n := k.counts
	t.Logf("%s: %d/%d complete, %d stalled, %d reset, %d broken (%d had completed before the kill); %s",
		tc.name, n[outcomeComplete], len(k.results), n[outcomeStalled], n[outcomeReset], n[outcomeBroken], k.before, elapsedSummary(k.results))
	if tc.restart {
		t.Logf("killed to ready again: %.2fs; stateful rewrites before the kill %.0f, by the restarted daemon %.0f",
			k.ready.Seconds(), k.rewrites, k.rewritesAfter)
		if k.ready > restartWithin {
			t.Errorf("killed to ready again: %s, want at most %s", k.ready, restartWithin)
		}
	}
	if k.before > killTransfers/2 {
		t.Errorf("%d of %d transfers completed before the kill: make killSize larger", k.before, killTransfers)
	}
	return k
}

// statefulRewrites counts the daemon's rewrites of later segments.
func statefulRewrites(t *testing.T, d *lab.Daemon) float64 {
	return metricValue(metrics(t, d), "tcpnorm_rewrites_total", `policy="(stateful)"`)
}

// TestDaemonKilled kills the daemon with SIGKILL while killTransfers
// transfers run through it, with a strip and with a clamp policy, and lets
// them run on with no daemon or with one restarted after restartDelay.
// A stripped flow is never queued after its handshake: every transfer
// completes. A clamped flow's later segments bypass the unbound queue: the
// path then reads the local windows as field << N, a sudden shrink that a
// path enforcing windows punishes with drops: clamped uploads complete,
// clamped downloads may crawl, until a restarted daemon rewrites the
// windows again from the connmark and every transfer completes. No
// transfer is ever reset. Each start replaces the rules the killed daemon
// left, without duplicates.
//
// The restart case runs three times with 1 MiB uploads, all required: when
// a restarted daemon removed the killed one's rules before installing its
// own, the inherited flows passed unrewritten for about 230 ms after it had
// begun to rewrite them, and 41 of 900 such uploads then crawled at one
// segment per delayed ACK, in 9 of 36 runs; with the rules replaced in one
// commit, none of 300 in 12 runs did.
func TestDaemonKilled(t *testing.T) {
	l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: rttK, RTT: rtt})
	strip := labPolicy(normalize.Policy{WindowScale: normalize.WSStrip})
	clamp := labPolicy(lab.ClampOptions(rttK))
	clean := rulesOfCleanStart(t, l, clamp)
	both := []lab.Direction{lab.Upload, lab.Download}
	for _, tc := range []killCase{
		{name: "strip/no-restart", policy: strip, dirs: both},
		{name: "strip/restart", policy: strip, restart: true, dirs: both},
		// A clamped upload is slow on this path whatever happens to the
		// daemon (the remote's windows are read as field << rttK).
		{name: "clamp/no-restart", policy: clamp, dirs: both, upSize: killSize / 16},
		{name: "clamp/restart/1", policy: clamp, restart: true, dirs: both, upSize: killSize / 4, timeout: 30 * time.Second},
		{name: "clamp/restart/2", policy: clamp, restart: true, dirs: both, upSize: killSize / 4, timeout: 30 * time.Second},
		{name: "clamp/restart/3", policy: clamp, restart: true, dirs: both, upSize: killSize / 4, timeout: 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := killDuring(t, l, clean, tc)
			if k.rewrites == 0 && tc.policy.Options.WindowScale == normalize.WSClamp {
				t.Errorf("the killed daemon had rewritten no window: the flows were not clamped")
			}
			if tc.restart && tc.policy.Options.WindowScale == normalize.WSClamp && k.rewritesAfter == 0 {
				t.Errorf("the restarted daemon rewrote no window of the flows it inherited")
			}
			// Stripped or restarted: everything completes. Clamped, no
			// daemon: uploads complete, downloads may crawl. Nothing is
			// ever reset.
			for _, r := range k.results {
				must := tc.policy.Options.WindowScale == normalize.WSStrip || tc.restart || r.Dir == lab.Upload
				if outcomeOf(r) == outcomeReset || outcomeOf(r) == outcomeBroken || (must && !r.OK) {
					t.Errorf("%s", r)
				} else if !r.OK {
					t.Logf("not required: %s", r)
				}
			}
		})
	}
}

// TestDaemonKilledRepair kills the daemon while killTransfers downloads
// are repaired through a path scrambling the server's TSvals. Their
// segments wait in the unbound queue (no bypass: one scrambled TSval
// reaching the client would poison its PAWS state for good): with no
// daemon every download stalls and none is reset; a daemon restarted after
// restartDelay, which never saw their handshakes, repairs them all to
// completion: where the first segment it sees is one the path moved into
// the past, the client's echo of the newest TSval it accepted lifts the
// flow's state above it.
func TestDaemonKilledRepair(t *testing.T) {
	l := newPathLab(t, lab.FaultTSScramble2, lab.PathOptions{RTT: rtt})
	repair := labPolicy(normalize.Policy{Timestamps: normalize.TSRepair})
	clean := rulesOfCleanStart(t, l, repair)
	down := []lab.Direction{lab.Download}
	for _, tc := range []killCase{
		{name: "repair/no-restart", policy: repair, dirs: down, timeout: 8 * time.Second},
		// Repaired flows the new daemon never saw start are seeded from
		// their first later segment; some take a while to recover.
		{name: "repair/restart", policy: repair, restart: true, dirs: down, timeout: 40 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := killDuring(t, l, clean, tc)
			if k.rewrites == 0 {
				t.Errorf("the killed daemon had repaired no TSval: the flows were not repaired")
			}
			want := outcomeComplete
			if !tc.restart {
				want = outcomeStalled
			}
			for _, r := range k.results {
				if outcomeOf(r) != want {
					t.Errorf("%s; want %s", r, want)
				}
			}
		})
	}
}

// runBatch runs n transfers of size to the server at once, half uploads,
// half downloads, and returns their outcomes.
func runBatch(l *lab.Lab, v6 bool, n, size int) ([]lab.TransferResult, error) {
	ts := make([]lab.Transfer, n)
	for i := range ts {
		ts[i] = lab.Transfer{Dst: lab.ServerAddr(v6), Size: size, Dir: lab.Direction(i % 2), Timeout: okTimeout, Seed: uint64(i)}
	}
	b, err := startBatch(context.Background(), l, ts)
	if err != nil {
		return nil, err
	}
	return b.wait(), nil
}

// countOK reports every transfer of rs that failed, as what, and returns
// how many completed.
func countOK(t *testing.T, what string, rs []lab.TransferResult) int {
	t.Helper()
	n := 0
	for _, r := range rs {
		if r.OK {
			n++
		} else {
			t.Errorf("%s: %s", what, r)
		}
	}
	return n
}

// checkRules compares the tcpnorm rules in the gateway with want.
func checkRules(t *testing.T, l *lab.Lab, want []string, when string) {
	t.Helper()
	got, err := l.TcpnormRules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules %s:\n%s\nwant:\n%s", when, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// elapsedSummary gives the fastest, median and slowest completed transfer.
func elapsedSummary(rs []lab.TransferResult) string {
	var ds []time.Duration
	for _, r := range rs {
		if r.OK {
			ds = append(ds, r.Elapsed)
		}
	}
	if len(ds) == 0 {
		return "none completed"
	}
	slices.Sort(ds)
	return fmt.Sprintf("completed in %.2f / %.2f / %.2f s (min / median / max)",
		ds[0].Seconds(), ds[len(ds)/2].Seconds(), ds[len(ds)-1].Seconds())
}
