package nfq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Config is one worker's settings.
type Config struct {
	Queue       uint16
	MaxLen      uint32        // bytes of each packet copied to tcpnorm (the copy range)
	MaxQueueLen uint32        // packets the kernel holds for the worker ([queue] max_len); 0: DefaultMaxQueueLen
	FailOpen    bool          // the kernel accepts packets when the queue is full
	MarkMask    uint32        // [rules] mark, for the normalizer
	FlowSlots   int           // repair state this worker keeps ([flows] max / count)
	FlowIdle    time.Duration // [flows] idle_timeout
	TSRateMax   uint32        // [flows] ts_rate_max
	// Table returns the policy table in force (config.Manager.Table). It is
	// called once per packet and must not block or allocate.
	Table   func() normalize.Table
	Metrics *metrics.Metrics // required
	Log     *slog.Logger     // required
	ConnLog *ConnLog         // rewrite lines; nil: none
	// Evidence records the handshakes of evidence policies; nil: none.
	Evidence *evidence.Recorder
	NetNS    int // network namespace fd to bind in; 0: the current one
	// Stateful marks a worker of the second queue range, which gets the
	// later segments of clamped and repaired flows. Its queue has no GSO
	// flag, so the kernel segments GSO packets and finishes checksums
	// before queueing: every segment can be rewritten whole.
	Stateful bool
	// SeedSink, for a handshake worker, is the stateful pool whose worker
	// of the same index gets the flow's later segments (both ranges have
	// the same size and balance hash). Timestamp repair is seeded there from
	// the handshake.
	SeedSink *Pool
	// index is the worker's position in its pool.
	index int
}

// seed hands a repaired flow's handshake TSval to the stateful worker.
type seed struct {
	flow normalize.Flow
	ts   uint32
}

// seedBacklog bounds the seeds waiting for a stateful worker; beyond it a
// flow seeds from its first later segment instead.
const seedBacklog = 1024

// DefaultMaxQueueLen is the kernel queue length used when Config leaves it 0.
const DefaultMaxQueueLen = 4096

// maxErrorsInARow ends a worker whose socket returns nothing but errors,
// which only a broken socket does; ENOBUFS does not count.
const maxErrorsInARow = 10000

// Receive buffer bounds: room for the whole kernel queue at max_len, within
// reason.
const (
	minReadBuffer = 1 << 20
	maxReadBuffer = 32 << 20
)

// Worker answers the packets of one queue.
type Worker struct {
	cfg  Config
	fd   int // the netlink socket; -1 before Open
	norm func(pkt []byte, t normalize.Table, m normalize.Meta) normalize.Result
	n    *normalize.Normalizer
	m    *metrics.Queue
	log  *slog.Logger

	seeds chan seed       // stateful workers: seeds from the handshake worker
	epoch time.Time       // for Meta.Now
	stats normalize.Stats // last published

	waiter    *waiter       // wakes the receive loop to stop
	stopOnce  sync.Once     // the wake-up is sent once
	stopped   atomic.Bool   // checked by the loop between receives
	done      chan struct{} // closed when the receive loop has ended; nil before Start
	unhook    func() bool   // detaches the loop from Start's context
	onFail    func(error)   // called once if the worker ends on its own
	sendLimit int           // bytes one sendmsg may carry

	// Owned by the receive loop.
	rx           *receiver
	tx           verdicts
	q            queued
	seq          uint64
	logs         []connEvent       // rewrite lines of the batch, offered after its verdicts
	evid         []evidence.Record // evidence of the batch, offered after its verdicts
	nevid        int
	errsInARow   int
	lastPanicLog time.Time
	lastErrLog   time.Time
}

// noPolicies is the table used if Table returns nil: nothing matches.
type noPolicies struct{}

func (noPolicies) Lookup(netip.Addr, uint16, normalize.Direction) *normalize.Policy { return nil }

// newWorker builds a worker without a socket.
func newWorker(cfg Config) (*Worker, error) {
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = DefaultMaxQueueLen
	}
	if cfg.Table == nil {
		cfg.Table = func() normalize.Table { return noPolicies{} }
	}
	n := normalize.New(normalize.Config{MarkMask: cfg.MarkMask, FlowSlots: cfg.FlowSlots, FlowIdle: int64(cfg.FlowIdle), TSRateMax: cfg.TSRateMax})
	w := &Worker{
		cfg:       cfg,
		fd:        -1,
		norm:      n.Packet,
		n:         n,
		m:         cfg.Metrics.Queue(cfg.Queue),
		log:       cfg.Log.With("queue", cfg.Queue),
		onFail:    func(error) {},
		epoch:     time.Now(),
		sendLimit: defaultSendLimit,
		// Plain accepts are coalesced only where the kernel would let
		// packets through anyway: fail-open queues (see verdicts).
		tx: verdicts{queue: cfg.Queue, coalesce: cfg.FailOpen, b: make([]byte, 0, 64<<10)},
	}
	if cfg.Stateful {
		w.seeds = make(chan seed, seedBacklog)
	}
	if cfg.ConnLog != nil {
		w.logs = make([]connEvent, 0, recvSlots)
	}
	if cfg.Evidence != nil {
		w.evid = make([]evidence.Record, recvSlots)
	}
	var err error
	if w.rx, err = newReceiver(cfg.MaxLen); err != nil {
		return nil, fmt.Errorf("nfq: queue %d: receive buffer: %w", cfg.Queue, err)
	}
	return w, nil
}

// Socket buffer for verdicts: one sendmsg carries at most the send buffer
// less 32 bytes (netlink_sendmsg), and must hold at least one verdict with
// a whole packet.
const (
	sendBuffer       = 1 << 20
	defaultSendLimit = 128 << 10
	minSendLimit     = maxCopyRange + 2*verdictFixedLen
)

// Open creates the worker's socket. Nothing is received until Start.
func Open(cfg Config) (*Worker, error) {
	if cfg.Metrics == nil || cfg.Log == nil {
		return nil, errors.New("nfq: Config.Metrics and Config.Log are required")
	}
	w, err := newWorker(cfg)
	if err != nil {
		return nil, err
	}
	if w.fd, err = socketIn(cfg.NetNS); err != nil {
		w.release()
		return nil, fmt.Errorf("nfq: queue %d: open: %w", cfg.Queue, err)
	}
	if w.waiter, err = newWaiter(); err != nil {
		w.release()
		return nil, fmt.Errorf("nfq: queue %d: eventfd: %w", cfg.Queue, err)
	}
	fd := w.fd
	// Overflow is counted by the kernel (user dropped) and by us when it
	// is reported; it must not surface as receive errors that end a worker.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
		w.log.Warn("cannot set NETLINK_NO_ENOBUFS", "err", err)
	}
	want := int(min(max(uint64(w.cfg.MaxQueueLen)*uint64(cfg.MaxLen+256), minReadBuffer), maxReadBuffer))
	if err := setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, want); err != nil {
		w.log.Warn("cannot size socket receive buffer", "bytes", want, "err", err)
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sendBuffer); err != nil {
		w.log.Warn("cannot size socket send buffer", "bytes", sendBuffer, "err", err)
	}
	if n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err == nil {
		w.sendLimit = max(n-32, minSendLimit)
	}
	return w, nil
}

// Start binds the queue and starts the goroutine that receives its packets
// and answers them. It runs until ctx is done or Close.
func (w *Worker) Start(ctx context.Context) error {
	if err := w.bind(); err != nil {
		return fmt.Errorf("nfq: queue %d: bind: %w", w.cfg.Queue, err)
	}
	w.done = make(chan struct{})
	w.unhook = context.AfterFunc(ctx, w.stop)
	go w.receive()
	w.log.Info("worker started", "max_len", w.cfg.MaxLen, "max_queue_len", w.cfg.MaxQueueLen, "fail_open", w.cfg.FailOpen)
	return nil
}

// bind sends the queue's configuration, each message acknowledged: the
// protocol family unbind and bind (no-ops since Linux 3.8, kept for older
// kernels), the queue bind, copy mode and range, flags, queue length.
func (w *Worker) bind() error {
	var flags uint32
	if !w.cfg.Stateful {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	if w.cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	q := w.cfg.Queue
	steps := []struct {
		what  string
		queue uint16
		attrs func([]byte) []byte
	}{
		{"family unbind", 0, func(b []byte) []byte { return appendCfgCmd(b, cfgCmdPFUnbind) }},
		{"family bind", 0, func(b []byte) []byte { return appendCfgCmd(b, cfgCmdPFBind) }},
		{"queue bind", q, func(b []byte) []byte { return appendCfgCmd(b, cfgCmdBind) }},
		{"copy mode", q, func(b []byte) []byte { return appendCfgParams(b, w.cfg.MaxLen) }},
		{"flags and queue length", q, func(b []byte) []byte {
			if flags != 0 {
				b = appendAttrU32(b, attrCfgFlags, flags)
				b = appendAttrU32(b, attrCfgMask, flags)
			}
			return appendAttrU32(b, attrCfgQueueMaxLen, w.cfg.MaxQueueLen)
		}},
	}
	// A packet queued before the copy mode is set carries no bytes.
	early := func() { w.m.PacketError() }
	for i, s := range steps {
		msg := finishMsg(s.attrs(appendConfigMsg(nil, s.queue)), 0)
		if err := request(w.fd, q, msg, uint32(i+1), early); err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// unbindMsg releases the queue. It is sent without waiting for the
// acknowledgement, which could be queued behind packet messages nobody
// reads any more; closing the socket releases the queue too.
func (w *Worker) unbindMsg() []byte {
	b := appendMsgHeader(nil, msgTypeConfig, unix.NLM_F_REQUEST, w.cfg.Queue)
	return finishMsg(appendCfgCmd(b, cfgCmdUnbind), 0)
}

// stop tells the receive loop to end.
func (w *Worker) stop() {
	w.stopOnce.Do(func() {
		w.stopped.Store(true)
		if w.waiter != nil {
			w.waiter.wake()
		}
	})
}

// Close stops the receive loop, unbinds the queue and closes the socket.
// Packets still waiting in the kernel queue are released by the kernel.
func (w *Worker) Close() error {
	w.stop()
	if w.done != nil {
		<-w.done
		w.unhook()
		if err := send(w.fd, w.unbindMsg()); err != nil {
			w.log.Debug("unbind failed", "err", err)
		}
	}
	err := w.release()
	w.log.Info("worker stopped")
	return err
}

// release closes the socket and the eventfd and unmaps the receive buffer,
// whichever exist. The receive loop must not be running.
func (w *Worker) release() error {
	var err error
	if w.fd >= 0 {
		err = unix.Close(w.fd)
		w.fd = -1
	}
	if w.waiter != nil {
		w.waiter.close()
		w.waiter = nil
	}
	if w.rx != nil {
		w.rx.close()
		w.rx = nil
	}
	return err
}

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
