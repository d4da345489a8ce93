//go:build linux

package nfq

// The receive loop: batches of queued packets answered with one message of
// verdicts, each packet through the normalizer, and what goes elsewhere after
// the verdicts are sent (rewrite lines, evidence) or before (repair seeds).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// receive runs the receive loop on a locked OS thread until stopped or the
// socket fails.
func (w *Worker) receive() {
	defer close(w.done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := w.loop(w.fd); err != nil && !w.stopped.Load() {
		w.log.Error("worker failed", "err", err)
		w.onFail(fmt.Errorf("nfq: queue %d: receive: %w", w.cfg.Queue, err))
	}
}

// loop receives packets, as many as are waiting, answers them, and sends
// their verdicts in one message, until stopped. It blocks in poll(2) only
// when a receive did not fill every slot, so under load it never sleeps.
func (w *Worker) loop(fd int) error {
	full := false
	for !w.stopped.Load() {
		if !full {
			ok, err := w.waiter.wait(fd)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
		}
		n, err := w.rx.recv(fd)
		full = n == w.rx.slots()
		if err != nil {
			if fatal := w.receiveError(err); fatal != nil {
				return fatal
			}
			continue
		}
		w.errsInARow = 0
		w.batch(fd, n)
	}
	return nil
}

// receiveError handles a receive error; non-nil if it ends the worker.
// ENOBUFS (the kernel dropped messages because the socket buffer was full)
// is counted and reading goes on.
func (w *Worker) receiveError(err error) error {
	switch err {
	case unix.EAGAIN, unix.EINTR:
		return nil
	case unix.ENOBUFS:
		w.m.ENOBUFS.Inc()
		return nil
	case unix.EBADF, unix.ENOTSOCK:
		return err
	}
	w.m.Receive.Inc()
	w.errsInARow++
	if w.errsInARow > maxErrorsInARow {
		return err
	}
	w.logErr("receive failed", err)
	return nil
}

// batch answers the n datagrams of one receive and sends their verdicts.
func (w *Worker) batch(fd int, n int) {
	var now int64
	if w.seeds != nil {
		// Seeds given before a SYN-ACK's verdict are in the channel
		// before any of the flow's later segments can have been received.
		w.takeSeeds()
		now = int64(time.Since(w.epoch))
	}
	for i := 0; i < n; i++ {
		b := w.rx.datagram(i)
		for len(b) > 0 {
			var kind msgKind
			kind, b = nextMsg(b, &w.q)
			switch kind {
			case msgPacket:
				if w.tx.pending()+verdictMsgLen(action{packet: true, setMark: true}, w.q.payload) > w.sendLimit {
					w.flush(fd)
				}
				w.packet(&w.q, now)
			case msgError:
				w.m.Verdict.Inc()
				w.logErr("verdict refused", w.q.errno)
			case msgMalformed:
				w.m.Receive.Inc()
				w.logErr("receive failed", errMalformed)
			}
		}
	}
	w.flush(fd)
	w.offerLogs()
	w.offerEvidence()
}

var errMalformed = errors.New("malformed queue message")

// flush sends the verdicts collected. If the kernel takes none of them
// (the whole message was refused), each is sent on its own, and one with a
// mark or bytes that is refused again goes as a plain verdict.
func (w *Worker) flush(fd int) {
	b := w.tx.bytes()
	if len(b) == 0 {
		return
	}
	if err := send(fd, b); err != nil {
		w.m.Verdict.Inc()
		w.logErr("verdict failed", err)
		for len(b) >= verdictFixedLen {
			n := min(align4(int(binary.NativeEndian.Uint32(b[0:4]))), len(b))
			msg := b[:n]
			err := send(fd, msg)
			if err != nil && n > verdictFixedLen {
				err = send(fd, plainVerdict(msg))
			}
			if err != nil {
				w.m.Verdict.Inc()
			}
			b = b[n:]
		}
	}
	w.tx.reset()
}

// packet answers one queued packet: its verdict joins the batch.
func (w *Worker) packet(q *queued, now int64) {
	sample := w.seq&15 == 0
	w.seq++
	var start time.Time
	if sample {
		start = time.Now()
	}
	meta := metaOf(q)
	meta.Now = now
	res, act, ok := normalize.Result{}, acceptUnchanged, false
	if !q.cut {
		res, act, ok = w.handle(q.payload, meta)
	}
	if res.HasSeed {
		// Before the verdict: the flow's first later segment cannot reach
		// the stateful worker ahead of its seed.
		w.giveSeed(res)
	}
	w.tx.add(q.id, act, q.payload)
	if sample {
		w.m.ProcTime.Observe(time.Since(start).Seconds())
	}
	if w.seq&1023 == 0 {
		w.publishStats()
	}
	if !ok {
		w.m.PacketError()
		return
	}
	w.m.Packet(act.metricVerdict(), res.Why.Reason)
	if res.Policy != nil && res.Kind == normalize.KindSYN {
		w.m.Matched(res.Policy, time.Now())
	}
	w.countRewrites(res)
	if w.cfg.ConnLog != nil && loggable(res) {
		if len(w.logs) < cap(w.logs) {
			w.logs = append(w.logs, connEvent{queue: w.cfg.Queue, res: res})
		} else {
			w.cfg.ConnLog.offer(w.cfg.Queue, res)
		}
	}
	if w.cfg.Evidence != nil && evidence.Wanted(&res) {
		w.keepEvidence(&res, q.payload)
	}
}

// keepEvidence copies a handshake segment of an evidence policy, as
// received and as sent (pkt, rewritten in place), into the batch's
// records; one beyond them goes to the recorder at once.
func (w *Worker) keepEvidence(res *normalize.Result, pkt []byte) {
	if w.nevid < len(w.evid) {
		w.evid[w.nevid].Fill(time.Now(), w.cfg.Queue, res, pkt, pkt)
		w.nevid++
		return
	}
	var rec evidence.Record
	rec.Fill(time.Now(), w.cfg.Queue, res, pkt, pkt)
	w.cfg.Evidence.Offer(&rec)
}

// offerEvidence hands the batch's evidence to the recorder, after the
// verdicts are sent, like offerLogs.
func (w *Worker) offerEvidence() {
	for i := 0; i < w.nevid; i++ {
		w.cfg.Evidence.Offer(&w.evid[i])
		w.evid[i].Policy = nil
	}
	w.nevid = 0
}

// offerLogs hands the batch's rewrite lines to the log. It runs after the
// verdicts are sent: waking the log's goroutine costs a thread wake-up that
// would otherwise come before the packets move on.
func (w *Worker) offerLogs() {
	for i := range w.logs {
		w.cfg.ConnLog.offer(w.logs[i].queue, w.logs[i].res)
		w.logs[i] = connEvent{}
	}
	w.logs = w.logs[:0]
}

// publishStats adds the normalizer's own counters to the metrics.
func (w *Worker) publishStats() {
	s := w.n.Stats()
	w.m.HandshakeEvictions.Add(float64(s.HandshakeEvictions - w.stats.HandshakeEvictions))
	w.m.FlowEvictions.Add(float64(s.FlowEvictions - w.stats.FlowEvictions))
	w.stats = s
}

// statefulPolicy labels the rewrites of the later segments of clamped and
// repaired flows: they are rewritten from the connmark alone, without a
// policy lookup, so the policy that marked the flow is not known.
var statefulPolicy = &normalize.Policy{Name: "(stateful)"}

func (w *Worker) countRewrites(res normalize.Result) {
	if res.Why.Changes == 0 {
		return
	}
	p := res.Policy
	if p == nil {
		p = statefulPolicy
	}
	w.m.Rewrites(p, res.Why.Changes, res.Why.Reason == normalize.ReasonLogOnly)
}

// takeSeeds starts the repair state of flows whose handshakes another
// worker saw.
func (w *Worker) takeSeeds() {
	for {
		select {
		case s := <-w.seeds:
			w.n.SeedRepair(s.flow, s.ts, int64(time.Since(w.epoch)))
		default:
			return
		}
	}
}

func (w *Worker) giveSeed(res normalize.Result) {
	p := w.cfg.SeedSink
	if p == nil || w.cfg.index >= len(p.Workers) {
		return
	}
	select {
	case p.Workers[w.cfg.index].seeds <- seed{flow: res.Flow, ts: res.Seed}:
	default:
		w.m.SeedDropped.Inc()
	}
}

// handle runs the normalizer on one packet. A panic accepts the packet
// unchanged (ok false): the bytes may be half-edited, so they are not sent.
func (w *Worker) handle(pkt []byte, m normalize.Meta) (res normalize.Result, act action, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			w.m.Panics.Inc()
			if now := time.Now(); now.Sub(w.lastPanicLog) >= 10*time.Second {
				w.lastPanicLog = now
				w.log.Error("packet processing panicked; packet accepted unchanged",
					"panic", fmt.Sprint(p), "len", len(pkt), "stack", string(debug.Stack()))
			}
			res, act, ok = normalize.Result{}, acceptUnchanged, false
		}
	}()
	t := w.cfg.Table()
	if t == nil {
		t = noPolicies{}
	}
	res = w.norm(pkt, t, m)
	return res, decide(res, m), true
}

func (w *Worker) logErr(msg string, err error) {
	if now := time.Now(); now.Sub(w.lastErrLog) >= 10*time.Second {
		w.lastErrLog = now
		w.log.Warn(msg, "err", err)
	}
}
