package config

// This file fixes the API the daemon (cmd/tcpnorm, nfq) uses. The config
// package's implementation may change everything behind it, not these names.

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// DefaultPath is where `tcpnorm run` and `check` look without -c.
const DefaultPath = "/etc/tcpnorm/tcpnorm.toml"

// Config is tcpnorm.toml after validation, with its policies loaded.
type Config struct {
	Path      string // the file it was read from
	PolicyDir string // absolute
	Queue     Queue
	Rules     Rules
	DNS       DNS
	Metrics   Metrics
	Log       Log
	Flows     Flows
	Evidence  Evidence
	Policies  []*PolicyFile // sorted by file name
}

type Queue struct {
	First    uint16
	Count    int // default runtime.NumCPU()
	MaxLen   uint32
	FailOpen bool
}

type Rules struct {
	Install bool
	Mode    string // "gateway" | "host"
	Mark    uint32
}

type DNS struct {
	Servers    []string // host:port; empty: from /etc/resolv.conf
	MinRefresh time.Duration
	MaxRefresh time.Duration
}

type Metrics struct{ Listen string }

type Log struct {
	Level  string // debug | info | warn | error
	Format string // text | json
}

type Flows struct {
	Max         int
	IdleTimeout time.Duration
	TSRateMax   uint32 // the fastest remote timestamp clock repair assumes, ticks per second
}

// Evidence is where policies with evidence = true keep their handshakes:
// one pcapng file per policy, Dir/POLICY.pcapng, rotated to POLICY.pcapng.1
// (then .2 ...) when it reaches MaxBytes, at most Keep rotated files kept.
type Evidence struct {
	Dir      string // absolute
	MaxBytes int64
	Keep     int
}

// PolicyFile is one policy_dir/*.toml.
type PolicyFile struct {
	File   string // path
	Domain string
	MX     bool
	SPF    bool
	CIDRs  []netip.Prefix
	Policy *normalize.Policy // compiled; Name = file base name without .toml
}

// Load reads and validates the config at path and every policy file. On error
// it returns an *Errors holding every problem found, each as
// "FILE:LINE:COL: key: message".
func Load(path string) (*Config, error) { return load(path) }

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
	conflictNotes map[string][]string
	started       bool
}

// NewManager prepares a manager for cfg. Nothing is resolved until Start.
func NewManager(cfg *Config, log *slog.Logger) *Manager { return newManager(cfg, log, realClock{}) }

// Start begins resolution and refresh; it returns at once. The manager stops
// when ctx is done.
func (m *Manager) Start(ctx context.Context) { m.start(ctx) }

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

// Reload applies a newly loaded config's policies and DNS settings. A change
// to [queue] or [rules] is refused with an error saying a restart is needed;
// on any error the old table stays in force.
func (m *Manager) Reload(cfg *Config) error { return m.reload(cfg) }

// PolicyStatus is one policy as /status and check show it.
type PolicyStatus struct {
	Name      string
	File      string
	Domain    string
	Mode      string
	Direction string
	Ports     []uint16
	Actions   string // e.g. "window_scale=strip timestamps=strip mss_max=1360"
	Addresses []netip.Prefix
	Expires   time.Time // zero: never
	Expired   bool
	DNSError  string // last resolution error, "" if fine

	MX     bool
	SPF    bool
	Reason string
	Ticket string
	Notes  []string // DNS answers worth knowing: NXDOMAIN, ignored SPF terms, conflicts

	Evidence  bool
	Loaded    time.Time // when the running process first loaded a policy of this name
	Refreshed time.Time // the last DNS answer for its names; zero: none yet (or no names)
	Next      time.Time // the next resolution of its names, if it has any
}

// Status lists every policy with its current addresses.
func (m *Manager) Status() []PolicyStatus { return m.status() }

// WriteCheck prints the resolved policy table the way `tcpnorm check` does.
func WriteCheck(w io.Writer, st []PolicyStatus, now time.Time) { writeCheck(w, st, now) }
