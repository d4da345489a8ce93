//go:build linux

package probe

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Target is a policy whose path the daemon re-tests (policy key probe).
type Target struct {
	Name     string
	Every    time.Duration
	Addrs    []netip.Addr
	Workload Workload
	Policy   *normalize.Policy
	// Why, if set, says why the target cannot be probed (no single
	// address): its state stays unknown.
	Why string
}

// Backoff: after this many probes in a row with the same result, each
// next one waits twice as long, up to maxBackoff times the interval (as
// Linux's TFO black-hole detection backs off): a path that stays broken,
// or fixed, is probed less.
const (
	backoffAfter = 3
	maxBackoff   = 8
)

// Scheduler re-tests the paths of the policies that ask for it, one probe
// at a time, each on its own interval, spread out. A probe takes the probe
// lock and rules only while it runs; a manual probe holding them makes the
// scheduled one wait.
type Scheduler struct {
	// Targets lists the policies to re-test, read before every round.
	Targets func() []Target
	// Options start each round's Prober (Queue, Trials, Log, Runner).
	Options Options
	// StateFile keeps the states across restarts (config.ProbeStateFile);
	// empty: memory only.
	StateFile string
	// Ready gates the first probe (the daemon's policies in force).
	Ready func() bool
	Log   *slog.Logger

	mu     sync.Mutex
	states map[string]config.ProbeState
	now    func() time.Time
}

// Run probes until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	if s.now == nil {
		s.now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock()
	if s.states == nil {
		s.states = map[string]config.ProbeState{}
		if s.StateFile != "" {
			st, err := config.ReadProbeStates(s.StateFile)
			if err != nil {
				s.Log.Warn("probe states not read; starting afresh", "err", err)
			}
			for k, v := range st {
				s.states[k] = v
			}
		}
	}
	s.mu.Unlock()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.Ready == nil || s.Ready() {
				s.round(ctx)
			}
		}
	}
}

// round probes the target most overdue, if any is due.
func (s *Scheduler) round(ctx context.Context) {
	now := s.now()
	targets := s.Targets()
	var due *Target
	s.mu.Lock()
	known := map[string]bool{}
	for i := range targets {
		tg := &targets[i]
		known[tg.Name] = true
		st := s.states[tg.Name]
		if st.Next.IsZero() || st.Next.Sub(now) > maxBackoff*tg.Every*11/10 {
			// New, or its interval was shortened: soon, spread out.
			st.Next = now.Add(jitter(min(tg.Every, time.Minute), 0.5, 1))
			s.states[tg.Name] = st
		}
		if !st.Next.After(now) && (due == nil || st.Next.Before(s.states[due.Name].Next)) {
			due = tg
		}
	}
	for name := range s.states {
		if !known[name] {
			delete(s.states, name)
		}
	}
	s.mu.Unlock()
	if due == nil {
		return
	}
	need, detail, err := s.probe(ctx, due)
	if ctx.Err() != nil {
		return
	}
	end := s.now()
	s.mu.Lock()
	st := s.states[due.Name]
	if errors.Is(err, ErrBusy) {
		st.Next = end.Add(min(due.Every, 30*time.Second))
		s.states[due.Name] = st
		s.mu.Unlock()
		s.Log.Info("policy probe waits: another probe is running", "policy", due.Name)
		return
	}
	if err != nil {
		need, detail = config.NeedUnknown, err.Error()
	}
	if st.Streak > 0 && st.Need == need {
		st.Streak++
	} else {
		st.Need, st.Since, st.Streak = need, end, 1
	}
	st.Last, st.Detail = end, detail
	factor := time.Duration(1)
	for n := st.Streak; n > backoffAfter && factor < maxBackoff; n-- {
		factor *= 2
	}
	st.Next = end.Add(jitter(factor*due.Every, 0.9, 1.1))
	s.states[due.Name] = st
	save := s.copyStates()
	s.mu.Unlock()
	level := slog.LevelInfo
	if need == config.NeedNo {
		level = slog.LevelWarn
	}
	s.Log.Log(ctx, level, "policy probed", "policy", due.Name, "need", need.String(), "in_a_row", st.Streak, "since", st.Since, "next", st.Next, "detail", detail)
	if s.StateFile != "" {
		if err := config.WriteProbeStates(s.StateFile, save); err != nil {
			s.Log.Warn("probe states not saved", "file", s.StateFile, "err", err)
		}
	}
}

// probe runs one round for t: its own Prober, every address in turn.
func (s *Scheduler) probe(ctx context.Context, t *Target) (config.Need, string, error) {
	if t.Why != "" {
		return config.NeedUnknown, t.Why, nil
	}
	opt := s.Options
	opt.Workload = t.Workload
	p, err := Start(ctx, opt)
	if err != nil {
		return config.NeedUnknown, "", err
	}
	var rs []Retest
	for _, a := range t.Addrs {
		rs = append(rs, p.Retest(ctx, a, t.Policy))
	}
	if err := p.Close(); err != nil {
		s.Log.Warn("policy probe: removing its rules", "err", err)
	}
	need, detail := PolicyNeed(rs)
	return need, detail, nil
}

func (s *Scheduler) copyStates() map[string]config.ProbeState {
	m := make(map[string]config.ProbeState, len(s.states))
	for k, v := range s.states {
		m[k] = v
	}
	return m
}

// Annotate sets the probe state of every policy in ps that has one.
func (s *Scheduler) Annotate(ps []config.PolicyStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ps {
		if st, ok := s.states[ps[i].Name]; ok && ps[i].ProbeEvery != 0 {
			ps[i].Probe = &st
		}
	}
}

// jitter is d times a random factor in [lo, hi).
func jitter(d time.Duration, lo, hi float64) time.Duration {
	return time.Duration(float64(d) * (lo + rand.Float64()*(hi-lo)))
}
