package nfq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

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
	NetNS   int              // network namespace fd to bind in; 0: the current one
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
	nf   *nfqueue.Nfqueue
	norm func(pkt []byte, t normalize.Table, m normalize.Meta) normalize.Result
	n    *normalize.Normalizer
	m    *metrics.Queue
	log  *slog.Logger

	seeds chan seed       // stateful workers: seeds from the handshake worker
	epoch time.Time       // for Meta.Now
	stats normalize.Stats // last published

	ctx    context.Context
	cancel context.CancelFunc
	onFail func(error) // called once if the worker ends on its own

	// Owned by the receiving goroutine.
	seq          uint64
	errsInARow   int
	lastPanicLog time.Time
	lastErrLog   time.Time
}

// noPolicies is the table used if Table returns nil: nothing matches.
type noPolicies struct{}

func (noPolicies) Lookup(netip.Addr, uint16, normalize.Direction) *normalize.Policy { return nil }

// newWorker builds a worker without a socket.
func newWorker(cfg Config) *Worker {
	if cfg.MaxQueueLen == 0 {
		cfg.MaxQueueLen = DefaultMaxQueueLen
	}
	if cfg.Table == nil {
		cfg.Table = func() normalize.Table { return noPolicies{} }
	}
	n := normalize.New(normalize.Config{MarkMask: cfg.MarkMask, FlowSlots: cfg.FlowSlots, FlowIdle: int64(cfg.FlowIdle), TSRateMax: cfg.TSRateMax})
	w := &Worker{
		cfg:    cfg,
		norm:   n.Packet,
		n:      n,
		m:      cfg.Metrics.Queue(cfg.Queue),
		log:    cfg.Log.With("queue", cfg.Queue),
		onFail: func(error) {},
		epoch:  time.Now(),
	}
	if cfg.Stateful {
		w.seeds = make(chan seed, seedBacklog)
	}
	return w
}

// Open creates the worker's socket. Nothing is received until Start.
func Open(cfg Config) (*Worker, error) {
	if cfg.Metrics == nil || cfg.Log == nil {
		return nil, errors.New("nfq: Config.Metrics and Config.Log are required")
	}
	w := newWorker(cfg)
	var flags uint32
	if !cfg.Stateful {
		flags |= nfqueue.NfQaCfgFlagGSO
	}
	if cfg.FailOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        cfg.NetNS,
		NfQueue:      cfg.Queue,
		MaxQueueLen:  w.cfg.MaxQueueLen,
		MaxPacketLen: cfg.MaxLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        flags,
		// Queue binding ignores the family since Linux 3.8; one socket
		// serves IPv4 and IPv6.
		AfFamily: unix.AF_UNSPEC,
		Logger:   nfLogger{w.log},
	})
	if err != nil {
		return nil, fmt.Errorf("nfq: queue %d: open: %w", cfg.Queue, err)
	}
	w.nf = nf
	// Overflow is counted by the kernel (user dropped) and by us when it
	// is reported; it must not surface as receive errors that end a worker.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		w.log.Warn("cannot set NETLINK_NO_ENOBUFS", "err", err)
	}
	want := int(min(max(uint64(w.cfg.MaxQueueLen)*uint64(cfg.MaxLen+256), minReadBuffer), maxReadBuffer))
	if err := setReadBuffer(nf.Con, want); err != nil {
		w.log.Warn("cannot size socket receive buffer", "bytes", want, "err", err)
	}
	return w, nil
}

// setReadBuffer sets the receive buffer beyond net.core.rmem_max when
// privileged (SO_RCVBUFFORCE), else as far as rmem_max allows.
func setReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		})
		if err == nil && serr == nil {
			return nil
		}
	}
	return c.SetReadBuffer(n)
}

// Start binds the queue and starts the goroutine that receives its packets
// and answers them. It runs until ctx is done or Close.
func (w *Worker) Start(ctx context.Context) error {
	w.ctx, w.cancel = context.WithCancel(ctx)
	if err := w.nf.RegisterWithErrorFunc(w.ctx, w.hook, w.onError); err != nil {
		w.cancel()
		return fmt.Errorf("nfq: queue %d: bind: %w", w.cfg.Queue, err)
	}
	w.log.Info("worker started", "max_len", w.cfg.MaxLen, "max_queue_len", w.cfg.MaxQueueLen, "fail_open", w.cfg.FailOpen)
	return nil
}

// Close unbinds the queue and closes the socket. Packets still waiting in
// the kernel queue are released by the kernel.
func (w *Worker) Close() error {
	if w.cancel != nil {
		w.cancel()
	}
	err := w.nf.Close()
	w.log.Info("worker stopped")
	return err
}

// hook answers one queued packet. It always returns 0: a non-zero return
// would stop the worker.
func (w *Worker) hook(a nfqueue.Attribute) int {
	w.errsInARow = 0
	if a.PacketID == nil {
		w.m.Receive.Inc()
		return 0
	}
	id := *a.PacketID
	var pkt []byte
	if a.Payload != nil {
		pkt = *a.Payload
	}
	sample := w.seq&15 == 0
	w.seq++
	var start time.Time
	if sample {
		start = time.Now()
	}
	meta := metaOf(&a)
	if w.seeds != nil {
		w.takeSeeds()
		meta.Now = int64(time.Since(w.epoch))
	}
	res, act, ok := w.handle(pkt, meta)
	if res.HasSeed {
		// Before the verdict: the flow's first later segment cannot reach
		// the stateful worker ahead of its seed.
		w.giveSeed(res)
	}
	if err := w.verdict(id, act, pkt); err != nil {
		w.m.Verdict.Inc()
		w.logErr("verdict failed", err)
		// Retry without the extras that could have been refused.
		if act.packet || act.setMark {
			if err := w.nf.SetVerdict(id, act.verdict); err != nil {
				w.m.Verdict.Inc()
			}
		}
	}
	if sample {
		w.m.ProcTime.Observe(time.Since(start).Seconds())
	}
	if w.seq&1023 == 0 {
		w.publishStats()
	}
	if !ok {
		w.m.PacketError()
		return 0
	}
	w.m.Packet(act.metricVerdict(), res.Why.Reason)
	w.countRewrites(res)
	if w.cfg.ConnLog != nil && loggable(res) {
		w.cfg.ConnLog.offer(w.cfg.Queue, res)
	}
	return 0
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

func (w *Worker) verdict(id uint32, act action, pkt []byte) error {
	switch {
	case act.packet && act.setMark:
		return w.nf.SetVerdictWithOption(id, act.verdict, nfqueue.WithMark(act.mark), nfqueue.WithAlteredPacket(pkt))
	case act.packet:
		return w.nf.SetVerdictWithOption(id, act.verdict, nfqueue.WithAlteredPacket(pkt))
	case act.setMark:
		return w.nf.SetVerdictWithOption(id, act.verdict, nfqueue.WithMark(act.mark))
	}
	return w.nf.SetVerdict(id, act.verdict)
}

// onError handles a receive error. ENOBUFS (the kernel dropped messages
// because the socket buffer was full) is counted and reading goes on.
func (w *Worker) onError(err error) int {
	if w.ctx.Err() != nil {
		return 1
	}
	if errors.Is(err, unix.ENOBUFS) {
		w.m.ENOBUFS.Inc()
		return 0
	}
	w.m.Receive.Inc()
	w.errsInARow++
	if errors.Is(err, net.ErrClosed) || errors.Is(err, unix.EBADF) || w.errsInARow > maxErrorsInARow {
		w.log.Error("worker failed", "err", err)
		w.onFail(fmt.Errorf("nfq: queue %d: receive: %w", w.cfg.Queue, err))
		return 1
	}
	w.logErr("receive failed", err)
	return 0
}

func (w *Worker) logErr(msg string, err error) {
	if now := time.Now(); now.Sub(w.lastErrLog) >= 10*time.Second {
		w.lastErrLog = now
		w.log.Warn(msg, "err", err)
	}
}

// nfLogger routes go-nfqueue's own messages to debug level: they include
// routine ones such as "Stop receiving" at every shutdown.
type nfLogger struct{ l *slog.Logger }

func (n nfLogger) Debugf(format string, args ...interface{}) {
	n.l.Debug("nfqueue: " + fmt.Sprintf(format, args...))
}

func (n nfLogger) Errorf(format string, args ...interface{}) {
	n.l.Debug("nfqueue: " + fmt.Sprintf(format, args...))
}
