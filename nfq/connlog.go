//go:build linux

package nfq

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// ConnLog writes one line per rewritten (or, log-only, would-rewrite)
// handshake segment, rate-limited by a token bucket. Workers hand it results
// without blocking; formatting and writing happen on its own goroutine, so a
// slow log sink never holds up a verdict. Lines over the limit are counted
// and reported periodically as "suppressed".
type ConnLog struct {
	log        *slog.Logger
	ch         chan connEvent
	suppressed atomic.Uint64
	counter    prometheus.Counter // may be nil

	mu     sync.Mutex
	tokens float64
	last   time.Time
	rate   float64 // lines per second
	burst  float64
	now    func() time.Time
}

type connEvent struct {
	queue uint16
	res   normalize.Result
}

// NewConnLog allows perSecond lines a second on average, bursts of
// 2*perSecond. suppressed, if not nil, counts the lines dropped.
func NewConnLog(log *slog.Logger, perSecond int, suppressed prometheus.Counter) *ConnLog {
	if perSecond < 1 {
		perSecond = 1
	}
	return &ConnLog{
		log:     log,
		ch:      make(chan connEvent, 256),
		counter: suppressed,
		rate:    float64(perSecond),
		burst:   float64(2 * perSecond),
		tokens:  float64(2 * perSecond),
		now:     time.Now,
	}
}

// loggable reports whether r is worth a line: a handshake segment a policy
// changed, would change, or dropped. Later segments of stateful flows are
// only counted: a line each would be a line per packet.
func loggable(r normalize.Result) bool {
	if r.Policy == nil || r.Kind == normalize.KindOther {
		return false
	}
	return r.Why.Changes != 0 || r.Verdict == normalize.Drop
}

// offer queues r for logging if the rate allows; it never blocks.
func (c *ConnLog) offer(queue uint16, r normalize.Result) {
	if !c.allow() {
		c.drop()
		return
	}
	select {
	case c.ch <- connEvent{queue: queue, res: r}:
	default:
		c.drop()
	}
}

func (c *ConnLog) drop() {
	c.suppressed.Add(1)
	if c.counter != nil {
		c.counter.Inc()
	}
}

func (c *ConnLog) allow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.last.IsZero() {
		c.tokens += now.Sub(c.last).Seconds() * c.rate
		if c.tokens > c.burst {
			c.tokens = c.burst
		}
	}
	c.last = now
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// Run writes queued lines until ctx is done, and every interval a line
// saying how many were suppressed, if any.
func (c *ConnLog) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.flushSuppressed()
			return
		case ev := <-c.ch:
			c.write(ev)
		case <-t.C:
			c.flushSuppressed()
		}
	}
}

func (c *ConnLog) flushSuppressed() {
	if n := c.suppressed.Swap(0); n > 0 {
		c.log.Warn("suppressed", "lines", n, "what", "rewrite log lines over the rate limit")
	}
}

func (c *ConnLog) write(ev connEvent) {
	r := ev.res
	msg := "rewrite"
	switch {
	case r.Verdict == normalize.Drop:
		msg = "drop"
	case r.Why.Reason == normalize.ReasonLogOnly:
		msg = "would-rewrite"
	}
	c.log.Info(msg,
		"policy", r.Policy.Name,
		"ticket", r.Policy.Ticket,
		"kind", r.Kind.String(),
		"dir", r.Dir.String(),
		"proto", "tcp",
		"client", netip.AddrPortFrom(r.Flow.Client, r.Flow.ClientPort).String(),
		"server", netip.AddrPortFrom(r.Flow.Server, r.Flow.ServerPort).String(),
		"why", r.Why.String(),
		"verdict", verdictString(r),
		"queue", ev.queue,
	)
}

// verdictString names what the kernel was told: drop, modify (accept with
// rewritten bytes) or accept.
func verdictString(r normalize.Result) string {
	if r.Verdict == normalize.Accept && r.Modified {
		return "modify"
	}
	return r.Verdict.String()
}
