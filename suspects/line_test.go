package suspects

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testNow is the reading's time in the tests: classic syslog stamps of
// December take its year.
var testNow = time.Date(2026, 12, 8, 12, 0, 0, 0, time.UTC)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// lineTests are log lines in the formats the MTAs' sources write (see the
// comments in postfix.go, exim.go, sendmail.go), not recorded lines; the
// recorded ones are in testdata (see TestRecordedLogs).
var lineTests = []struct {
	name string
	line string
	want Entry
}{
	// Postfix, outbound.
	{
		name: "postfix deferred: timed out while sending message body",
		line: "Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<Carol@Example.NET>, relay=mx.example.net[198.18.3.2]:25, delay=300, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending message body)",
		want: Entry{Kind: Stalled, MTA: Postfix, Time: at("2026-12-07T10:10:00Z"), ID: "5B2C3D4E5F", Rcpt: "Carol@Example.NET", Host: "mx.example.net", Addr: netip.MustParseAddr("198.18.3.2"), Size: -1, Why: "timed out while sending message body"},
	},
	{
		name: "postfix deferred: lost connection, IPv6, RFC 3339 stamp",
		line: "2026-12-07T18:00:00.123456+01:00 mx1 postfix/smtp[1003]: 4Xb3Ck2FJ5z9vF3: to=<bob@example.net>, relay=mx.example.net[2001:2::3]:25, delay=30, delays=0/0/0.5/29, dsn=4.4.2, status=deferred (lost connection with mx.example.net[2001:2::3] while sending message body)",
		want: Entry{Kind: Stalled, MTA: Postfix, Time: at("2026-12-07T17:00:00.123456Z"), ID: "4Xb3Ck2FJ5z9vF3", Rcpt: "bob@example.net", Host: "mx.example.net", Addr: netip.MustParseAddr("2001:2::3"), Size: -1, Why: "lost connection while sending message body"},
	},
	{
		name: "postfix deferred: timed out while sending end of data, short-iso stamp",
		line: "2026-12-07T18:00:00+0000 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<bob@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=900, delays=0/0/0.5/899, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending end of data -- message may be sent more than once)",
		want: Entry{Kind: Stalled, MTA: Postfix, Time: at("2026-12-07T18:00:00Z"), ID: "5B2C3D4E5F", Rcpt: "bob@example.net", Host: "mx.example.net", Addr: netip.MustParseAddr("198.18.3.2"), Size: -1, Why: "timed out while sending end of data"},
	},
	{
		name: "postfix deferred: suspended after an earlier stall is no new stall",
		line: "Dec  7 10:11:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<bob@example.net>, relay=none, delay=360, delays=360/0/0/0, dsn=4.4.2, status=deferred (delivery temporarily suspended: lost connection with mx.example.net[198.18.3.2] while sending message body)",
		want: Entry{Kind: Mail, MTA: Postfix, Time: at("2026-12-07T10:11:00Z"), ID: "5B2C3D4E5F", Rcpt: "bob@example.net", Host: "none", Size: -1},
	},
	{
		name: "postfix: a non-final MX's stall on a line of its own",
		line: "Dec  7 10:10:00 mx1 postfix-out/smtp[1003]: 5B2C3D4E5F: lost connection with mx2.example.net[198.18.3.3] while sending message body",
		want: Entry{Kind: Stalled, MTA: Postfix, Time: at("2026-12-07T10:10:00Z"), ID: "5B2C3D4E5F", Host: "mx2.example.net", Addr: netip.MustParseAddr("198.18.3.3"), Size: -1, Why: "lost connection while sending message body"},
	},
	{
		name: "postfix deferred for another reason",
		line: "Dec  7 10:10:00 mx1 postfix/smtp[1003]: 5B2C3D4E5F: to=<bob@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=1, delays=0/0/0.5/0.5, dsn=4.7.1, status=deferred (host mx.example.net[198.18.3.2] said: 451 4.7.1 greylisted (in reply to RCPT TO command))",
		want: Entry{Kind: Mail, MTA: Postfix, Time: at("2026-12-07T10:10:00Z"), ID: "5B2C3D4E5F", Rcpt: "bob@example.net", Host: "mx.example.net", Addr: netip.MustParseAddr("198.18.3.2"), Size: -1},
	},
	{
		name: "postfix sent",
		line: "Dec  7 10:00:03 mx1 postfix/smtp[1002]: 4A1B2C3D4E: to=<bob@example.net>, orig_to=<b@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 7F00)",
		want: Entry{Kind: Delivered, MTA: Postfix, Time: at("2026-12-07T10:00:03Z"), ID: "4A1B2C3D4E", Rcpt: "bob@example.net", Host: "mx.example.net", Addr: netip.MustParseAddr("198.18.3.2"), Size: -1},
	},
	{
		name: "postfix qmgr size",
		line: "Dec  7 10:00:02 mx1 postfix/qmgr[900]: 4A1B2C3D4E: from=<alice@example.org>, size=18230, nrcpt=1 (queue active)",
		want: Entry{Kind: Size, MTA: Postfix, Time: at("2026-12-07T10:00:02Z"), ID: "4A1B2C3D4E", Size: 18230},
	},
	{
		name: "postfix qmgr removed",
		line: "Dec  7 10:00:04 mx1 postfix/qmgr[900]: 4A1B2C3D4E: removed",
		want: Entry{Kind: Removed, MTA: Postfix, Time: at("2026-12-07T10:00:04Z"), ID: "4A1B2C3D4E", Size: -1},
	},
	{
		name: "postfix smtpd client",
		line: "Dec  7 10:00:01 mx1 postfix/submission/smtpd[1001]: 4A1B2C3D4E: client=client.example.org[198.18.1.5], sasl_method=PLAIN",
		want: Entry{Kind: Client, MTA: Postfix, Time: at("2026-12-07T10:00:01Z"), ID: "4A1B2C3D4E", Host: "client.example.org", Addr: netip.MustParseAddr("198.18.1.5"), Size: -1},
	},
	// Postfix, inbound.
	{
		name: "postfix smtpd lost connection after DATA",
		line: "Dec  7 11:17:00 mx1 postfix/smtpd[1010]: 6C3D4E5F6A: lost connection after DATA (65536 bytes) from big.peer.example[198.18.7.9]",
		want: Entry{Kind: InStalled, MTA: Postfix, Time: at("2026-12-07T11:17:00Z"), ID: "6C3D4E5F6A", Host: "big.peer.example", Addr: netip.MustParseAddr("198.18.7.9"), Size: 65536, Why: "lost connection after DATA"},
	},
	{
		name: "postfix smtpd timeout after BDAT, NOQUEUE, unknown name",
		line: "Dec  7 11:17:00 mx1 postfix/smtpd[1010]: NOQUEUE: timeout after BDAT (1048576 bytes) from unknown[2001:2::9]",
		want: Entry{Kind: InStalled, MTA: Postfix, Time: at("2026-12-07T11:17:00Z"), Addr: netip.MustParseAddr("2001:2::9"), Size: 1048576, Why: "timeout after BDAT"},
	},
	{
		name: "postfix smtpd before 2.5: no queue ID, no byte count",
		line: "Dec  7 11:17:00 mx1 postfix/smtpd[1010]: lost connection after DATA from big.peer.example[198.18.7.9]",
		want: Entry{Kind: InStalled, MTA: Postfix, Time: at("2026-12-07T11:17:00Z"), Host: "big.peer.example", Addr: netip.MustParseAddr("198.18.7.9"), Size: -1, Why: "lost connection after DATA"},
	},
	{
		name: "postfix smtpd lost connection after RCPT is no body stall",
		line: "Dec  7 11:17:00 mx1 postfix/smtpd[1010]: lost connection after RCPT from big.peer.example[198.18.7.9]",
		want: Entry{Kind: Mail, MTA: Postfix, Time: at("2026-12-07T11:17:00Z"), Size: -1},
	},
	// Exim.
	{
		name: "exim defer: SMTP timeout after sending data block, zone and pid",
		line: "2026-12-07 12:05:00 +0100 [4321] 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (110): Connection timed out H=mx.other.example [198.18.4.4]: SMTP timeout after sending data block (1212416 bytes written)",
		want: Entry{Kind: Stalled, MTA: Exim, Time: at("2026-12-07T11:05:00Z"), ID: "1tXyzA-000ABC-12", Rcpt: "eve@other.example", Host: "mx.other.example", Addr: netip.MustParseAddr("198.18.4.4"), Size: 1212416, Why: "SMTP timeout after sending data block"},
	},
	{
		name: "exim defer: SMTP timeout after end of data, 4.97 message ID",
		line: "2026-12-07 12:05:00 1tXyzA-0000000ABC-12ab == eve@other.example R=dnslookup T=remote_smtp defer (-46) H=mx.other.example [198.18.4.4]:25 DT=10m: SMTP timeout after end of data (3000000 bytes written)",
		want: Entry{Kind: Stalled, MTA: Exim, Time: at("2026-12-07T12:05:00Z"), ID: "1tXyzA-0000000ABC-12ab", Rcpt: "eve@other.example", Host: "mx.other.example", Addr: netip.MustParseAddr("198.18.4.4"), Size: 3000000, Why: "SMTP timeout after end of data"},
	},
	{
		name: "exim defer: remote host closed connection in response to sending data block",
		line: "2026-12-07 12:05:00 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (-18): Remote host closed connection in response to sending data block H=mx.other.example [198.18.4.4]",
		want: Entry{Kind: Stalled, MTA: Exim, Time: at("2026-12-07T12:05:00Z"), ID: "1tXyzA-000ABC-12", Rcpt: "eve@other.example", Host: "mx.other.example", Addr: netip.MustParseAddr("198.18.4.4"), Size: -1, Why: "remote host closed connection in response to sending data block"},
	},
	{
		name: "exim before 4.80: timeout while connected to",
		line: "2026-12-07 12:05:00 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (145): Connection timed out: SMTP timeout while connected to mx.other.example [198.18.4.4] after sending data block (49135 bytes written)",
		want: Entry{Kind: Stalled, MTA: Exim, Time: at("2026-12-07T12:05:00Z"), ID: "1tXyzA-000ABC-12", Rcpt: "eve@other.example", Host: "mx.other.example", Addr: netip.MustParseAddr("198.18.4.4"), Size: 49135, Why: "SMTP timeout after sending data block"},
	},
	{
		name: "exim defer: a 4xx answer after end of data is no stall",
		line: "2026-12-07 12:05:00 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (-46) H=mx.other.example [198.18.4.4]: SMTP error from remote mail server after end of data: 451 4.3.0 try later",
		want: Entry{Kind: Mail, MTA: Exim, Time: at("2026-12-07T12:05:00Z"), ID: "1tXyzA-000ABC-12", Rcpt: "eve@other.example", Size: -1},
	},
	{
		name: "exim delivered, via syslog",
		line: "Dec  7 12:01:00 mx1 exim[2222]: 1tXyzA-000ABC-12 => eve@other.example R=dnslookup T=remote_smtp H=mx.other.example [198.18.4.4] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C=\"250 2.0.0 Ok\"",
		want: Entry{Kind: Delivered, MTA: Exim, Time: at("2026-12-07T12:01:00Z"), ID: "1tXyzA-000ABC-12", Rcpt: "eve@other.example", Host: "mx.other.example", Addr: netip.MustParseAddr("198.18.4.4"), Size: -1},
	},
	{
		name: "exim local delivery",
		line: "2026-12-07 12:01:00 1tXyzA-000ABC-12 => root <root@mx1.example> R=local_user T=mail_spool",
		want: Entry{Kind: Mail, MTA: Exim, Time: at("2026-12-07T12:01:00Z"), ID: "1tXyzA-000ABC-12", Size: -1},
	},
	{
		name: "exim received: size and client",
		line: "2026-12-07 12:00:00.123 1tXyzA-000ABC-12 <= sender@example.org H=mail.example.org (helo.example.org) [198.18.1.5]:51234 P=esmtps S=3000000 id=x@y",
		want: Entry{Kind: Size, MTA: Exim, Time: at("2026-12-07T12:00:00.123Z"), ID: "1tXyzA-000ABC-12", Host: "mail.example.org", Addr: netip.MustParseAddr("198.18.1.5"), Size: 3000000},
	},
	{
		name: "exim completed",
		line: "2026-12-07 12:06:00 1tXyzA-000ABC-12 Completed",
		want: Entry{Kind: Removed, MTA: Exim, Time: at("2026-12-07T12:06:00Z"), ID: "1tXyzA-000ABC-12", Size: -1},
	},
	{
		name: "exim inbound: lost while reading message data",
		line: "2026-12-07 12:06:00 SMTP connection from slow.peer.example (helo.x) [198.18.8.8]:45678 lost while reading message data",
		want: Entry{Kind: InStalled, MTA: Exim, Time: at("2026-12-07T12:06:00Z"), Host: "slow.peer.example", Addr: netip.MustParseAddr("198.18.8.8"), Size: -1, Why: "connection lost while reading message data"},
	},
	{
		name: "exim inbound: data timeout, client without a name",
		line: "2026-12-07 12:06:00 SMTP data timeout (message abandoned) on connection from (helo.x) [198.18.8.8]:45678 F=<a@slow.peer.example> D=5m1s",
		want: Entry{Kind: InStalled, MTA: Exim, Time: at("2026-12-07T12:06:00Z"), Addr: netip.MustParseAddr("198.18.8.8"), Size: -1, Why: "data timeout (message abandoned)"},
	},
	{
		name: "exim: lost after final dot is no body stall",
		line: "2026-12-07 12:06:00 SMTP connection lost after final dot H=slow.peer.example [198.18.8.8] P=esmtp",
		want: Entry{Kind: Mail, MTA: Exim, Time: at("2026-12-07T12:06:00Z"), Size: -1},
	},
	// Sendmail.
	{
		name: "sendmail deferred: timeout writing message",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003333: to=<frank@third.example>, ctladdr=<alice@example.org> (1000/1000), delay=00:10:02, xdelay=00:10:00, mailer=esmtp, pri=2130332, relay=mx.third.example. [198.18.5.5], dsn=4.0.0, stat=Deferred: 451 4.4.1 timeout writing message to mx.third.example.: Connection timed out",
		want: Entry{Kind: Stalled, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003333", Rcpt: "frank@third.example", Host: "mx.third.example", Addr: netip.MustParseAddr("198.18.5.5"), Size: -1, Why: "timeout writing message"},
	},
	{
		name: "sendmail deferred, phase not told",
		line: "Dec  7 13:00:00 mx1 sendmail[3333]: 0B7D0x5Q003333: to=<frank@third.example>,<gina@third.example>, delay=00:10:02, xdelay=00:10:00, mailer=esmtp, pri=2130332, relay=mx.third.example. [IPv6:2001:2::5], dsn=4.0.0, stat=Deferred: Connection timed out with mx.third.example.",
		want: Entry{Kind: Deferred, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003333", Rcpt: "frank@third.example", Host: "mx.third.example", Addr: netip.MustParseAddr("2001:2::5"), Size: -1, Why: "Connection timed out with mx.third.example."},
	},
	{
		name: "sendmail sent",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003334: to=<frank@third.example>, delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=120332, relay=mx.third.example. [198.18.5.5], dsn=2.0.0, stat=Sent (Ok: queued as 1234)",
		want: Entry{Kind: Delivered, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003334", Rcpt: "frank@third.example", Host: "mx.third.example", Addr: netip.MustParseAddr("198.18.5.5"), Size: -1},
	},
	{
		name: "sendmail body phase: syserr timeout writing message",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003333: SYSERR(root): timeout writing message to mx.third.example.: Connection timed out",
		want: Entry{Kind: BodyPhase, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003333", Host: "mx.third.example", Size: -1, Why: "timeout writing message"},
	},
	{
		name: "sendmail body phase: waiting for the reply to the dot",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003333: timeout waiting for input from mx.third.example. during client DATA status",
		want: Entry{Kind: BodyPhase, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003333", Host: "mx.third.example", Size: -1, Why: "timeout waiting for the reply to the end of data"},
	},
	{
		name: "sendmail size and client",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003335: from=<x@peer.example>, size=52311, class=0, nrcpts=1, msgid=<a@b>, proto=ESMTP, daemon=MTA, relay=mail.peer.example [198.18.9.9] (may be forged)",
		want: Entry{Kind: Size, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003335", Host: "mail.peer.example", Addr: netip.MustParseAddr("198.18.9.9"), Size: 52311},
	},
	{
		name: "sendmail inbound: unexpected close, client by address",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003336: collect: unexpected close on connection from [198.18.9.9], sender=<x@peer.example>",
		want: Entry{Kind: InStalled, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003336", Addr: netip.MustParseAddr("198.18.9.9"), Size: -1, Why: "unexpected close during message collect"},
	},
	{
		name: "sendmail inbound: read timeout via syserr, client by name",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003336: SYSERR(root): collect: read timeout on connection from mail.peer.example, from=<x@peer.example>",
		want: Entry{Kind: InStalled, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003336", Host: "mail.peer.example", Size: -1, Why: "read timeout during message collect"},
	},
	{
		name: "sendmail: premature EOM names no client",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003336: collect: premature EOM: unexpected close",
		want: Entry{Kind: Mail, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003336", Size: -1},
	},
	{
		name: "sendmail: lost input channel after data is no stall",
		line: "Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003336: lost input channel from mail.peer.example [198.18.9.9] to MTA after data",
		want: Entry{Kind: Mail, MTA: Sendmail, Time: at("2026-12-07T13:00:00Z"), ID: "0B7D0x5Q003336", Size: -1},
	},
	// Not mail.
	{
		name: "another program",
		line: "Dec  7 11:20:00 mx1 CRON[77]: (root) CMD (true)",
		want: Entry{Kind: OtherProgram, Time: at("2026-12-07T11:20:00Z"), Size: -1},
	},
	{
		name: "garbage",
		line: "garbage line",
		want: Entry{Kind: Garbled, Size: -1},
	},
	{
		name: "bad day",
		line: "Dec 47 11:20:00 mx1 postfix/smtp[1]: x",
		want: Entry{Kind: Garbled, Size: -1},
	},
	{
		name: "classic stamp in the future is last year's",
		line: "Dec 31 23:00:00 mx1 postfix/qmgr[900]: 4A1B2C3D4E: removed",
		want: Entry{Kind: Removed, MTA: Postfix, Time: at("2025-12-31T23:00:00Z"), ID: "4A1B2C3D4E", Size: -1},
	},
	{
		name: "journalctl short-precise stamp",
		line: "Dec 07 10:00:04.250000 mx1 postfix/qmgr[900]: 4A1B2C3D4E: removed",
		want: Entry{Kind: Removed, MTA: Postfix, Time: at("2026-12-07T10:00:04.25Z"), ID: "4A1B2C3D4E", Size: -1},
	},
}

// entryCmp compares Entries: times by instant, addresses by value.
var entryCmp = []cmp.Option{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
}

func TestParseLine(t *testing.T) {
	for _, tt := range lineTests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseLine(tt.line, testNow, time.UTC)
			if diff := cmp.Diff(tt.want, got, entryCmp...); diff != "" {
				t.Errorf("ParseLine(%q) (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}
