//go:build linux

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// EximPackages are the Debian packages an Exim instance runs from,
// unpacked (UnpackDebs), not installed: Debian's MTAs conflict with each
// other, and Postfix is the one installed. The daemon's libraries
// (libidn12 among them) must be installed.
var EximPackages = []string{"exim4-daemon-light", "exim4-base"}

// EximUser is the user Debian's Exim is compiled to run as: it must exist
// (AddSystemUser) for the binary to start.
const EximUser = "Debian-exim"

// Exim is a sending instance of Debian's Exim 4, run from an unpacked
// package under Root, in a lab namespace with its configuration, spool and
// log in Dir. No daemon runs: a message is delivered by the process Send
// starts, in the background, as Exim does for a local submission, and
// Flush runs the queue.
type Exim struct {
	NS, Dir, Root string
}

// EximOptions describe a sending instance.
type EximOptions struct {
	Hostname string
	// Relay sends the mail for each domain to port 25 of its address
	// (manualroute to a literal address: no lookup).
	Relay map[string]netip.Addr
	// BodyTimeout, when set, is the smtp transport's data_timeout: how
	// long a block of the body may wait to be written, and the reply to
	// its end (5 min by default).
	BodyTimeout time.Duration
}

// NewExim writes the configuration of an instance in ns under dir,
// running the binary unpacked under root, and checks that it runs (exim
// -bV). The caller removes dir; Stop ends its processes.
func NewExim(ctx context.Context, ns, dir, root string, opt EximOptions) (*Exim, error) {
	e := &Exim{NS: ns, Dir: dir, Root: root}
	if _, err := os.Stat(e.Bin()); err != nil {
		return nil, fmt.Errorf("exim: %w (unpack %v there)", err, EximPackages)
	}
	for _, d := range []string{"spool", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			return nil, err
		}
		if out, err := exec.CommandContext(ctx, "chown", EximUser+":"+EximUser, filepath.Join(dir, d)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown: %v: %s", err, out)
		}
	}
	if err := searchable(dir, EximUser); err != nil {
		return nil, err
	}
	var domains, routes []string
	for d, a := range opt.Relay {
		domains = append(domains, d)
		routes = append(routes, d+" "+a.String())
	}
	slices.Sort(domains)
	slices.Sort(routes)
	timeout := ""
	if opt.BodyTimeout > 0 {
		timeout = fmt.Sprintf("  data_timeout = %ds\n", int((opt.BodyTimeout+time.Second-1)/time.Second))
	}
	// exim_path: Exim re-executes itself for each delivery, by default as
	// the compiled-in /usr/sbin/exim4, which is not there. An empty
	// keep_environment clears the environment without a warning at each
	// start. The retry rule lets a deferred message wait for a queue run.
	conf := fmt.Sprintf(`exim_path = %[1]s
keep_environment =
primary_hostname = %[2]s
qualify_domain = %[2]s
spool_directory = %[3]s/spool
log_file_path = %[3]s/log/%%slog
pid_file_path = %[3]s/exim.pid
never_users = root
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
message_size_limit = 100M

begin routers
relay:
  driver = manualroute
  domains = %[4]s
  transport = remote_smtp
  route_list = %[5]s

begin transports
remote_smtp:
  driver = smtp
  hosts_avoid_tls = *
%[6]s
begin retry
* * F,1h,1m
`, e.Bin(), opt.Hostname, dir, strings.Join(domains, " : "), strings.Join(routes, " ; "), timeout)
	if err := os.WriteFile(e.Conf(), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if out, err := netns.Run(ctx, ns, e.Bin(), "-C", e.Conf(), "-bV"); err != nil {
		return nil, fmt.Errorf("exim -bV: %v", err)
	} else if !strings.Contains(out, "Exim version") {
		return nil, fmt.Errorf("exim -bV: %s", out)
	}
	return e, nil
}

// Bin is the unpacked exim4 binary.
func (e *Exim) Bin() string { return filepath.Join(e.Root, "usr", "sbin", "exim4") }

// Conf is the instance's configuration file.
func (e *Exim) Conf() string { return filepath.Join(e.Dir, "exim.conf") }

// Send submits msg (header, blank line, body; lines end in LF) on Exim's
// command line, as a program on the MTA's host does; Exim delivers it in
// a background process.
func (e *Exim) Send(ctx context.Context, from, to string, msg []byte) error {
	_, err := netns.RunInput(ctx, e.NS, string(msg), e.Bin(), "-C", e.Conf(), "-i", "-f", from, "--", to)
	return err
}

// Flush delivers every queued message now, whatever its retry time (exim
// -qff), as the operator does once the path is fixed.
func (e *Exim) Flush(ctx context.Context) error {
	_, err := netns.Run(ctx, e.NS, e.Bin(), "-C", e.Conf(), "-qff")
	return err
}

// Log is the instance's main log so far.
func (e *Exim) Log() string {
	b, _ := os.ReadFile(e.LogFile())
	return string(b)
}

// LogFile is the instance's main log, as Exim writes it.
func (e *Exim) LogFile() string { return filepath.Join(e.Dir, "log", "mainlog") }

// Stop ends the instance's delivery and queue-runner processes.
func (e *Exim) Stop() error { return stopProgram(e.Bin()) }
