//go:build linux

package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// metricsAddr is where the daemon in the lab serves /metrics and /status:
// the gateway's address on the client link.
const metricsAddr = "198.18.1.1:9464"

// Policy is one policy file for the lab daemon.
type Policy struct {
	Name    string // file base name, without .toml
	Mode    normalize.Mode
	Options normalize.Policy // its option fields: the [options] table
	Reason  string
	// Evidence: keep the handshakes in the daemon's evidence directory
	// (Daemon.EvidenceFile).
	Evidence bool
	// Ports are the server ports it covers; none: SMTPPort.
	Ports []uint16
	// Probe is the policy key probe: how often the daemon re-tests the path.
	Probe time.Duration
}

// FixPolicy is the policy that fixes fault f for the lab's domain.
func FixPolicy(f Fault, v6 bool, mode normalize.Mode) Policy {
	return Policy{
		Name:    Domain,
		Mode:    mode,
		Options: f.FixOptions(v6),
		Reason:  "lab: " + f.String() + " on the path to " + MXHost,
	}
}

// Text is the policy file: outbound mail to the lab's domain.
func (p Policy) Text() string {
	pol := p.Options
	pol.Ports = p.Ports
	if len(pol.Ports) == 0 {
		pol.Ports = []uint16{SMTPPort}
	}
	pol.Direction = normalize.Outbound
	pol.Mode = p.Mode
	pol.Reason, pol.Ticket = p.Reason, "LAB-1"
	pol.Evidence = p.Evidence
	return config.FormatPolicy(&config.PolicyFile{Domain: Domain, MX: true, Policy: &pol, Probe: p.Probe})
}

// hostMetricsAddr is where a daemon in host mode on the client serves
// /metrics and /status.
const hostMetricsAddr = "198.18.1.2:9464"

// ConfigText is the tcpnorm.toml the lab daemon on the gateway runs with.
func ConfigText() string { return configText("gateway", metricsAddr, DaemonOptions{}) }

func configText(mode, metrics string, opt DaemonOptions) string {
	queue := ""
	if opt.MaxLen > 0 {
		queue = fmt.Sprintf("max_len = %d\n", opt.MaxLen)
	}
	refresh := 30 * time.Second
	if opt.MinRefresh > 0 {
		refresh = opt.MinRefresh
	}
	user := ""
	if opt.User != "" {
		user = "user = \"" + opt.User + "\"\n"
	}
	return `policy_dir = "policies.d"
` + user + `

[queue]
first = 0
count = 2
` + queue + `
[rules]
install = true
mode = "` + mode + `"

[dns]
servers = ["` + DNSServer() + `"]
min_refresh = "` + refresh.String() + `"

[metrics]
listen = "` + metrics + `"

[log]
level = "debug"
format = "text"

[evidence]
dir = "` + evidenceDir + `"
`
}

// evidenceDir is the lab daemon's [evidence] dir, relative to its Dir.
const evidenceDir = "evidence"

// EvidenceFile is where the daemon keeps the evidence of policy name.
func (dm *Daemon) EvidenceFile(name string) string {
	return filepath.Join(dm.Dir, evidenceDir, name+".pcapng")
}

// Daemon is a tcpnorm daemon running on the lab's gateway (or, in host
// mode, on the client).
type Daemon struct {
	Dir     string // holds tcpnorm.toml and policies.d
	NS      string // the namespace it runs in
	Metrics string // its metrics listener
	*netns.Proc
}

// StartDaemon writes the config and policies into a new directory under
// dir and starts `bin run -c` in the gateway namespace. It returns once the
// daemon logged msg=ready, or with an error (the daemon then stopped and the
// directory removed). The caller removes Dir after Stop.
func (l *Lab) StartDaemon(ctx context.Context, bin, dir string, policies []Policy, timeout time.Duration) (dm *Daemon, err error) {
	return l.startDaemon(ctx, l.Gateway, "gateway", metricsAddr, DaemonOptions{}, bin, dir, policies, timeout)
}

// DaemonOptions are a lab daemon's settings beyond its policies.
type DaemonOptions struct {
	// Prefix runs the daemon: a command that runs the rest of its command
	// line, e.g. setpriv dropping privileges. The daemon's directory is
	// then readable by everyone (dir and its parents must be too).
	Prefix []string
	// MaxLen is [queue] max_len; 0 leaves the default.
	MaxLen int
	// MinRefresh is [dns] min_refresh; 0: 30s.
	MinRefresh time.Duration
	// User is the config's user: the daemon, started as root, switches to
	// it once its queues are bound. Its directory is then readable by
	// everyone, as with Prefix.
	User string
}

// StartDaemonWith is StartDaemon with opt.
func (l *Lab) StartDaemonWith(ctx context.Context, opt DaemonOptions, bin, dir string, policies []Policy, timeout time.Duration) (dm *Daemon, err error) {
	return l.startDaemon(ctx, l.Gateway, "gateway", metricsAddr, opt, bin, dir, policies, timeout)
}

// StartHostDaemon is StartDaemon for a daemon in host mode on the client
// (the MTA itself), the gateway just forwarding. It serves metrics on
// hostMetricsAddr.
func (l *Lab) StartHostDaemon(ctx context.Context, bin, dir string, policies []Policy, timeout time.Duration) (dm *Daemon, err error) {
	return l.startDaemon(ctx, l.Client, "host", hostMetricsAddr, DaemonOptions{}, bin, dir, policies, timeout)
}

func (l *Lab) startDaemon(ctx context.Context, ns, mode, metrics string, opt DaemonOptions, bin, dir string, policies []Policy, timeout time.Duration) (dm *Daemon, err error) {
	d, err := os.MkdirTemp(dir, "tcpnorm-lab-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(d)
		}
	}()
	if opt.Prefix != nil || opt.User != "" {
		if err := os.Chmod(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(filepath.Join(d, "policies.d"), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(d, "tcpnorm.toml")
	if err := os.WriteFile(cfg, []byte(configText(mode, metrics, opt)), 0o644); err != nil {
		return nil, err
	}
	for _, p := range policies {
		if err := os.WriteFile(filepath.Join(d, "policies.d", p.Name+".toml"), []byte(p.Text()), 0o644); err != nil {
			return nil, err
		}
	}
	// The config says format = "text": ready is logged as msg=ready.
	args := append(append(append([]string(nil), opt.Prefix...), bin), "run", "-c", cfg)
	p, err := netns.StartProc(ctx, ns, "msg=ready", timeout, args...)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return &Daemon{Dir: d, NS: ns, Metrics: metrics, Proc: p}, nil
}

// Get fetches path ("/metrics", "/status") from the daemon's metrics
// listener, connecting from the gateway namespace.
func (dm *Daemon) Get(ctx context.Context, path string) (string, error) {
	return netns.HTTPGet(ctx, dm.NS, "http://"+dm.Metrics+path)
}

// TcpnormRules returns the lines of iptables-save and ip6tables-save in the
// gateway that mention tcpnorm, and tcpnorm's address sets: empty once the
// daemon removed its rules.
func (l *Lab) TcpnormRules(ctx context.Context) ([]string, error) {
	return l.TcpnormRulesIn(ctx, l.Gateway)
}

// SetMembers lists the members of address set name in namespace ns, as
// ipset prints them (a /32 or /128 without its length).
func SetMembers(ctx context.Context, ns, name string) ([]string, error) {
	out, err := netns.Run(ctx, ns, "ipset", "list", name)
	if err != nil {
		return nil, err
	}
	_, members, _ := strings.Cut(out, "Members:\n")
	return strings.Fields(members), nil
}

// TcpnormRulesIn is TcpnormRules for namespace ns; tcpnorm's address sets
// count too.
func (l *Lab) TcpnormRulesIn(ctx context.Context, ns string) ([]string, error) {
	var found []string
	sets, err := netns.Run(ctx, ns, "ipset", "list", "-n")
	if err != nil {
		return nil, err
	}
	for _, s := range strings.Fields(sets) {
		if strings.HasPrefix(s, "tcpnorm") {
			found = append(found, "ipset: "+s)
		}
	}
	for _, cmd := range []string{"iptables-save", "ip6tables-save"} {
		out, err := netns.Run(ctx, ns, cmd)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(strings.ToLower(line), "tcpnorm") || strings.Contains(line, "NFQUEUE") {
				found = append(found, cmd+": "+line)
			}
		}
	}
	return found, nil
}
