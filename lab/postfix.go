//go:build linux

package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// Postfix is an instance of Debian's Postfix run in a lab namespace with
// all its state (configuration, queue, log, mailboxes) in a directory of
// its own: nothing of the host's Postfix configuration is read or changed.
// It needs the postfix package installed (make test-deps installs it
// without configuring or starting a host MTA).
type Postfix struct {
	NS  string
	Dir string
}

// PostfixOptions describe an instance: an MX for Domains, delivering to
// maildirs under Dir/mail, on Listen; a sending MTA for the domains in
// Relay.
type PostfixOptions struct {
	Hostname string
	Listen   []netip.Addr
	Domains  []string
	// Relay sends the mail for each domain to port 25 of its address (a
	// literal, IPv4 or IPv6: a Postfix in a namespace would resolve names
	// with the host's resolv.conf).
	Relay map[string]netip.Addr
	// BodyTimeout, when set, is how long the SMTP client lets the body
	// make no progress, and waits for the reply to its end, before it
	// defers the message (smtp_data_xfer_timeout, smtp_data_done_timeout:
	// 180 s and 600 s by default).
	BodyTimeout time.Duration
	// ReceiveTimeout, when set, is how long the SMTP server waits for the
	// client to send something, the body included, before it gives up
	// (smtpd_timeout: 300 s by default) and logs "timeout after DATA".
	ReceiveTimeout time.Duration
}

// StartPostfix configures and starts an instance in ns under dir. Stop
// stops it; the caller removes dir.
func StartPostfix(ctx context.Context, ns, dir string, opt PostfixOptions) (*Postfix, error) {
	if _, err := exec.LookPath("postfix"); err != nil {
		return nil, fmt.Errorf("postfix not installed (make test-deps installs it): %w", err)
	}
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		return nil, fmt.Errorf("postfix's master.cf (from the package): %w", err)
	}
	p := &Postfix{NS: ns, Dir: dir}
	for _, d := range []string{"etc", "queue", "data", "log", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// No chroot: the instance's queue is not under /var/spool/postfix.
	chroot := regexp.MustCompile(`(?m)^(\S+\s+\S+\s+\S+\s+\S+\s+)y `)
	if err := os.WriteFile(filepath.Join(dir, "etc", "master.cf"), chroot.ReplaceAll(master, []byte("${1}n ")), 0o644); err != nil {
		return nil, err
	}
	var listen []string
	protos := map[string]bool{}
	for _, a := range opt.Listen {
		listen = append(listen, a.String())
		if a.Is4() {
			protos["ipv4"] = true
		} else {
			protos["ipv6"] = true
		}
	}
	for _, a := range opt.Relay {
		if a.Is4() {
			protos["ipv4"] = true
		} else {
			protos["ipv6"] = true
		}
	}
	var inet []string
	for _, f := range []string{"ipv4", "ipv6"} {
		if protos[f] {
			inet = append(inet, f)
		}
	}
	main := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
maillog_file = %[1]s/log/maillog
maillog_file_prefixes = %[1]s
myhostname = %[2]s
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
inet_interfaces = %[3]s
inet_protocols = %[4]s
mynetworks = 127.0.0.0/8
smtp_dns_support_level = disabled
smtpd_banner = $myhostname ESMTP Postfix (Debian/GNU)
message_size_limit = 104857600
biff = no
smtpd_tls_security_level = none
smtp_tls_security_level = none
virtual_mailbox_domains = %[5]s
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_mailbox_limit = 0
`, dir, opt.Hostname, strings.Join(listen, ", "), strings.Join(inet, ", "), strings.Join(opt.Domains, " "))
	if len(opt.Relay) > 0 {
		var routes []string
		for d, a := range opt.Relay {
			routes = append(routes, fmt.Sprintf("%s=smtp:[%s]:25", d, a))
		}
		slices.Sort(routes)
		main += "transport_maps = inline:{ " + strings.Join(routes, ", ") + " }\n"
	}
	if opt.BodyTimeout > 0 {
		s := int((opt.BodyTimeout + time.Second - 1) / time.Second)
		main += fmt.Sprintf("smtp_data_xfer_timeout = %ds\nsmtp_data_done_timeout = %ds\n", s, s)
	}
	if opt.ReceiveTimeout > 0 {
		main += fmt.Sprintf("smtpd_timeout = %ds\n", int((opt.ReceiveTimeout+time.Second-1)/time.Second))
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "main.cf"), []byte(main), 0o644); err != nil {
		return nil, err
	}
	for _, d := range []string{"data", "mail"} {
		if out, err := exec.CommandContext(ctx, "chown", "-R", "postfix", filepath.Join(dir, d)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown: %v: %s", err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "chown", "65534", filepath.Join(dir, "mail")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("chown: %v: %s", err, out)
	}
	if err := searchable(dir, "postfix"); err != nil {
		return nil, err
	}
	exec.CommandContext(ctx, "postfix", "-c", filepath.Join(dir, "etc"), "set-permissions").Run()
	if out, err := netns.Run(ctx, ns, "postfix", "-c", filepath.Join(dir, "etc"), "start"); err != nil {
		return nil, fmt.Errorf("postfix start: %v: %s\n%s", err, out, p.Log())
	}
	// Ready when smtpd's listener answers: master binds before it forks.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if strings.Contains(p.Log(), "daemon started") {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("postfix did not start:\n%s", p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the instance and waits for its processes to end.
func (p *Postfix) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := netns.Run(ctx, p.NS, "postfix", "-c", filepath.Join(p.Dir, "etc"), "stop")
	// postfix stop signals the master; status fails once it is gone.
	for ctx.Err() == nil {
		if _, serr := netns.Run(ctx, p.NS, "postfix", "-c", filepath.Join(p.Dir, "etc"), "status"); serr != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("postfix in %s did not stop: %w", p.NS, ctx.Err())
}

// Log is the instance's log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(p.LogFile())
	return string(b)
}

// LogFile is the instance's log file (maillog_file), as Postfix writes it.
func (p *Postfix) LogFile() string { return filepath.Join(p.Dir, "log", "maillog") }

// Delivered counts the messages in the instance's mailboxes.
func (p *Postfix) Delivered() int { return len(p.Messages()) }

// Messages lists the files of the messages delivered to the instance's
// mailboxes.
func (p *Postfix) Messages() []string {
	var files []string
	filepath.Walk(filepath.Join(p.Dir, "mail"), func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && filepath.Base(filepath.Dir(path)) == "new" {
			files = append(files, path)
		}
		return nil
	})
	return files
}

// Send submits msg (header, blank line, body; lines end in LF) with the
// instance's sendmail(1), as a program on the MTA's host does.
func (p *Postfix) Send(ctx context.Context, from, to string, msg []byte) error {
	_, err := netns.RunInput(ctx, p.NS, string(msg), "sendmail", "-C", filepath.Join(p.Dir, "etc"), "-i", "-f", from, "--", to)
	return err
}

// Flush asks the instance to deliver its queued mail now (postqueue -f),
// as the operator does once the path is fixed.
func (p *Postfix) Flush(ctx context.Context) error {
	_, err := netns.Run(ctx, p.NS, "postqueue", "-c", filepath.Join(p.Dir, "etc"), "-f")
	return err
}
