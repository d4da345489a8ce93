package config

import (
	"net/netip"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// DefaultPath is where `tcpnorm run` and `check` look without -c.
const DefaultPath = "/etc/tcpnorm/tcpnorm.toml"

// Config is tcpnorm.toml after validation, with its policies loaded.
type Config struct {
	Path      string // the file it was read from
	PolicyDir string // absolute
	// User is who the daemon runs as once its queues are bound ("": the
	// user it was started as).
	User     string
	Queue    Queue
	Rules    Rules
	DNS      DNS
	Metrics  Metrics
	Log      Log
	Flows    Flows
	Evidence Evidence
	Policies []*PolicyFile // sorted by file name
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
	MaxStale   time.Duration // how long a failing lookup's last answer stands in
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
	// Probe is how often the running daemon re-tests the path as sent
	// (0: never).
	Probe time.Duration
}
