//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
)

const (
	// otherDomain is a second domain the lab's MX serves, on an address no
	// DNS name points to: no lab.test policy covers it.
	otherDomain = "other.test"
	// mtaBodyTimeout is the sending Postfix's smtp_data_xfer_timeout and
	// smtp_data_done_timeout (Exim's data_timeout, Sendmail's
	// Timeout.datablock and datafinal): a stalled body is deferred after
	// this long.
	mtaBodyTimeout = 10 * time.Second
	// bigMail is the size of the body that stalls.
	bigMail = 10 << 20
)

// TestMTAPostfixOutbound: Debian's Postfix on the lab's client sends
// through the window-limit firewall that honours no window-scale shift,
// and the operator's way from the mail log to the fix works, with tcpnorm
// in host mode on the MTA and on the gateway: a 10 MiB mail to lab.test
// is deferred when its body stalls; `tcpnorm suspects` on the Postfix log
// names lab.test; `tcpnorm probe lab.test` names the fault and proposes a
// policy; that policy, put as it is in the running daemon's policy
// directory and reloaded, lets `postqueue -f` deliver the mail with its
// body intact; meanwhile a small mail to another domain on the same path
// goes through without tcpnorm seeing a packet of it.
func TestMTAPostfixOutbound(t *testing.T) {
	mtaOutbound(t, postfixSender, nil)
}

// mtaOutbound runs mtaWorkflow with the sending MTA newSender starts, on a
// lab whose path is the window-limit firewall that honours no shift, with
// tcpnorm in host mode on the MTA and on the gateway. setup, when not
// nil, prepares each lab first.
func mtaOutbound(t *testing.T, newSender func(*testing.T, *lab.Lab) sendingMTA, setup func(*testing.T, *lab.Lab)) {
	for _, tt := range []struct {
		name  string
		start func(*testing.T, *lab.Lab, ...lab.Policy) *lab.Daemon
	}{
		{"host", startHostDaemon},
		{"gateway", startDaemon},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: lab.WScaleCapZero})
			if setup != nil {
				setup(t, l)
			}
			// The daemon runs, with no policy yet.
			mtaWorkflow(t, l, tt.start(t, l), newSender)
		})
	}
}

// mtaSender is a sending MTA as mtaWorkflow drives it.
type mtaSender interface {
	// Send submits a message as a program on the MTA's host does.
	Send(ctx context.Context, from, to string, msg []byte) error
	// Flush delivers the queued mail now.
	Flush(ctx context.Context) error
	Log() string
	LogFile() string
}

// sendingMTA is an MTA on the lab's client, with what its log says of a
// delivery attempt.
type sendingMTA struct {
	mtaSender
	// attempt: the substrings of the line that ends an attempt to deliver
	// to rcpt, whatever its outcome.
	attempt func(rcpt string) []string
	// deferred: in the attempt's line when the body stalled; sent: when
	// the mail was delivered.
	deferred, sent []string
	// received: the substrings of the line with the size of the message
	// whose attempt line is given.
	received func(attempt string) []string
	// small is the body size of the mail to otherDomain: all the MTA sends
	// after DATA, with the headers it adds, must fit in the window the
	// box computes from the MX's unscaled window field (about 500 bytes).
	small int
}

// postfixSender starts a Postfix instance on the lab's client that sends
// lab.test and otherDomain to the server's addresses.
func postfixSender(t *testing.T, l *lab.Lab) sendingMTA {
	mta := startPostfix(t, l.Client, lab.PostfixOptions{
		Hostname:    "mta.example.net",
		Listen:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Relay:       mtaRelay(),
		BodyTimeout: mtaBodyTimeout,
	})
	return sendingMTA{
		mtaSender: mta,
		attempt:   func(rcpt string) []string { return []string{"to=<" + rcpt + ">", "status="} },
		deferred:  []string{"status=deferred", "timed out while sending message body"},
		sent:      []string{"status=sent"},
		received:  func(line string) []string { return []string{" " + syslogQueueID(line) + ": from=<", "size="} },
		small:     100,
	}
}

// mtaRelay is where the sending MTA sends each domain: lab.test to the
// MX's IPv4 address, otherDomain to the server's address that no name
// points to, both as literals (no lookup).
func mtaRelay() map[string]netip.Addr {
	return map[string]netip.Addr{lab.Domain: lab.ServerAddr(false), otherDomain: lab.OtherAddr(false)}
}

// syslogQueueID is the queue ID of a Postfix or Sendmail syslog line:
// "... prog[pid]: ID: ...".
func syslogQueueID(line string) string {
	_, rest, _ := strings.Cut(line, "]: ")
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// mtaWorkflow runs the way from the mail log to the fix with the sending
// MTA newSender starts on the lab's client, a Postfix MX on its server,
// and daemon d.
func mtaWorkflow(t *testing.T, l *lab.Lab, d *lab.Daemon, newSender func(*testing.T, *lab.Lab) sendingMTA) {
	ctx := context.Background()
	// Debian's receive buffers on the MTA, whatever the host's: a larger
	// maximum gives the MTA a larger shift, and the box would then read
	// its windows so small that the reply to EHLO is dropped, not the body.
	if err := netns.WriteSysctl(l.Client, "net.ipv4.tcp_rmem", lab.DefaultTCPRmem); err != nil {
		t.Fatal(err)
	}
	mx := startPostfix(t, l.Server, lab.PostfixOptions{
		Hostname: lab.MXHost, Domains: []string{lab.Domain, otherDomain},
		Listen: []netip.Addr{lab.ServerAddr(false), lab.ServerAddr(true), lab.OtherAddr(false)},
	})
	mta := newSender(t, l)

	// A large mail to lab.test: its body stalls, the MTA defers it.
	big := mail("someone@"+lab.Domain, "big", bigMail)
	start := time.Now()
	if err := mta.Send(ctx, "sender@mta.example.net", "someone@"+lab.Domain, big); err != nil {
		t.Fatal(err)
	}
	line := waitMailLog(t, mta, 90*time.Second, mta.attempt("someone@"+lab.Domain)...)
	if _, ok := lineWith(line, mta.deferred...); !ok {
		t.Fatalf("want the mail deferred while sending its body (%q), got: %s\nlog:\n%s", mta.deferred, line, mta.Log())
	}
	t.Logf("deferred %v after submission: %s\n%s", time.Since(start).Round(100*time.Millisecond), queueLine(t, mta, line), line)

	// suspects on the mail log names lab.test and the command to run.
	out, err := exec.Command(tcpnormBin, "suspects", "--json", mta.LogFile()).Output()
	if err != nil {
		t.Fatalf("tcpnorm suspects: %v\n%s", err, out)
	}
	var rep struct {
		Outbound []struct {
			Domain string
			Stalls int
			Next   []string
		}
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("suspects --json: %v\n%s", err, out)
	}
	if len(rep.Outbound) != 1 || rep.Outbound[0].Domain != lab.Domain || rep.Outbound[0].Stalls != 1 {
		t.Fatalf("suspects: want lab.test with 1 stall, got %+v", rep.Outbound)
	}
	next := "tcpnorm probe " + lab.Domain
	if !strings.Contains(strings.Join(rep.Outbound[0].Next, "\n"), next) {
		t.Errorf("suspects: next %q, want %q", rep.Outbound[0].Next, next)
	}

	// The probe on the MTA, with the lab's DNS, names the fault.
	start = time.Now()
	res, code, stderr := runProbe(t, l, "-c", probeConfig(t), "--bytes", "1048576", "--stall", "1s", lab.Domain)
	t.Logf("probe: exit %d, %s (%s), fix %+v in %v", code, res.Verdict, res.Class, res.Fix, time.Since(start).Round(100*time.Millisecond))
	// From the sending end a box that ignores the shift and one that
	// rewrites it look alike: stripping window scale is the fix of both.
	if code != 3 || res.Verdict != "option-fault" || (res.Class != "window-limit-firewall" && res.Class != "window-scale-mismatch") {
		t.Fatalf("probe: exit %d verdict %q class %q, want 3 option-fault and a window-scale class\n%+v\n%s", code, res.Verdict, res.Class, res, stderr)
	}
	for _, want := range []string{`domain = "lab.test"`, "mx = true", "window_scale = "} {
		if !strings.Contains(res.Policy, want) {
			t.Fatalf("probe's policy lacks %q:\n%s", want, res.Policy)
		}
	}
	t.Logf("proposed policy:\n%s", res.Policy)

	installPolicy(t, d, lab.Domain+".toml", res.Policy)
	waitInSet(t, d.NS, false, lab.ServerAddr(false))

	// Another domain on the same path, not covered: its small mail (its
	// body fits in the window the box computes) passes, and tcpnorm never
	// sees a packet of it.
	m := metrics(t, d)
	conns, packets := metricValue(m, "tcpnorm_policy_connections_total"), metricValue(m, "tcpnorm_packets_total")
	small := mail("someone@"+otherDomain, "small", mta.small)
	if err := mta.Send(ctx, "sender@mta.example.net", "someone@"+otherDomain, small); err != nil {
		t.Fatal(err)
	}
	line = waitMailLog(t, mta, 30*time.Second, mta.attempt("someone@"+otherDomain)...)
	if _, ok := lineWith(line, mta.sent...); !ok {
		t.Fatalf("the small mail to %s: %s", otherDomain, line)
	}
	t.Logf("sent: %s", queueLine(t, mta, line))
	checkDelivered(t, mx, small)
	m = metrics(t, d)
	if c, p := metricValue(m, "tcpnorm_policy_connections_total"), metricValue(m, "tcpnorm_packets_total"); c != conns || p != packets {
		t.Errorf("the mail to %s went through tcpnorm: policy connections %v -> %v, packets %v -> %v", otherDomain, conns, c, packets, p)
	} else {
		t.Logf("tcpnorm meanwhile: policy connections %v, packets %v, unchanged", c, p)
	}

	// The queue flushed (postqueue -f, exim -qff, sendmail -q): the
	// deferred mail goes out through tcpnorm and arrives whole.
	start = time.Now()
	if err := mta.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	line = waitMailLog(t, mta, 60*time.Second, append(mta.attempt("someone@"+lab.Domain), mta.sent...)...)
	t.Logf("delivered %v after the flush: %s", time.Since(start).Round(100*time.Millisecond), line)
	checkDelivered(t, mx, big)
	m = metrics(t, d)
	if c, p := metricValue(m, "tcpnorm_policy_connections_total"), metricValue(m, "tcpnorm_packets_total"); c <= conns || p <= packets {
		t.Errorf("the flushed mail did not go through tcpnorm: policy connections %v -> %v, packets %v -> %v", conns, c, packets, p)
	} else {
		t.Logf("tcpnorm after the flush: policy connections %v, packets %v", c, p)
	}
}

// mail is a message to rcpt: a header with subject and a body of about
// size bytes of hex lines.
func mail(rcpt, subject string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <sender@mta.example.net>\nTo: <%s>\nSubject: %s\n\n", rcpt, subject)
	var sum [sha256.Size]byte
	for n := b.Len(); b.Len()-n < size; {
		sum = sha256.Sum256(sum[:])
		fmt.Fprintf(&b, "%x\n", sum)
	}
	return b.Bytes()
}

// checkDelivered waits up to 10 s for msg in the MX's mailboxes, found
// by its subject, and compares the bodies.
func checkDelivered(t *testing.T, mx *lab.Postfix, msg []byte) {
	t.Helper()
	head, body, _ := bytes.Cut(msg, []byte("\n\n"))
	var subject string
	for _, ln := range strings.Split(string(head), "\n") {
		if s, ok := strings.CutPrefix(ln, "Subject: "); ok {
			subject = s
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, f := range mx.Messages() {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			// The header's last line ends where the blank line starts.
			h, got, _ := bytes.Cut(b, []byte("\n\n"))
			if !strings.Contains(string(h)+"\n", "\nSubject: "+subject+"\n") {
				continue
			}
			if sha256.Sum256(got) != sha256.Sum256(body) {
				t.Errorf("mail %q: delivered body of %d bytes, sha256 %x; sent %d bytes, sha256 %x", subject, len(got), sha256.Sum256(got), len(body), sha256.Sum256(body))
			} else {
				t.Logf("mail %q delivered: body of %d bytes, sha256 %x as sent", subject, len(got), sha256.Sum256(got))
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("mail %q not in the MX's mailboxes after 10s (%d messages there)\nMX log:\n%s", subject, mx.Delivered(), mx.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMailLog waits for a line of the MTA's log with every one of subs
// and returns it.
func waitMailLog(t *testing.T, mta mtaSender, within time.Duration, subs ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if ln, ok := lineWith(mta.Log(), subs...); ok {
			return ln
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q in the mail log after %v:\n%s", subs, within, mta.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queueLine is the line (with the size) of the message whose delivery
// attempt is line: Postfix's queue manager's, Exim's arrival, Sendmail's
// from=.
func queueLine(t *testing.T, mta sendingMTA, line string) string {
	t.Helper()
	return waitMailLog(t, mta, time.Second, mta.received(line)...)
}

// TestMTAPostfixInbound: a remote Debian Postfix on the lab's server sends
// a 10 MiB mail to ours on the client (over IPv6, and over IPv4), through
// the window-limit firewall that honours no window-scale shift, and the
// operator's way from the mail log to the fix works on the receiving end,
// with tcpnorm in host mode on our MTA: the body stalls after the dialogue
// and the sender defers it; `tcpnorm suspects` on our Postfix's log names
// the peer; `tcpnorm diagnose` on the capture taken on our MTA names the
// fault and proposes an inbound policy; that policy, put as it is in the
// daemon's policy directory and reloaded, lets the sender's `postqueue -f`
// deliver the mail with its body intact.
func TestMTAPostfixInbound(t *testing.T) {
	for _, v6 := range []bool{true, false} {
		t.Run(map[bool]string{true: "ipv6", false: "ipv4"}[v6], func(t *testing.T) {
			inboundWorkflow(t, v6)
		})
	}
}

func inboundWorkflow(t *testing.T, v6 bool) {
	l := newPathLab(t, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: lab.WScaleCapZero})
	d := startHostDaemon(t, l)
	ctx := context.Background()
	// Debian's receive buffers on our MTA, whatever the host's: the shift
	// of the windows it advertises, which the box reads unscaled.
	if err := netns.WriteSysctl(l.Client, "net.ipv4.tcp_rmem", lab.DefaultTCPRmem); err != nil {
		t.Fatal(err)
	}
	const ourDomain = "example.net"
	ourAddr := lab.ClientV4
	if v6 {
		ourAddr = lab.ClientV6
	}
	ours := startPostfix(t, l.Client, lab.PostfixOptions{
		Hostname: "mx." + ourDomain, Domains: []string{ourDomain},
		Listen:         []netip.Addr{lab.ClientV4, lab.ClientV6},
		ReceiveTimeout: mtaBodyTimeout,
	})
	remote := startPostfix(t, l.Server, lab.PostfixOptions{
		Hostname:    "mta." + lab.Domain,
		Listen:      []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Relay:       map[string]netip.Addr{ourDomain: ourAddr},
		BodyTimeout: mtaBodyTimeout,
	})
	capt, err := netns.StartCapture(l.Client, lab.IfClient)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capt.Stop() })

	// A large mail from the remote domain: its body stalls, the sender
	// defers it and our smtpd times out after DATA.
	rcpt := "someone@" + ourDomain
	big := mail(rcpt, "big inbound", bigMail)
	start := time.Now()
	if err := remote.Send(ctx, "sender@"+lab.Domain, rcpt, big); err != nil {
		t.Fatal(err)
	}
	line := waitMailLog(t, remote, 90*time.Second, "to=<"+rcpt+">", "status=")
	if !strings.Contains(line, "status=deferred") || !strings.Contains(line, "timed out while sending message body") {
		t.Fatalf("want the mail deferred while sending its body, got: %s\nlog:\n%s", line, remote.Log())
	}
	t.Logf("deferred on the sender %v after submission: %s", time.Since(start).Round(100*time.Millisecond), line)
	t.Logf("our smtpd: %s", waitMailLog(t, ours, 30*time.Second, "timeout after DATA", "from "))

	// The capture on our MTA, as the operator takes it.
	pcap := filepath.Join(t.TempDir(), "inbound.pcap")
	var buf bytes.Buffer
	if err := netns.WritePcap(&buf, capt.Stop()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pcap, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	// suspects on our Postfix's log names the peer, inbound.
	out, err := exec.Command(tcpnormBin, "suspects", "--json", ours.LogFile()).Output()
	if err != nil {
		t.Fatalf("tcpnorm suspects: %v\n%s", err, out)
	}
	var sus struct {
		Inbound []struct {
			Peer   string
			Stalls int
		}
	}
	if err := json.Unmarshal(out, &sus); err != nil {
		t.Fatalf("suspects --json: %v\n%s", err, out)
	}
	if len(sus.Inbound) != 1 || sus.Inbound[0].Stalls != 1 {
		t.Fatalf("suspects: want one inbound peer with 1 stall, got %+v\n%s", sus.Inbound, out)
	}
	peer, err := netip.ParseAddr(sus.Inbound[0].Peer)
	if err != nil || peer.Is6() != v6 {
		t.Fatalf("suspects names %q: want the sender's address (IPv6 %v)", sus.Inbound[0].Peer, v6)
	}
	t.Logf("suspects: inbound peer %s, %d stall", peer, sus.Inbound[0].Stalls)

	// diagnose on the capture names the fault with an inbound policy for
	// the peer suspects named.
	start = time.Now()
	out, err = exec.Command(tcpnormBin, "diagnose", "--json", pcap).Output()
	if err != nil {
		t.Fatalf("tcpnorm diagnose: %v\n%s", err, out)
	}
	var rep struct {
		Verdict  string
		Findings []struct {
			Class, Vantage, Direction, Peer, Summary string
		}
		Policies []struct {
			Peer, Direction, File, Text string
		}
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("diagnose --json: %v\n%s", err, out)
	}
	if rep.Verdict != "option-fault" || len(rep.Findings) == 0 || len(rep.Policies) != 1 {
		t.Fatalf("diagnose: want an option fault with one policy, got %s", out)
	}
	f, pol := rep.Findings[0], rep.Policies[0]
	if (f.Class != "window-limit-firewall" && f.Class != "window-scale-mismatch") || f.Vantage != "receiver" || f.Direction != "inbound" || f.Peer != peer.String() {
		t.Fatalf("diagnose: finding %+v, want a window class from the receiver's view, inbound, peer %s", f, peer)
	}
	for _, want := range []string{`direction = "inbound"`, "ports = [25]", peer.String(), "window_scale = "} {
		if !strings.Contains(pol.Text, want) {
			t.Fatalf("diagnose's policy lacks %q:\n%s", want, pol.Text)
		}
	}
	t.Logf("diagnose in %v: %s from the %s's view: %s\npolicy %s:\n%s", time.Since(start).Round(time.Millisecond), f.Class, f.Vantage, f.Summary, pol.File, pol.Text)

	installPolicy(t, d, pol.File, pol.Text)
	waitInSet(t, d.NS, v6, peer)

	// The sender's postqueue -f: the mail comes in through tcpnorm whole.
	start = time.Now()
	if err := remote.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	line = waitMailLog(t, remote, 60*time.Second, "to=<"+rcpt+">", "status=sent")
	t.Logf("delivered %v after postqueue -f: %s", time.Since(start).Round(100*time.Millisecond), line)
	checkDelivered(t, ours, big)
	m := metrics(t, d)
	if c := metricValue(m, "tcpnorm_policy_connections_total"); c < 1 {
		t.Errorf("the flushed mail did not go through tcpnorm: policy connections %v", c)
	} else {
		t.Logf("tcpnorm after the flush: policy connections %v, packets %v", c, metricValue(m, "tcpnorm_packets_total"))
	}
}

// installPolicy is the operator's step 3: the policy file as proposed in
// the running daemon's policy directory, tcpnorm check, and a reload.
func installPolicy(t *testing.T, d *lab.Daemon, file, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.Dir, "policies.d", file), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tcpnormBin, "check", "-c", filepath.Join(d.Dir, "tcpnorm.toml")).CombinedOutput(); err != nil {
		t.Fatalf("tcpnorm check: %v\n%s", err, out)
	}
	from, _ := d.LogLines(0)
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, ok := waitReload(t, d, len(from)); !ok {
		t.Fatalf("reload refused:\n%s", d.Log())
	}
}
