//go:build linux && soak

package e2e

// Exim and Sendmail as the sending MTA, from the mail log to the fix, as
// TestMTAPostfixOutbound does with Postfix. They are in `make soak`
// (build tag soak), not `make test`: each takes over a minute and a half.

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
)

// debCache is where the tests keep the Debian packages they unpack
// (the repository's build/, never committed).
var debCache = filepath.Join("..", "build", "debs")

// TestMTAEximOutbound: Debian's Exim 4, unpacked from its package, sends
// through the window-limit firewall that honours no shift; its smtp
// transport's data_timeout defers the stalled body; the rest is
// TestMTAPostfixOutbound's way, the queue flushed with exim -qff.
func TestMTAEximOutbound(t *testing.T) {
	mtaOutbound(t, eximSender, nil)
}

// TestMTASendmailOutbound: Debian's Sendmail 8, unpacked from its
// package, sends through the same path. Its body timeouts do not end a
// body whose writes the kernel keeps accepting into the socket buffer
// while it retransmits: the kernel's retransmission limit does
// (net.ipv4.tcp_retries2, lowered in the client's namespace).
func TestMTASendmailOutbound(t *testing.T) {
	mtaOutbound(t, sendmailSender, func(t *testing.T, l *lab.Lab) {
		if err := netns.WriteSysctl(l.Client, "net.ipv4.tcp_retries2", sendmailRetries2); err != nil {
			t.Fatal(err)
		}
	})
}

// sendmailRetries2 is net.ipv4.tcp_retries2 on the client for Sendmail:
// a stalled connection is given up after about 12 s of retransmissions
// (15, about 15 min, by default).
const sendmailRetries2 = "5"

// unpack unpacks pkgs from debCache into a temporary directory and
// returns it.
func unpack(t *testing.T, pkgs ...string) string {
	t.Helper()
	root := t.TempDir()
	if err := lab.UnpackDebs(context.Background(), debCache, root, pkgs...); err != nil {
		t.Fatal(err)
	}
	return root
}

// eximSender runs an Exim instance on the lab's client that sends
// lab.test and otherDomain to the server's addresses, with its user
// Debian-exim created for the test when the host has none.
func eximSender(t *testing.T, l *lab.Lab) sendingMTA {
	t.Helper()
	root := unpack(t, lab.EximPackages...)
	remove, err := lab.AddSystemUser(lab.EximUser)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := remove(); err != nil {
			t.Error(err)
		}
	})
	mta, err := lab.NewExim(context.Background(), l.Client, t.TempDir(), root, lab.EximOptions{
		Hostname:    "mta.example.net",
		Relay:       mtaRelay(),
		BodyTimeout: mtaBodyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Before the user goes (cleanups run last first).
	stopAtEnd(t, mta)
	return sendingMTA{
		mtaSender: mta,
		// "ID => rcpt R=relay T=remote_smtp H=..." when delivered, "ID ==
		// rcpt R=..." when deferred.
		attempt:  func(rcpt string) []string { return []string{" " + rcpt + " R=relay "} },
		deferred: []string{" == ", "SMTP timeout after sending data block"},
		sent:     []string{" => "},
		received: func(line string) []string {
			f := strings.Fields(line)
			if len(f) < 3 {
				return []string{line}
			}
			return []string{" " + f[2] + " <= ", " S="}
		},
		small: 0,
	}
}

// sendmailSender runs a Sendmail instance on the lab's client that sends
// lab.test and otherDomain to the server's addresses.
func sendmailSender(t *testing.T, l *lab.Lab) sendingMTA {
	t.Helper()
	root := unpack(t, lab.SendmailPackages...)
	mta, err := lab.NewSendmail(context.Background(), l.Client, t.TempDir(), root, lab.SendmailOptions{
		Hostname:    "mta.example.net",
		Addr:        lab.ClientV4,
		Relay:       mtaRelay(),
		BodyTimeout: mtaBodyTimeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	stopAtEnd(t, mta)
	return sendingMTA{
		mtaSender: mta,
		// "to=rcpt, ..., stat=Sent (...)": no brackets for a recipient
		// given on the command line. The deferral says only
		// "stat=Deferred"; the line before it says the body stalled:
		// "SYSERR(root): timeout writing message to [ADDR]: Connection
		// timed out", which suspects counts (its Stalls).
		attempt:  func(rcpt string) []string { return []string{"to=" + rcpt + ",", "stat="} },
		deferred: []string{"stat=Deferred"},
		sent:     []string{"stat=Sent"},
		received: func(line string) []string { return []string{" " + syslogQueueID(line) + ": from=", "size="} },
		small:    0,
	}
}

// stopAtEnd stops mta's processes when the test ends.
func stopAtEnd(t *testing.T, mta interface{ Stop() error }) {
	t.Cleanup(func() {
		if err := mta.Stop(); err != nil {
			t.Errorf("%T: %v", mta, err)
		}
	})
}
