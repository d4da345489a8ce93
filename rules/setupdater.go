//go:build linux

package rules

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tcpnorm/tcpnorm/metrics"
)

// SetGrace is how long a prefix stays in the kernel address sets after the
// policy table dropped it (reload, DNS change, expiry). A connection whose
// SYN was queued and recorded must have its SYN-ACK queued too: a SYN-ACK
// that bypassed tcpnorm would leave the two ends disagreeing on a stripped
// option, or a clamped flow without its connmark. The longest a SYN-ACK
// can follow the recorded SYN is the client's SYN retransmission schedule:
// Linux's default tcp_syn_retries = 6 gives up after 127 s. Additions take
// effect at once: a SYN-ACK whose SYN was not queued only has its MSS
// clamped, which is safe.
const SetGrace = 3 * time.Minute

// SetRetry is the delay before a failed set update is tried again.
const SetRetry = 5 * time.Second

// setTimeout bounds one update (an ipset restore).
const setTimeout = 30 * time.Second

// SetUpdater keeps the kernel address sets in step with the policy table,
// keeping a prefix the table dropped for SetGrace.
type SetUpdater struct {
	spec    Spec
	rules   Runner
	log     *slog.Logger
	metrics *metrics.Metrics
	grace   time.Duration
	retry   time.Duration
	now     func() time.Time

	mu      sync.Mutex
	applied []netip.Prefix // what the sets hold, sorted
	ok      bool           // applied is known (an update succeeded)
	leaving map[netip.Prefix]time.Time
}

// NewSetUpdater returns the updater of spec's sets, counting in m.
func NewSetUpdater(spec Spec, r Runner, log *slog.Logger, m *metrics.Metrics) *SetUpdater {
	return &SetUpdater{spec: spec, rules: r, log: log, metrics: m, grace: SetGrace, retry: SetRetry,
		now: time.Now, leaving: map[netip.Prefix]time.Time{}}
}

// Sync makes the sets hold want plus every prefix dropped from it less than
// the grace period ago. It returns when to run again (a grace period
// ending, or a retry after a failure), zero if nothing is due. On failure
// the sets keep their contents: the error is logged and counted, never
// fatal, since sets that lag the table only leave a new peer's handshakes
// unqueued (they pass unchanged, as before the policy existed) or an old
// peer's queued a while longer.
func (u *SetUpdater) Sync(ctx context.Context, want []netip.Prefix) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	for _, p := range u.applied {
		if _, ok := u.leaving[p]; !ok && !slices.Contains(want, p) {
			u.leaving[p] = now.Add(u.grace)
		}
	}
	target := slices.Clone(want)
	var next time.Time
	for p, until := range u.leaving {
		switch {
		case slices.Contains(want, p), !now.Before(until):
			delete(u.leaving, p)
		default:
			target = append(target, p)
			if next.IsZero() || until.Before(next) {
				next = until
			}
		}
	}
	slices.SortFunc(target, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	target = slices.Compact(target)
	if u.ok && slices.Equal(target, u.applied) {
		return next
	}
	rctx, cancel := context.WithTimeout(ctx, setTimeout)
	err := UpdateSets(rctx, u.rules, u.spec, target)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			u.metrics.SetUpdates.WithLabelValues("error").Inc()
			u.log.Error("updating the address sets failed; they keep their previous contents", "retry_in", u.retry, "err", err)
		}
		return now.Add(u.retry)
	}
	u.metrics.SetUpdates.WithLabelValues("ok").Inc()
	var n4, n6 int
	for _, p := range target {
		if p.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	u.metrics.SetEntries.WithLabelValues("ipv4").Set(float64(n4))
	u.metrics.SetEntries.WithLabelValues("ipv6").Set(float64(n6))
	u.log.Info("address sets updated", "ipv4", u.spec.SetName(IPv4), "ipv4_prefixes", n4,
		"ipv6", u.spec.SetName(IPv6), "ipv6_prefixes", n6, "leaving", len(u.leaving))
	u.applied, u.ok = target, true
	return next
}

// Run follows the table's swaps (changed) until ctx ends, calling Sync
// with prefixes() after each and whenever Sync asked to run again.
func (u *SetUpdater) Run(ctx context.Context, changed <-chan struct{}, prefixes func() []netip.Prefix) {
	u.log.Debug("address set updater started")
	defer u.log.Debug("address set updater stopped")
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-changed:
		case <-fire:
		}
		next := u.Sync(ctx, prefixes())
		if timer != nil {
			timer.Stop()
		}
		fire = nil
		if !next.IsZero() {
			timer = time.NewTimer(max(0, next.Sub(u.now())))
			fire = timer.C
		}
	}
}
