//go:build linux

package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// SendmailPackages are the Debian packages a Sendmail instance runs from,
// unpacked (UnpackDebs), not installed. Its libraries (libwrap0,
// liblockfile1 among them) and m4 must be installed.
var SendmailPackages = []string{"sendmail-bin", "sendmail-base", "sendmail-cf"}

// Sendmail is a sending instance of Debian's Sendmail 8, run from an
// unpacked package under Root, in a lab namespace with its configuration,
// queue and log in Dir. No daemon runs: Send's process delivers in the
// background (DeliveryMode background) and Flush runs the queue.
//
// Sendmail logs only through syslog(3), and it must qualify its own host
// name. Each of its processes therefore runs in a mount and UTS namespace
// of its own (unshare) with the instance's host name, the instance's
// hosts and resolv.conf bound over /etc's, and a tmpfs on /dev whose
// /dev/log is the socket of a listener in this process that writes the
// log file the way a traditional syslogd does. Nothing of the host's is
// read or changed.
type Sendmail struct {
	NS, Dir, Root string
	Hostname      string

	sink *syslogSink
}

// SendmailOptions describe a sending instance.
type SendmailOptions struct {
	// Hostname, fully qualified: the instance's host name ($j).
	Hostname string
	// Addr is the instance's address in its namespace, for its hosts file.
	Addr netip.Addr
	// Relay sends the mail for each domain to port 25 of its address
	// (mailertable esmtp:[address], no MX lookup).
	Relay map[string]netip.Addr
	// BodyTimeout, when set, is Timeout.datablock and Timeout.datafinal:
	// how long a read or write of the body may wait and how long the reply
	// to its end may take (1 h each by default).
	BodyTimeout time.Duration
}

// NewSendmail writes the configuration of an instance in ns under dir,
// running the binaries unpacked under root, and starts its log listener.
// The caller removes dir; Stop ends its processes and the listener.
func NewSendmail(ctx context.Context, ns, dir, root string, opt SendmailOptions) (*Sendmail, error) {
	s := &Sendmail{NS: ns, Dir: dir, Root: root, Hostname: opt.Hostname}
	if _, err := os.Stat(s.Bin()); err != nil {
		return nil, fmt.Errorf("sendmail: %w (unpack %v there)", err, SendmailPackages)
	}
	if _, err := exec.LookPath("m4"); err != nil {
		return nil, fmt.Errorf("sendmail: m4 makes its sendmail.cf: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "queue"), 0o700); err != nil {
		return nil, err
	}
	short, _, _ := strings.Cut(opt.Hostname, ".")
	files := map[string]string{
		"service.switch": "hosts files\naliases files\n",
		"aliases":        "postmaster: root\nMAILER-DAEMON: postmaster\n",
		"hosts":          fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s %s\n", opt.Addr, opt.Hostname, short),
		// Nothing answers there: a lookup fails at once.
		"resolv.conf": "nameserver 127.0.0.1\n",
	}
	// Literal addresses: Sendmail looks a bracketed name up as AAAA first,
	// and a resolver that fails makes that a deferral.
	var routes []string
	for d, a := range opt.Relay {
		routes = append(routes, fmt.Sprintf("%s\tesmtp:[%s]", d, a))
	}
	slices.Sort(routes)
	files["mailertable"] = strings.Join(routes, "\n") + "\n"
	mc := []string{
		"divert(-1)",
		"divert(0)dnl",
		m4("include", filepath.Join(root, "usr/share/sendmail/cf/m4/cf.m4")),
		m4("VERSIONID", "tcpnorm lab"),
		m4("OSTYPE", "linux"),
	}
	for _, kv := range [][2]string{
		{"confDOMAIN_NAME", opt.Hostname},
		{"QUEUE_DIR", filepath.Join(dir, "queue")},
		{"STATUS_FILE", filepath.Join(dir, "statistics")},
		{"confPID_FILE", filepath.Join(dir, "sendmail.pid")},
		{"ALIAS_FILE", filepath.Join(dir, "aliases")},
		{"confSERVICE_SWITCH_FILE", filepath.Join(dir, "service.switch")},
		{"confHOSTS_FILE", "/etc/hosts"},
		{"confHELP_FILE", ""},
		{"confDONT_PROBE_INTERFACES", "True"},
		// The queue is under /tmp, world-writable with its sticky bit.
		{"confDONT_BLAME_SENDMAIL", "TrustStickyBit"},
		{"confDELIVERY_MODE", "background"},
		{"confMAX_MESSAGE_SIZE", "104857600"},
	} {
		mc = append(mc, m4("define", kv[0], kv[1]))
	}
	if opt.BodyTimeout > 0 {
		n := fmt.Sprintf("%ds", int((opt.BodyTimeout+time.Second-1)/time.Second))
		mc = append(mc, m4("define", "confTO_DATABLOCK", n), m4("define", "confTO_DATAFINAL", n))
	}
	mc = append(mc,
		m4("FEATURE", "nocanonify"),
		m4("FEATURE", "accept_unresolvable_domains"),
		m4("FEATURE", "mailertable", "hash -o "+filepath.Join(dir, "mailertable")),
		m4("MAILER", "local"),
		m4("MAILER", "smtp"),
	)
	files["sendmail.mc"] = strings.Join(mc, "\n") + "\n"
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	cf, err := exec.CommandContext(ctx, "m4", filepath.Join(dir, "sendmail.mc")).Output()
	if err != nil {
		return nil, fmt.Errorf("m4 sendmail.mc: %w", err)
	}
	if err := os.WriteFile(s.Conf(), cf, 0o644); err != nil {
		return nil, err
	}
	makemap := exec.CommandContext(ctx, filepath.Join(root, "usr", "libexec", "sendmail", "makemap"), "-C", s.Conf(), "hash", filepath.Join(dir, "mailertable"))
	makemap.Stdin = strings.NewReader(files["mailertable"])
	if out, err := makemap.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("makemap: %v: %s", err, out)
	}
	s.sink, err = listenSyslog(filepath.Join(dir, "log.sock"), s.LogFile(), short)
	if err != nil {
		return nil, err
	}
	// The alias database, as newaliases builds it.
	if _, err := s.run(ctx, "", "-bi"); err != nil {
		s.Stop()
		return nil, fmt.Errorf("sendmail -bi: %w\n%s", err, s.Log())
	}
	return s, nil
}

// m4 is a line of sendmail.mc: macro with its arguments quoted.
func m4(macro string, args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = "`" + a + "'"
	}
	return macro + "(" + strings.Join(quoted, ", ") + ")dnl"
}

// Bin is the unpacked sendmail binary.
func (s *Sendmail) Bin() string {
	return filepath.Join(s.Root, "usr", "libexec", "sendmail", "sendmail")
}

// Conf is the instance's sendmail.cf.
func (s *Sendmail) Conf() string { return filepath.Join(s.Dir, "sendmail.cf") }

// run runs sendmail with args in the instance's namespaces (see
// Sendmail), stdin on its standard input.
func (s *Sendmail) run(ctx context.Context, stdin string, args ...string) (string, error) {
	const script = `d=$1 sm=$2 h=$3; shift 3
hostname "$h"
mount -t tmpfs -o mode=755 tnlab-dev /dev
mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9
touch /dev/log; mount --bind "$d/log.sock" /dev/log
mount --bind "$d/hosts" /etc/hosts
mount --bind "$d/resolv.conf" /etc/resolv.conf
exec "$sm" "$@"`
	args = append([]string{"unshare", "--mount", "--uts", "--propagation", "private", "sh", "-ec", script,
		"sh", s.Dir, s.Bin(), s.Hostname, "-C", s.Conf(), "-L", "sm-mta"}, args...)
	return netns.RunInput(ctx, s.NS, stdin, args...)
}

// Send submits msg (header, blank line, body; lines end in LF) on
// Sendmail's command line, as a program on the MTA's host does; Sendmail
// delivers it in a background process.
func (s *Sendmail) Send(ctx context.Context, from, to string, msg []byte) error {
	_, err := s.run(ctx, string(msg), "-i", "-f", from, "--", to)
	return err
}

// Flush runs the queue once (sendmail -q), as the operator does once the
// path is fixed.
func (s *Sendmail) Flush(ctx context.Context) error {
	_, err := s.run(ctx, "", "-q")
	return err
}

// Log is the instance's log so far.
func (s *Sendmail) Log() string {
	b, _ := os.ReadFile(s.LogFile())
	return string(b)
}

// LogFile is the instance's log, as a traditional syslogd writes it:
// "Mmm dd hh:mm:ss host sm-mta[pid]: message".
func (s *Sendmail) LogFile() string { return filepath.Join(s.Dir, "syslog") }

// Stop ends the instance's processes, then its log listener.
func (s *Sendmail) Stop() error {
	err := stopProgram(s.Bin())
	if s.sink != nil {
		err = errors.Join(err, s.sink.Close())
	}
	return err
}

// syslogSink receives syslog(3) datagrams on a Unix socket and appends
// each to a file as "stamp host tag[pid]: message".
type syslogSink struct {
	conn *net.UnixConn
	f    *os.File
	host string
	wg   sync.WaitGroup
}

func listenSyslog(sock, file, host string) (*syslogSink, error) {
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("syslog socket: %w", err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		conn.Close()
		return nil, err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &syslogSink{conn: conn, f: f, host: host}
	s.wg.Add(1)
	go s.receive()
	return s, nil
}

func (s *syslogSink) receive() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return
		}
		s.f.Write(syslogLine(buf[:n], s.host))
	}
}

// syslogLine turns a datagram of syslog(3), "<PRI>Mmm dd hh:mm:ss
// tag[pid]: message", into a line of a traditional syslogd's file, with
// host after the stamp.
func syslogLine(b []byte, host string) []byte {
	if len(b) > 0 && b[0] == '<' {
		if i := bytes.IndexByte(b, '>'); i > 0 {
			b = b[i+1:]
		}
	}
	b = bytes.TrimRight(b, "\n\x00")
	const stamp = len("Mmm dd hh:mm:ss ")
	if len(b) < stamp {
		return append(append([]byte(nil), b...), '\n')
	}
	line := append([]byte(nil), b[:stamp]...)
	line = append(line, host...)
	line = append(line, ' ')
	line = append(line, b[stamp:]...)
	return append(line, '\n')
}

// Close stops the listener once the datagrams already queued are written.
func (s *syslogSink) Close() error {
	// Let the last lines arrive before the socket goes.
	s.conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	s.wg.Wait()
	err := s.conn.Close()
	os.Remove(s.conn.LocalAddr().String())
	return errors.Join(err, s.f.Close())
}
