//go:build linux

package nfq

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// The loop tests run a worker's receive loop on one end of a SOCK_SEQPACKET
// socket pair (datagrams, like netlink), playing the kernel on the other:
// they write packet messages and read the verdicts back. No root needed.

type fakeKernel struct {
	t         *testing.T
	fd        int    // the kernel's end
	wfd       int    // the worker's end
	startLoop func() // starts the worker's loop
}

// loopWorker starts w's receive loop on a socket pair; the returned
// function stops it and reports the loop's error.
func loopWorker(t *testing.T, w *Worker) (*fakeKernel, func() error) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if w.waiter, err = newWaiter(); err != nil {
		t.Fatal(err)
	}
	k := &fakeKernel{t: t, fd: fds[1], wfd: fds[0]}
	done := make(chan error, 1)
	started, stopped := false, false
	var loopErr error
	start := func() {
		started = true
		go func() { done <- w.loop(fds[0]) }()
	}
	stop := func() error {
		if !started {
			start()
		}
		if stopped {
			return loopErr
		}
		stopped = true
		w.stop()
		select {
		case loopErr = <-done:
			return loopErr
		case <-time.After(5 * time.Second):
			t.Fatal("loop did not stop within 5s")
			return nil
		}
	}
	t.Cleanup(func() {
		if started {
			stop()
		}
		unix.Close(fds[0])
		unix.Close(fds[1])
	})
	k.startLoop = start
	return k, stop
}

// send writes one datagram to the worker.
func (k *fakeKernel) send(b []byte) {
	k.t.Helper()
	if _, err := unix.Write(k.fd, b); err != nil {
		k.t.Fatalf("write to the worker: %v", err)
	}
}

// verdicts reads verdict datagrams until one answers lastID, and returns
// them as verdictLines.
func (k *fakeKernel) verdicts(lastID uint32) (lines []string, datagrams int) {
	k.t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		fds := []unix.PollFd{{Fd: int32(k.fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 100); err != nil || n == 0 {
			continue
		}
		n, err := unix.Read(k.fd, buf)
		if err != nil {
			k.t.Fatalf("read verdicts: %v", err)
		}
		datagrams++
		lines = append(lines, verdictLines(k.t, buf[:n])...)
		if lastVerdictID(buf[:n]) == lastID {
			return lines, datagrams
		}
	}
	k.t.Fatalf("no verdict for id %d within 5s; got %q", lastID, lines)
	return nil, 0
}

// lastVerdictID is the id of the last verdict message in b.
func lastVerdictID(b []byte) uint32 {
	var id uint32
	for len(b) >= verdictFixedLen {
		n := int(binary.NativeEndian.Uint32(b[0:4]))
		if n < verdictFixedLen || n > len(b) {
			break
		}
		id = binary.BigEndian.Uint32(b[28:32])
		b = b[n:]
	}
	return id
}

// taggedNorm decides by a packet's first byte: 'a' accept, 'm' modify,
// 'k' accept with a mark, 'd' drop, 'p' panic.
func taggedNorm(pkt []byte, _ normalize.Table, _ normalize.Meta) normalize.Result {
	switch pkt[0] {
	case 'm':
		pkt[1] = 'M'
		return normalize.Result{Modified: true, Why: normalize.Why{Reason: normalize.ReasonApplied}}
	case 'k':
		return normalize.Result{SetMark: true, Mark: 0x25000000, Why: normalize.Why{Reason: normalize.ReasonApplied}}
	case 'd':
		return normalize.Result{Verdict: normalize.Drop, Why: normalize.Why{Reason: normalize.ReasonApplied}}
	case 'p':
		var p *normalize.Policy
		_ = p.Name
	}
	return normalize.Result{Why: normalize.Why{Reason: normalize.ReasonNoPolicy}}
}

func loopTestWorker(t *testing.T, failOpen bool, logs *bytes.Buffer) (*Worker, *metrics.Metrics) {
	m := metrics.New("test")
	w, err := newWorker(Config{Queue: 3, MaxLen: 4096, FailOpen: failOpen, Metrics: m, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.release() })
	w.norm = taggedNorm
	return w, m
}

func TestLoopAnswersEveryPacket(t *testing.T) {
	littleEndian(t)
	tests := []struct {
		name     string
		failOpen bool
		want     []string
	}{
		{
			name:     "fail-open queue",
			failOpen: true,
			want: []string{
				"B 2 accept", "V 3 accept bytes=4", "V 4 accept", "V 5 accept mark=25000000",
				"V 6 drop", "B 8 accept",
			},
		},
		{
			name: "stateful queue",
			want: []string{
				"V 1 accept", "V 2 accept", "V 3 accept bytes=4", "V 4 accept", "V 5 accept mark=25000000",
				"V 6 drop", "V 7 accept", "V 8 accept",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			w, m := loopTestWorker(t, tt.failOpen, &logs)
			k, stop := loopWorker(t, w)
			// Everything is waiting before the loop starts, so one
			// receive gets it all and one sendmsg answers it.
			for i, tag := range "aampkdaa" {
				k.send(appendPacketMsg(nil, 3, uint32(i+1), 0, 0, []byte{byte(tag), 'x', 'y', 'z'}))
				if tag == 'p' {
					// The kernel refusing a verdict, and garbage.
					k.send(unhex(t, `24000000 0200 0000 00000000 00000000 feffffff 20000000 0103 0100 00000000 00000000`))
					k.send([]byte{1, 2, 3})
				}
			}
			k.startLoop()
			got, datagrams := k.verdicts(8)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			if datagrams != 1 {
				t.Errorf("verdicts came in %d sendmsg, want 1", datagrams)
			}
			if err := stop(); err != nil {
				t.Errorf("loop ended with %v", err)
			}
			for _, c := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"tcpnorm_worker_panics_total", nil, 1},
				{"tcpnorm_packets_total", map[string]string{"verdict": "accept", "reason": "error"}, 1},
				{"tcpnorm_packets_total", map[string]string{"verdict": "modify", "reason": "applied"}, 1},
				{"tcpnorm_packets_total", map[string]string{"verdict": "drop", "reason": "applied"}, 1},
				{"tcpnorm_packets_total", map[string]string{"verdict": "accept", "reason": "no-policy"}, 4},
				{"tcpnorm_worker_errors_total", map[string]string{"op": "verdict"}, 1},
				{"tcpnorm_worker_errors_total", map[string]string{"op": "receive"}, 1},
			} {
				if got := counter(t, m, c.name, c.labels); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
				}
			}
		})
	}
}

// TestLoopWakesAndStops: a packet that arrives while the loop waits is
// answered at once, and stop ends a waiting loop.
func TestLoopWakesAndStops(t *testing.T) {
	littleEndian(t)
	var logs bytes.Buffer
	w, _ := loopTestWorker(t, true, &logs)
	k, stop := loopWorker(t, w)
	k.startLoop()
	for id := uint32(1); id <= 3; id++ {
		time.Sleep(10 * time.Millisecond)
		k.send(appendPacketMsg(nil, 3, id, 0, 0, []byte{'a'}))
		got, _ := k.verdicts(id)
		if want := []string{fmt.Sprintf("V %d accept", id)}; !cmp.Equal(want, got) {
			t.Errorf("verdicts = %q, want %q", got, want)
		}
	}
	time.Sleep(10 * time.Millisecond)
	t0 := time.Now()
	if err := stop(); err != nil {
		t.Errorf("loop ended with %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("stop took %v", d)
	}
}

// TestFlushFallback: when the kernel takes none of a batch (here: larger
// than the socket's send buffer), each verdict goes on its own.
func TestFlushFallback(t *testing.T) {
	littleEndian(t)
	var logs bytes.Buffer
	w, m := loopTestWorker(t, false, &logs)
	k, stop := loopWorker(t, w)
	pkt := bytes.Repeat([]byte{'m'}, 1500)
	for id := uint32(1); id <= 6; id++ {
		k.send(appendPacketMsg(nil, 3, id, 0, 0, pkt))
	}
	// 2*4096 bytes (the kernel doubles it): one verdict fits, six do not.
	if err := unix.SetsockoptInt(k.wfd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096); err != nil {
		t.Fatal(err)
	}
	k.startLoop()
	var got []string
	for id := uint32(1); id <= 6; id++ {
		lines, _ := k.verdicts(id)
		got = append(got, lines...)
	}
	var want []string
	for id := 1; id <= 6; id++ {
		want = append(want, fmt.Sprintf("V %d accept bytes=1500", id))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("verdicts (-want +got):\n%s", diff)
	}
	if err := stop(); err != nil {
		t.Errorf("loop ended with %v", err)
	}
	if got := counter(t, m, "tcpnorm_worker_errors_total", map[string]string{"op": "verdict"}); got != 1 {
		t.Errorf("verdict errors = %v, want 1 (the batch)", got)
	}
	if !strings.Contains(logs.String(), "verdict failed") {
		t.Errorf("batch failure not logged:\n%s", logs.String())
	}
}

func TestReceiveError(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		fatal   bool
		enobufs float64
		errs    float64
	}{
		{name: "no data", err: unix.EAGAIN},
		{name: "interrupted", err: unix.EINTR},
		{name: "overflow", err: unix.ENOBUFS, enobufs: 1},
		{name: "other", err: unix.EIO, errs: 1},
		{name: "closed", err: unix.EBADF, fatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			w, m := loopTestWorker(t, true, &logs)
			if got := w.receiveError(tt.err); (got != nil) != tt.fatal || (got != nil && !errors.Is(got, tt.err)) {
				t.Errorf("receiveError(%v) = %v, want fatal %v", tt.err, got, tt.fatal)
			}
			if got := counter(t, m, "tcpnorm_enobufs_total", nil); got != tt.enobufs {
				t.Errorf("enobufs = %v, want %v", got, tt.enobufs)
			}
			if got := counter(t, m, "tcpnorm_worker_errors_total", map[string]string{"op": "receive"}); got != tt.errs {
				t.Errorf("receive errors = %v, want %v", got, tt.errs)
			}
		})
	}
	t.Run("errors in a row end the worker", func(t *testing.T) {
		var logs bytes.Buffer
		w, _ := loopTestWorker(t, true, &logs)
		for i := 0; i < maxErrorsInARow; i++ {
			if err := w.receiveError(unix.EIO); err != nil {
				t.Fatalf("error %d ended the worker", i+1)
			}
		}
		if err := w.receiveError(unix.EIO); err == nil {
			t.Error("no end after maxErrorsInARow errors")
		}
	})
}

// TestLoopFailureReported: a worker whose descriptor is not a socket ends
// and says so through onFail (Pool.Failed).
func TestLoopFailureReported(t *testing.T) {
	var logs bytes.Buffer
	w, _ := loopTestWorker(t, true, &logs)
	var err error
	if w.waiter, err = newWaiter(); err != nil {
		t.Fatal(err)
	}
	if w.fd, err = unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	w.onFail = func(err error) { failed <- err }
	w.done = make(chan struct{})
	go w.receive()
	select {
	case err := <-failed:
		if !errors.Is(err, unix.ENOTSOCK) {
			t.Errorf("failure = %v, want ENOTSOCK", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported within 5s")
	}
	<-w.done
	if !strings.Contains(logs.String(), "worker failed") {
		t.Errorf("failure not logged:\n%s", logs.String())
	}
}
