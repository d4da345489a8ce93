//go:build linux

package nfq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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
