//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
)

const (
	// overloadMaxLen is the handshake queues' length in the overload test
	// (the stateful queues hold 8 times as many).
	overloadMaxLen = 128
	// The daemon is stopped for overloadStop while overloadFlows clamped
	// uploads of overloadSize run: every data segment the client sends
	// is queued whole on the stateful range. overloadClamp, one below
	// Linux's usual shift of 7, keeps the server's windows (read as
	// field << overloadClamp) from throttling the uploads. At the stop's
	// start overloadSYNs SYNs a second arrive for overloadBurst.
	overloadClamp = 6
	overloadStop  = 2 * time.Second
	overloadSYNs  = 20000
	overloadBurst = 200 * time.Millisecond
	overloadFlows = 40
	overloadSize  = 16 << 20
	// overloadAfter lets the uploads' windows open before the stop.
	overloadAfter = 100 * time.Millisecond
)

// TestOverload stops the daemon (SIGSTOP: the limit of a daemon slower than
// its packets) while a SYN flood, new connections and clamped uploads run. The handshake queues fill and, fail_open being on, the kernel
// accepts the rest: no handshake is dropped by a queue, every new
// connection completes, and the bypass is what the handshake rule matched
// beyond tcpnorm_kernel_queue_enqueued_total. The stateful queues, which
// have no fail-open, overflow: the kernel's drops are reported in
// tcpnorm_kernel_queue_dropped_total, and the clamped uploads recover
// once the daemon runs again.
func TestOverload(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	ctx := context.Background()
	d, err := l.StartDaemonWith(ctx, lab.DaemonOptions{MaxLen: overloadMaxLen}, tcpnormBin, t.TempDir(), []lab.Policy{labPolicy(lab.ClampOptions(overloadClamp))}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemonWith: %v", err)
	}
	t.Cleanup(func() {
		d.Signal(syscall.SIGCONT)
		stopDaemon(t, l, d)
	})

	flows := make([]lab.Transfer, overloadFlows)
	for i := range flows {
		flows[i] = lab.Transfer{Dst: lab.ServerAddr(false), Size: overloadSize, Dir: lab.Upload, Timeout: 40 * time.Second, Seed: uint64(i)}
	}
	a, err := startBatch(ctx, l, flows)
	if err != nil {
		t.Fatal(err)
	}
	<-a.connected()
	time.Sleep(overloadAfter)

	flowsBefore := a.completed()
	m0 := metrics(t, d)
	hits0 := handshakeRuleHits(t, l)
	if err := d.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	flood := make(chan injectStats, 1)
	go func() {
		syns := makeSYNs([]netip.Addr{lab.ClientV4}, lab.ServerAddr(false), hostileSport, lab.SMTPPort, 4096)
		st, err := inject(ctx, l.Client, syns, overloadSYNs, overloadBurst)
		if err != nil {
			t.Error(err)
		}
		flood <- st
	}()
	// New connections while the daemon is stopped and its queues full,
	// on a port of their own (the clamped transfers have the listener on
	// 25): every SYN is queued, whatever the policy.
	fresh := make([]lab.Transfer, 20)
	for i := range fresh {
		fresh[i] = lab.Transfer{Dst: lab.ServerAddr(false), Port: lab.SMTPPort + 1, Size: stormSize, Dir: lab.Direction(i % 2), Timeout: okTimeout, Seed: uint64(i)}
	}
	fl := <-flood
	b, err := startBatch(ctx, l, fresh)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(stopped.Add(overloadStop)))
	freshDone := b.completed()
	if err := d.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon stopped for %.1fs", time.Since(stopped).Seconds())
	freshRes, flowRes := b.wait(), a.wait()
	m1 := metrics(t, d)
	hits := handshakeRuleHits(t, l) - hits0

	q := func(m, name, queue string) float64 { return metricValue(m, name, `queue="`+queue+`"`) }
	var enq, hsDrops, stDrops, stUser float64
	for _, n := range []string{"0", "1"} {
		enq += q(m1, "tcpnorm_kernel_queue_enqueued_total", n) - q(m0, "tcpnorm_kernel_queue_enqueued_total", n)
		hsDrops += q(m1, "tcpnorm_kernel_queue_dropped_total", n) + q(m1, "tcpnorm_kernel_queue_user_dropped_total", n)
	}
	for _, n := range []string{"2", "3"} {
		stDrops += q(m1, "tcpnorm_kernel_queue_dropped_total", n) - q(m0, "tcpnorm_kernel_queue_dropped_total", n)
		stUser += q(m1, "tcpnorm_kernel_queue_user_dropped_total", n) - q(m0, "tcpnorm_kernel_queue_user_dropped_total", n)
	}
	t.Logf("flood: %d SYNs sent (%.0f/s); IPv4 handshake rule matched %.0f, %.0f enqueued, %.0f accepted by fail-open; handshake queue drops %.0f",
		fl.Sent, float64(fl.Sent)/overloadBurst.Seconds(), hits, enq, hits-enq, hsDrops)
	t.Logf("new connections during the stop: %d/%d complete (%d before the daemon ran again); clamped transfers: %d/%d complete",
		countOK(t, "new connection", freshRes), len(freshRes), freshDone, countOK(t, "clamped upload", flowRes), len(flowRes))
	t.Logf("stateful queues: %.0f dropped full, %.0f not delivered; clamped uploads %s (%d had completed before the stop)", stDrops, stUser, elapsedSummary(flowRes), flowsBefore)
	if hsDrops != 0 {
		t.Errorf("handshake queues dropped %.0f packets; with fail_open they drop none", hsDrops)
	}
	if hits-enq <= 0 {
		t.Errorf("no handshake accepted by fail-open (matched %.0f, enqueued %.0f): the flood did not fill the queues", hits, enq)
	}
	if freshDone == 0 {
		t.Errorf("no new connection completed while the daemon was stopped")
	}
	if stDrops == 0 {
		t.Errorf("the stateful queues did not overflow while the daemon was stopped, or it was not counted")
	}
}

// handshakeRuleHits reads the packet counter of the IPv4 handshake queue
// rule in the gateway.
func handshakeRuleHits(t *testing.T, l *lab.Lab) float64 {
	t.Helper()
	out, err := netns.Run(context.Background(), l.Gateway, "iptables", "-w", "-t", "mangle", "-vxnL", "TCPNORM-FWD")
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range strings.Split(out, "\n") {
		if strings.Contains(ln, "NFQUEUE") && strings.Contains(ln, "flags:0x02/0x02") {
			var n float64
			fmt.Sscan(strings.Fields(ln)[0], &n)
			return n
		}
	}
	t.Fatalf("no handshake rule in:\n%s", out)
	return 0
}
