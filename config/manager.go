package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

const (
	defaultQueryTimeout = 2 * time.Second
	defaultQueryTries   = 2
	defaultResolvConf   = "/etc/resolv.conf"
	defaultBackoffBase  = time.Second
	expiryWarnAhead     = 7 * 24 * time.Hour
)

// clock is the time source of the manager's schedule; tests use a fake one.
type clock interface {
	Now() time.Time
	At(t time.Time) <-chan time.Time // fires at t (at once if t has passed)
}

type realClock struct{}

func (realClock) Now() time.Time                  { return time.Now() }
func (realClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// polState is one policy and what DNS last said about its names.
type polState struct {
	pf       *PolicyFile
	addrs    []netip.Prefix // last known resolved prefixes
	lastErr  string
	notes    []string
	done     bool // the first resolution finished (or there is nothing to resolve)
	failures int
	next     time.Time // next resolution; zero: now
	inflight bool
	answered time.Time // the last resolution that answered without error
	loaded   time.Time // when a policy of this name was first loaded
}

func (s *polState) needsDNS() bool { return s.pf.Domain != "" }

// Manager keeps the compiled policy table current: it resolves every policy's
// names (A, AAAA, MX, SPF) with TTL-aware refresh, recompiles on DNS changes
// and at each policy's expiry, and swaps the table atomically.
type Manager struct {
	log          *slog.Logger
	clock        clock
	resolvConf   string
	queryTimeout time.Duration // per query and server
	queryTries   int
	backoffBase  time.Duration

	table     atomic.Pointer[Table]
	ready     chan struct{}
	readyOnce sync.Once
	wake      chan struct{}
	changed   chan struct{} // a new table was swapped in; capacity 1, coalescing

	mu            sync.Mutex
	cfg           *Config
	res           *resolver
	resErr        error // why there is no resolver
	states        []*polState
	expired       map[string]bool           // policy name -> expired at the last compile
	conflicts     map[string]bool           // conflicts logged at the last compile
	lost          map[string][]netip.Prefix // policy name -> prefixes another policy keeps
	known         *lastKnown                // every lookup's last answer, kept across reloads
	conflictNotes map[string][]string
	started       bool
}

// NewManager prepares a manager for cfg. Nothing is resolved until Start.
func NewManager(cfg *Config, log *slog.Logger) *Manager { return newManager(cfg, log, realClock{}) }

// newManager is NewManager on the clock clk; tests pass a fake one.
func newManager(cfg *Config, log *slog.Logger, clk clock) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		log:          log,
		clock:        clk,
		resolvConf:   defaultResolvConf,
		queryTimeout: defaultQueryTimeout,
		queryTries:   defaultQueryTries,
		backoffBase:  defaultBackoffBase,
		ready:        make(chan struct{}),
		wake:         make(chan struct{}, 1),
		changed:      make(chan struct{}, 1),
		expired:      map[string]bool{},
		known:        newLastKnown(DefaultMaxStale, clk.Now),
		conflicts:    map[string]bool{},
	}
	if cfg == nil {
		cfg = &Config{}
	}
	m.cfg = cfg
	for _, pf := range cfg.Policies {
		m.states = append(m.states, &polState{pf: pf, loaded: m.clock.Now()})
	}
	m.mu.Lock()
	m.recompileLocked(m.clock.Now(), false)
	m.mu.Unlock()
	return m
}

func (m *Manager) newResolverLocked() {
	servers := m.cfg.DNS.Servers
	m.resErr = nil
	if len(servers) == 0 {
		var err error
		servers, err = systemServers(m.resolvConf)
		if err != nil {
			m.resErr = fmt.Errorf("no DNS servers: %w", err)
		}
	}
	m.res = newResolver(servers, m.queryTimeout, m.queryTries)
	m.known.setMaxStale(m.cfg.DNS.MaxStale)
	m.res.known = m.known
}

// Start begins resolution and refresh; it returns at once. The manager stops
// when ctx is done.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return
	}
	m.started = true
	m.newResolverLocked()
	if m.resErr != nil {
		m.log.Error("DNS unavailable; policies apply to their cidrs only", "err", m.resErr)
	}
	now := m.clock.Now()
	for _, s := range m.states {
		p := s.pf.Policy
		switch {
		case p.Expires.IsZero():
			m.log.Warn("policy never expires", "policy", p.Name, "file", s.pf.File, "why", NoExpiry)
		case !now.Before(p.Expires):
			m.log.Warn("policy expired", "policy", p.Name, "file", s.pf.File, "expired", p.Expires.UTC().Format(time.RFC3339))
		case p.Expires.Sub(now) <= expiryWarnAhead:
			m.log.Warn("policy expires soon", "policy", p.Name, "file", s.pf.File,
				"expires", p.Expires.UTC().Format(time.RFC3339), "in", FormatLeft(p.Expires.Sub(now)))
		}
	}
	m.markUnresolvableLocked(now)
	m.checkReadyLocked()
	m.mu.Unlock()
	go m.run(ctx)
}

// markUnresolvableLocked finishes at once the first round of policies that
// need no DNS (cidrs only, or already expired).

// Ready is closed once the first resolution of every policy's names has
// finished (answered or failed): policies are then in force.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Table returns the table in force now. Never nil; safe from any goroutine;
// does not allocate.
func (m *Manager) Table() normalize.Table {
	if t := m.table.Load(); t != nil {
		return t
	}
	return emptyTable
}

// Prefixes lists every prefix of the table in force now (see
// Table.Prefixes): the addresses whose handshakes must reach the queues.
func (m *Manager) Prefixes() []netip.Prefix { return m.table.Load().Prefixes() }

// Changed receives after each swap of the table (start, reload, a DNS
// answer that changed addresses, an expiry). Swaps in quick succession
// coalesce into one receive: read Prefixes after receiving.
func (m *Manager) Changed() <-chan struct{} { return m.changed }

func (m *Manager) markUnresolvableLocked(now time.Time) {
	for _, s := range m.states {
		if !s.needsDNS() || m.isExpired(s.pf, now) {
			s.done = true
		}
	}
}

func (m *Manager) isExpired(pf *PolicyFile, now time.Time) bool {
	e := pf.Policy.Expires
	return !e.IsZero() && !now.Before(e)
}

func (m *Manager) checkReadyLocked() {
	for _, s := range m.states {
		if !s.done {
			return
		}
	}
	m.readyOnce.Do(func() { close(m.ready) })
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// run is the manager's scheduler: it starts due resolutions and recompiles
// the table when a policy expires.
func (m *Manager) run(ctx context.Context) {
	m.log.Debug("policy manager started")
	defer m.log.Debug("policy manager stopped")
	for {
		m.mu.Lock()
		now := m.clock.Now()
		if m.expiryChangedLocked(now) {
			m.recompileLocked(now, true)
		}
		var next time.Time
		for _, s := range m.states {
			if !s.needsDNS() || s.inflight || m.isExpired(s.pf, now) {
				if s.needsDNS() && m.isExpired(s.pf, now) && !s.done {
					s.done = true
					m.checkReadyLocked()
				}
				continue
			}
			if !now.Before(s.next) {
				s.inflight = true
				go m.resolve(ctx, s, s.pf, m.res, m.resErr)
				continue
			}
			if next.IsZero() || s.next.Before(next) {
				next = s.next
			}
		}
		for _, s := range m.states {
			if e := s.pf.Policy.Expires; !e.IsZero() && now.Before(e) && (next.IsZero() || e.Before(next)) {
				next = e
			}
		}
		m.mu.Unlock()

		var timer <-chan time.Time
		if !next.IsZero() {
			timer = m.clock.At(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.wake:
		case <-timer:
		}
	}
}

func (m *Manager) expiryChangedLocked(now time.Time) bool {
	for _, s := range m.states {
		if m.isExpired(s.pf, now) != m.expired[s.pf.Policy.Name] {
			return true
		}
	}
	return false
}

func (m *Manager) resolve(ctx context.Context, s *polState, pf *PolicyFile, r *resolver, rerr error) {
	var res resolution
	if rerr != nil {
		res = resolution{errs: []string{rerr.Error()}}
	} else {
		res = r.resolvePolicy(ctx, pf.Domain, pf.MX, pf.SPF)
	}
	m.mu.Lock()
	m.applyLocked(ctx, s, res)
	m.mu.Unlock()
	m.poke()
}

func (m *Manager) applyLocked(ctx context.Context, s *polState, res resolution) {
	s.inflight = false
	if !slices.Contains(m.states, s) {
		return // replaced by a reload meanwhile
	}
	now := m.clock.Now()
	p := s.pf.Policy
	errStr := strings.Join(res.errs, "; ")
	old := s.addrs
	if errStr == "" {
		s.addrs = res.prefixes
		s.failures = 0
		s.next = now.Add(m.refreshAfter(res.ttl))
		s.answered = now
	} else {
		// The failing lookups' last answers are in res already (lastKnown):
		// the addresses are what every lookup last said, no more.
		s.addrs = res.prefixes
		s.failures++
		s.next = now.Add(m.backoff(s.failures))
	}
	quiet := ctx.Err() != nil // shutting down, or check's deadline
	if !quiet {
		switch {
		case errStr != "" && (errStr != s.lastErr || !s.done):
			// Logged when what fails changes: a lookup starts or stops
			// failing, or its last answer grows older than max_stale.
			m.log.Warn("DNS resolution failed; keeping the failing lookups' last answers",
				"policy", p.Name, "domain", s.pf.Domain, "err", errStr, "addresses", len(s.addrs))
		case errStr == "" && s.lastErr != "":
			m.log.Info("DNS resolution recovered", "policy", p.Name, "domain", s.pf.Domain, "addresses", len(s.addrs))
		}
		for _, n := range res.notes {
			if !slices.Contains(s.notes, n) {
				m.log.Warn("DNS note", "policy", p.Name, "note", n)
			}
		}
		if !slices.Equal(old, s.addrs) {
			m.log.Info("policy addresses changed", "policy", p.Name, "domain", s.pf.Domain,
				"addresses", len(s.addrs), "was", len(old))
		}
	}
	s.lastErr = errStr
	s.notes = res.notes
	s.done = true
	if !slices.Equal(old, s.addrs) {
		m.recompileLocked(now, true)
	}
	m.checkReadyLocked()
}

func (m *Manager) refreshAfter(ttl uint32) time.Duration {
	d := time.Duration(ttl) * time.Second
	lo, hi := m.cfg.DNS.MinRefresh, m.cfg.DNS.MaxRefresh
	if lo <= 0 {
		lo = 30 * time.Second
	}
	if hi < lo {
		hi = lo
	}
	return min(max(d, lo), hi)
}

// backoff is the retry delay after n consecutive failures: doubling from
// backoffBase, at most min_refresh.
func (m *Manager) backoff(n int) time.Duration {
	limit := m.cfg.DNS.MinRefresh
	if limit <= 0 {
		limit = 30 * time.Second
	}
	d := m.backoffBase
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Reload applies a newly loaded config's policies and DNS settings. A change
// to [queue] or [rules] is refused with an error saying a restart is needed;
// on any error the old table stays in force.
func (m *Manager) Reload(cfg *Config) error {
	if cfg == nil {
		return errors.New("reload: no config")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cfg.Queue != m.cfg.Queue {
		return errors.New("reload: [queue] changed; that needs a restart (nothing was reloaded)")
	}
	if cfg.Rules != m.cfg.Rules {
		return errors.New("reload: [rules] changed; that needs a restart (nothing was reloaded)")
	}
	dnsChanged := !slices.Equal(cfg.DNS.Servers, m.cfg.DNS.Servers)
	old := map[string]*polState{}
	for _, s := range m.states {
		old[s.pf.Policy.Name] = s
	}
	var states []*polState
	for _, pf := range cfg.Policies {
		s, ok := old[pf.Policy.Name]
		if ok && s.pf.Domain == pf.Domain && s.pf.MX == pf.MX && s.pf.SPF == pf.SPF {
			s.pf = pf
			if dnsChanged {
				s.next = time.Time{}
			}
		} else {
			s = &polState{pf: pf, loaded: m.clock.Now()}
			if ok {
				s.loaded = old[pf.Policy.Name].loaded
			}
		}
		states = append(states, s)
	}
	m.cfg = cfg
	m.states = states
	now := m.clock.Now()
	if m.started {
		if dnsChanged {
			m.newResolverLocked()
		}
		m.markUnresolvableLocked(now)
		m.checkReadyLocked()
	}
	m.recompileLocked(now, true)
	m.log.Info("policies reloaded", "policies", len(states), "prefixes", m.table.Load().Len())
	m.poke()
	return nil
}
