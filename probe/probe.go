//go:build linux

package probe

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/nfq"
	"github.com/tcpnorm/tcpnorm/normalize"
	"github.com/tcpnorm/tcpnorm/rules"
)

// DefaultQueue is the probe's handshake queue; DefaultQueue+1 takes the
// later segments of the connections it clamps. Far above the daemon's
// usual range, so both can run at once.
const DefaultQueue = 65000

// Prober owns the probe's rules and queues while it runs: its sockets
// (marked rules.ProbeBit) are the only ones it sees.
type Prober struct {
	opt   Options
	tab   *table
	hs    *nfq.Pool
	flows *nfq.Pool
	lock  *rules.ProbeLock
	r     rules.Runner
	m     *metrics.Metrics
	rec   *Recorder
	recSt RecordStats
}

// Options are the probe's settings.
type Options struct {
	Workload Workload
	Trials   int    // per variant; at least 2 (agreement needs two)
	Queue    uint16 // DefaultQueue if 0
	Variants []Variant
	// All runs every variant even when the SYN as sent works.
	All bool
	Log *slog.Logger
	// Runner runs iptables for the rules (rules.Exec{} if nil).
	Runner rules.Runner
	// Progress, if set, is told of every trial as it ends.
	Progress func(addr netip.Addr, v Variant, n int, t Trial)
	// Capture, if set, receives the probe's own packets as pcapng (Record).
	Capture io.Writer
}

// ErrBusy is returned by Start while another probe runs in this network
// namespace.
var ErrBusy = errors.New("another tcpnorm probe is running in this network namespace")

// Start takes the probe lock, binds the queues, then installs the rules
// (removing a killed probe's first). Close undoes all of it.
func Start(ctx context.Context, opt Options) (*Prober, error) {
	if opt.Queue == 0 {
		opt.Queue = DefaultQueue
	}
	if opt.Trials < 2 {
		opt.Trials = 2
	}
	if len(opt.Variants) == 0 {
		opt.Variants = Variants()
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Runner == nil {
		opt.Runner = rules.Exec{}
	}
	opt.Workload.Mark = rules.ProbeBit
	rs, err := rules.BuildProbe(opt.Queue)
	if err != nil {
		return nil, err
	}
	lock, held, err := rules.TryProbeLock()
	if err != nil {
		return nil, err
	}
	if held {
		return nil, ErrBusy
	}
	p := &Prober{opt: opt, tab: &table{}, lock: lock, r: opt.Runner, m: metrics.New("probe")}
	base := nfq.Config{
		MaxLen:      0xffff,
		MaxQueueLen: 1024,
		MarkMask:    rules.ProbeFieldMask,
		FlowSlots:   64,
		FlowIdle:    5 * time.Minute,
		TSRateMax:   1000000,
		Table:       func() normalize.Table { return p.tab },
		Metrics:     p.m,
		Log:         opt.Log,
	}
	st := base
	st.Stateful = true
	if p.flows, err = nfq.StartPool(ctx, st, opt.Queue+1, 1); err != nil {
		p.Close()
		return nil, err
	}
	base.SeedSink = p.flows
	if p.hs, err = nfq.StartPool(ctx, base, opt.Queue, 1); err != nil {
		p.Close()
		return nil, err
	}
	if opt.Capture != nil {
		if p.rec, err = Record(opt.Capture); err != nil {
			p.Close()
			return nil, err
		}
	}
	if err := rules.InstallProbe(ctx, p.r, rs); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Close removes the rules, unbinds the queues and releases the lock. It
// works on a context of its own: it runs on every exit path, cancelled or
// not.
func (p *Prober) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := rules.RemoveProbe(ctx, p.r)
	if p.hs != nil {
		err = errors.Join(err, p.hs.Close())
	}
	if p.flows != nil {
		err = errors.Join(err, p.flows.Close())
	}
	if p.lock != nil {
		err = errors.Join(err, p.lock.Unlock())
		p.lock = nil
	}
	if p.rec != nil {
		var rerr error
		p.recSt, rerr = p.rec.Close()
		err = errors.Join(err, rerr)
		p.rec = nil
	}
	return err
}

// Recorded is what the capture holds, once Close has returned.
func (p *Prober) Recorded() RecordStats { return p.recSt }

// SetWorkload changes the workload of the trials to come (the recipient
// differs per domain).
func (p *Prober) SetWorkload(w Workload) {
	w.Mark = rules.ProbeBit
	p.opt.Workload = w
}

// VariantResult is what the trials of one variant gave.
type VariantResult struct {
	Variant Variant `json:"variant"`
	Trials  []Trial `json:"trials"`
	rank    int     // its place in Options.Variants: lower is less invasive
}

// Agreed is the outcome every trial had, or false if they differ.
func (v VariantResult) Agreed() (Outcome, bool) {
	if len(v.Trials) == 0 {
		return 0, false
	}
	o := v.Trials[0].Outcome
	for _, t := range v.Trials[1:] {
		if t.Outcome != o {
			return o, false
		}
	}
	return o, true
}

// Address probes one address: every trial of the SYN as sent first; when
// they all fail, the variants in turn, least invasive first, up to the
// first whose trials all deliver the body (with All: every variant, every
// trial). A variant's trials stop at its first failure: it can no longer
// be the fix, and each failure costs a stall.
//
// A SYN as sent that is never answered costs every variant a connect
// timeout: the barest SYN (SYNMinimal) goes first, and if it is not
// answered either, the address is unreachable and nothing else is tried.
func (p *Prober) Address(ctx context.Context, addr netip.Addr) AddressResult {
	res := AddressResult{Addr: addr}
	if p.rec != nil {
		if err := p.rec.Watch(addr); err != nil {
			p.opt.Log.Warn("probe: the capture misses this address", "addr", addr, "err", err)
		}
	}
	order := make([]int, len(p.opt.Variants))
	for i := range order {
		order[i] = i
	}
	for k := 0; k < len(order); k++ {
		i := order[k]
		v := p.opt.Variants[i]
		if ctx.Err() != nil {
			break
		}
		if k > 0 && !p.opt.All {
			if !res.Variants[0].allFailed() {
				break
			}
			// The first variant that works, in order, is the fix; the
			// barest SYN tried out of order does not end the search.
			if o, ok := res.Variants[k-1].Agreed(); k > 1 && ok && o == Completed && !(k == 2 && order[1] != 1) {
				break
			}
			if k == 1 && unanswered(res.Variants[0]) {
				if m := p.variantIndex(SYNMinimal); m > 0 {
					order = append(append([]int{0, m}, order[1:m]...), order[m+1:]...)
					i, v = m, p.opt.Variants[m]
				}
			}
			if k == 2 && order[1] != 1 && unanswered(res.Variants[1]) {
				break
			}
		}
		vr := p.variant(ctx, addr, v, k > 0 && !p.opt.All)
		vr.rank = i
		res.Variants = append(res.Variants, vr)
	}
	res.judge()
	return res
}

// variant runs the trials of v; with stopEarly, up to the first that does
// not deliver the body.
func (p *Prober) variant(ctx context.Context, addr netip.Addr, v Variant, stopEarly bool) VariantResult {
	vr := VariantResult{Variant: v}
	p.tab.p.Store(&v.Policy)
	defer p.tab.p.Store(nil)
	for n := 0; n < p.opt.Trials && ctx.Err() == nil; n++ {
		if n > 0 && stopEarly && vr.Trials[n-1].Outcome != Completed {
			break
		}
		t := Run(ctx, addr, p.opt.Workload)
		if t.Outcome == Completed || t.Outcome == Stalled {
			if why := notApplied(v, t); why != "" {
				t.Outcome, t.Detail = Failed, "variant not applied: "+why
			}
		}
		vr.Trials = append(vr.Trials, t)
		if p.opt.Progress != nil {
			p.opt.Progress(addr, v, n+1, t)
		}
	}
	return vr
}

func (p *Prober) variantIndex(name string) int {
	for i, v := range p.opt.Variants {
		if v.Name == name {
			return i
		}
	}
	return -1
}

// unanswered reports whether no trial of v got a SYN-ACK.
func unanswered(v VariantResult) bool {
	for _, t := range v.Trials {
		if t.Outcome != Unreachable {
			return false
		}
	}
	return len(v.Trials) > 0
}

// notApplied checks, from what the kernel negotiated, that the variant's
// change reached the wire: a probe whose rewrite silently did not happen
// would clear or blame an option wrongly. (A clamp cannot be checked so:
// the kernel keeps its own shift, and the normalizer rewrites its windows.)
func notApplied(v Variant, t Trial) string {
	p := v.Policy
	switch {
	case p.WindowScale == normalize.WSStrip && t.WindowScaling:
		return "window scaling was negotiated"
	case p.Timestamps == normalize.TSStrip && t.Timestamps:
		return "timestamps were negotiated"
	case p.StripSACKOK && t.SACK:
		return "SACK was negotiated"
	}
	return ""
}
