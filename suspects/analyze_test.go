package suspects

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// brief is what the tests check of a Suspect.
type brief struct {
	Name            string // domain, peer, or the MX when no recipient was logged
	Stalls, OK      int
	LargestOK       int64
	SmallestStalled int64
	SizeSplit       bool
	Next            string
}

func briefs(ss []Suspect) []brief {
	out := []brief{}
	for _, s := range ss {
		name := s.Domain
		if name == "" {
			name = s.Peer
		}
		if name == "" && len(s.Hosts) > 0 {
			name = hostText(s.Hosts[0])
		}
		out = append(out, brief{name, s.Stalls, s.OK, s.LargestOK, s.SmallestStalled, s.SizeSplit, strings.Join(s.Next, " && ")})
	}
	return out
}

func analyze(t *testing.T, opt Options, log string) *Report {
	t.Helper()
	if opt.Now.IsZero() {
		opt.Now = testNow
	}
	if opt.Location == nil {
		opt.Location = time.UTC
	}
	a := New(opt)
	if err := a.Read(strings.NewReader(log), "test.log"); err != nil {
		t.Fatal(err)
	}
	return a.Report()
}

// lines joins log lines written in the MTAs' formats (see line_test.go).
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

const (
	pfSmall    = "Dec  7 10:00:02 mx1 postfix/qmgr[900]: 4A1B2C3D4E: from=<alice@example.org>, size=18230, nrcpt=1 (queue active)"
	pfSmallOK  = "Dec  7 10:00:03 mx1 postfix/smtp[1002]: 4A1B2C3D4E: to=<bob@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 7F00)"
	pfSmallRm  = "Dec  7 10:00:04 mx1 postfix/qmgr[900]: 4A1B2C3D4E: removed"
	pfBig      = "Dec  7 10:05:00 mx1 postfix/qmgr[900]: 5B2C3D4E5F: from=<alice@example.org>, size=2104332, nrcpt=2 (queue active)"
	pfBigBad1  = "Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<carol@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=300, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending message body)"
	pfBigBad2  = "Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<dave@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=300, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending message body)"
	pfBigBad3  = "Dec  7 11:10:00 mx1 postfix/smtp[1004]: 5B2C3D4E5F: to=<carol@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=4000, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (lost connection with mx.example.net[198.18.3.2] while sending message body)"
	pfInClient = "Dec  7 11:12:00 mx1 postfix/smtpd[1010]: 6C3D4E5F6A: client=big.peer.example[198.18.7.9]"
	pfInStall  = "Dec  7 11:17:00 mx1 postfix/smtpd[1010]: 6C3D4E5F6A: lost connection after DATA (65536 bytes) from big.peer.example[198.18.7.9]"
	pfInOKc    = "Dec  7 11:20:00 mx1 postfix/smtpd[1011]: 7D4E5F6A7B: client=big.peer.example[198.18.7.9]"
	pfInOKs    = "Dec  7 11:20:01 mx1 postfix/qmgr[900]: 7D4E5F6A7B: from=<x@peer.example>, size=4096, nrcpt=1 (queue active)"
)

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name          string
		opt           Options
		log           string
		out, in       []brief
		stalls, inSt  int
		text, notText []string
	}{
		{
			name: "postfix: small passes, large stalls; recipients of one attempt count once",
			log:  lines(pfSmall, pfSmallOK, pfSmallRm, pfBig, pfBigBad1, pfBigBad2, pfBigBad3),
			out: []brief{
				{Name: "example.net", Stalls: 2, OK: 1, LargestOK: 18230, SmallestStalled: 2104332, SizeSplit: true, Next: "tcpnorm probe example.net"},
			},
			in:     []brief{},
			stalls: 2,
			text: []string{
				"1. example.net: 2 stalled, 1 delivered",
				"largest delivered 17.8 KiB, smallest stalled 2.0 MiB: small messages pass, large ones stall",
				"MX        mx.example.net [198.18.3.2]: 2 stalled, 1 delivered",
				"log       test.log:5: Dec  7 10:10:00",
				"next      tcpnorm probe example.net",
				"not why",
				"Inbound: no suspects.",
			},
			notText: []string{"test.log:6:", "policy file", "window_scale"},
		},
		{
			name: "postfix inbound: the peer's session died after DATA; its other mail passed",
			log:  lines(pfInOKc, pfInOKs, pfInClient, pfInStall),
			out:  []brief{},
			in: []brief{
				{Name: "198.18.7.9", Stalls: 1, OK: 1, LargestOK: 4096, SmallestStalled: 65536, SizeSplit: true, Next: "tcpdump -i any -s 0 -w in-198.18.7.9.pcap 'host 198.18.7.9 and tcp port 25' && tcpnorm diagnose --domain peer.example in-198.18.7.9.pcap"},
			},
			inSt: 1,
			text: []string{"1. 198.18.7.9 (big.peer.example): 1 session died in the body, 1 message received", "Outbound: no suspects."},
		},
		{
			name: "postfix: a non-final MX's stall takes the domain of the next recipient line",
			log: lines(
				pfBig,
				"Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: lost connection with mx2.example.net[198.18.3.3] while sending message body",
				"Dec  7 10:10:30 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<carol@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=300, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending message body)",
			),
			out:    []brief{{Name: "example.net", Stalls: 2, LargestOK: -1, SmallestStalled: 2104332, Next: "tcpnorm probe example.net"}},
			in:     []brief{},
			stalls: 2,
			text:   []string{"MX        mx.example.net [198.18.3.2]: 1 stalled", "MX        mx2.example.net [198.18.3.3]: 1 stalled"},
		},
		{
			name: "postfix: a stall whose recipient never shows is listed by its MX",
			log:  lines("Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: lost connection with mx2.example.net[198.18.3.3] while sending message body"),
			out:  []brief{{Name: "mx2.example.net [198.18.3.3]", Stalls: 1, LargestOK: -1, SmallestStalled: -1, Next: "tcpnorm probe 198.18.3.3"}},
			in:   []brief{}, stalls: 1,
			text: []string{"1. MX mx2.example.net [198.18.3.3] (no recipient logged): 1 stalled"},
		},
		{
			name: "exim: size from <=, stall, delivery to the same host for another domain",
			log: lines(
				"2026-12-07 12:00:00 1tXyzA-000ABC-12 <= sender@example.org U=alice P=local S=3000000 id=x@y",
				"2026-12-07 12:05:00 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (-46) H=mx.other.example [198.18.4.4]: SMTP timeout after sending data block (1212416 bytes written)",
				"2026-12-07 12:06:00 1tXyzB-000ABD-13 <= sender@example.org U=alice P=local S=2000 id=x@z",
				"2026-12-07 12:06:01 1tXyzB-000ABD-13 => fay@fourth.example R=dnslookup T=remote_smtp H=mx.other.example [198.18.4.4] C=\"250 OK\"",
				"2026-12-07 12:06:01 1tXyzB-000ABD-13 Completed",
			),
			out:    []brief{{Name: "other.example", Stalls: 1, LargestOK: -1, SmallestStalled: 3000000, Next: "tcpnorm probe other.example"}},
			in:     []brief{},
			stalls: 1,
			text:   []string{"MX        mx.other.example [198.18.4.4]: 1 stalled, 1 delivered (all domains)"},
		},
		{
			name: "sendmail: a deferral after a body-phase timeout is a stall; one without is not",
			log: lines(
				"Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003333: from=<alice@example.org>, size=900000, class=0, nrcpts=1, msgid=<a@b>, proto=ESMTP, daemon=MTA, relay=localhost [127.0.0.1]",
				"Dec  7 13:10:00 mx1 sm-mta[3334]: 0B7D0x5Q003333: timeout waiting for input from mx.third.example. during client DATA status",
				"Dec  7 13:10:00 mx1 sm-mta[3334]: 0B7D0x5Q003333: to=<frank@third.example>, delay=00:10:02, xdelay=00:10:00, mailer=esmtp, pri=2130332, relay=mx.third.example. [198.18.5.5], dsn=4.0.0, stat=Deferred: Connection timed out with mx.third.example.",
				"Dec  7 13:40:00 mx1 sm-mta[3335]: 0B7D0x5Q003333: to=<frank@third.example>, delay=00:40:02, xdelay=00:01:15, mailer=esmtp, pri=2130332, relay=mx.third.example. [198.18.5.5], dsn=4.0.0, stat=Deferred: Connection timed out with mx.third.example.",
			),
			out:    []brief{{Name: "third.example", Stalls: 1, LargestOK: -1, SmallestStalled: 900000, Next: "tcpnorm probe third.example"}},
			in:     []brief{},
			stalls: 1,
			text:   []string{"1x timeout waiting for the reply to the end of data (Connection timed out with mx.third.example.)"},
		},
		{
			name: "sendmail inbound: the client's address comes from the from= line that follows",
			log: lines(
				"Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003336: collect: unexpected close on connection from mail.peer.example, sender=<x@peer.example>",
				"Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003336: from=<x@peer.example>, size=0, class=0, nrcpts=1, proto=ESMTP, daemon=MTA, relay=mail.peer.example [198.18.9.9]",
				"Dec  7 13:05:00 mx1 sm-mta[3333]: 0B7D0x5Q003337: collect: unexpected close on connection from other.peer.example, sender=<x@peer.example>",
			),
			out: []brief{},
			in: []brief{
				{Name: "198.18.9.9", Stalls: 1, LargestOK: -1, SmallestStalled: 0, Next: "tcpdump -i any -s 0 -w in-198.18.9.9.pcap 'host 198.18.9.9 and tcp port 25' && tcpnorm diagnose --domain peer.example in-198.18.9.9.pcap"},
				{Name: "other.peer.example", Stalls: 1, LargestOK: -1, SmallestStalled: -1, Next: "tcpdump -i any -s 0 -w in-other.peer.example.pcap 'host other.peer.example and tcp port 25' && tcpnorm diagnose in-other.peer.example.pcap"},
			},
			inSt: 2,
		},
		{
			name: "no suspects: said plainly",
			log:  lines(pfSmall, pfSmallOK, pfSmallRm, "Dec  7 11:20:00 mx1 CRON[77]: (root) CMD (true)", "garbage"),
			out:  []brief{}, in: []brief{},
			text:    []string{"5 lines read, 3 mail lines, 2 not understood (postfix 3)", "No suspects: no message body stalled in these logs."},
			notText: []string{"not why"},
		},
		{
			name: "no mail lines at all",
			log:  lines("Dec  7 11:20:00 mx1 CRON[77]: (root) CMD (true)"),
			out:  []brief{}, in: []brief{},
			text: []string{"No Postfix, Exim or Sendmail lines: no suspects."},
		},
		{
			name: "since: older lines skipped",
			opt:  Options{Since: time.Hour, Now: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)},
			log:  lines(pfBig, pfBigBad1, pfBigBad3),
			out:  []brief{{Name: "example.net", Stalls: 1, LargestOK: -1, SmallestStalled: -1, Next: "tcpnorm probe example.net"}},
			in:   []brief{}, stalls: 1,
			text: []string{"since       2026-12-07T11:00:00Z: 2 older mail lines skipped"},
		},
		{
			name: "memory bound: the oldest message state is dropped and counted",
			opt:  Options{MaxMessages: 1},
			log:  lines(pfBig, pfSmall, pfBigBad1),
			out:  []brief{{Name: "example.net", Stalls: 1, LargestOK: -1, SmallestStalled: -1, Next: "tcpnorm probe example.net"}},
			in:   []brief{}, stalls: 1,
			text: []string{"memory      2 messages' state dropped"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := analyze(t, tt.opt, tt.log)
			if diff := cmp.Diff(tt.out, briefs(r.Outbound)); diff != "" {
				t.Errorf("outbound (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.in, briefs(r.Inbound)); diff != "" {
				t.Errorf("inbound (-want +got):\n%s", diff)
			}
			if r.Counts.Stalls != tt.stalls || r.Counts.InStalls != tt.inSt {
				t.Errorf("counted %d stalls, %d inbound, want %d, %d", r.Counts.Stalls, r.Counts.InStalls, tt.stalls, tt.inSt)
			}
			var b bytes.Buffer
			if err := r.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.text {
				if !strings.Contains(b.String(), w) {
					t.Errorf("text lacks %q:\n%s", w, b.String())
				}
			}
			for _, w := range tt.notText {
				if strings.Contains(b.String(), w) {
					t.Errorf("text has %q:\n%s", w, b.String())
				}
			}
		})
	}
}

// TestRank: the size split outranks more stalls without one.
func TestRank(t *testing.T) {
	log := lines(pfSmall, pfSmallOK, pfSmallRm, pfBig, pfBigBad1,
		"2026-12-07 12:05:00 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (-46) H=mx.other.example [198.18.4.4]: SMTP timeout after sending data block (1 bytes written)",
		"2026-12-07 13:05:00 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (-46) H=mx.other.example [198.18.4.4]: SMTP timeout after sending data block (1 bytes written)",
	)
	r := analyze(t, Options{}, log)
	var got []string
	for _, s := range r.Outbound {
		got = append(got, s.Domain)
	}
	if diff := cmp.Diff([]string{"example.net", "other.example"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// TestReadGzip: a rotated log is read by its magic bytes, whatever its
// name; a line longer than MaxLine is counted, not fatal; a corrupt gzip
// stream is an error.
func TestReadGzip(t *testing.T) {
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write([]byte(lines(pfBig, strings.Repeat("x", MaxLine+10), pfBigBad1)))
	zw.Close()
	a := New(Options{Now: testNow, Location: time.UTC})
	if err := a.Read(bytes.NewReader(z.Bytes()), "mail.log.1"); err != nil {
		t.Fatal(err)
	}
	r := a.Report()
	if r.Counts.Lines != 3 || r.Counts.LongLines != 1 || r.Counts.Stalls != 1 {
		t.Errorf("counts %+v, want 3 lines, 1 long, 1 stall", r.Counts)
	}
	if got := r.Outbound[0].Evidence[0]; !strings.HasPrefix(got, "mail.log.1:3: ") {
		t.Errorf("evidence %q, want it at mail.log.1:3", got)
	}
	bad := append([]byte(nil), z.Bytes()[:20]...)
	if err := New(Options{}).Read(bytes.NewReader(bad), "bad.gz"); err == nil {
		t.Error("a truncated gzip stream read without error")
	}
}
