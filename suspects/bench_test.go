package suspects

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// benchLog is a log of n mixed lines: Postfix deliveries that pass and
// stall, Exim and Sendmail lines, inbound stalls, and other programs'.
func benchLog(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() >= 0; i++ {
		id := fmt.Sprintf("%010X", i)
		ls := []string{
			"Dec  7 10:00:01 mx1 postfix/smtpd[1001]: " + id + ": client=client.example.org[198.18.1.5]",
			"Dec  7 10:00:02 mx1 postfix/qmgr[900]: " + id + ": from=<alice@example.org>, size=18230, nrcpt=1 (queue active)",
			"Dec  7 10:00:03 mx1 postfix/smtp[1002]: " + id + ": to=<bob@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 7F00)",
			"Dec  7 10:10:00 mx1 postfix/smtp[1003]: " + id + ": to=<carol@example.net>, relay=mx.example.net[198.18.3.2]:25, delay=300, delays=0.1/0/0.5/299, dsn=4.4.2, status=deferred (conversation with mx.example.net[198.18.3.2] timed out while sending message body)",
			"Dec  7 10:00:04 mx1 postfix/qmgr[900]: " + id + ": removed",
			"Dec  7 11:17:00 mx1 postfix/smtpd[1010]: NOQUEUE: lost connection after DATA (65536 bytes) from big.peer.example[198.18.7.9]",
			"2026-12-07T12:05:00.000000+00:00 mx1 exim[2222]: 1tXyzA-000ABC-12 == eve@other.example R=dnslookup T=remote_smtp defer (-46) H=mx.other.example [198.18.4.4]: SMTP timeout after sending data block (1212416 bytes written)",
			"Dec  7 13:00:00 mx1 sm-mta[3333]: 0B7D0x5Q003334: to=<frank@third.example>, delay=00:00:02, xdelay=00:00:01, mailer=esmtp, pri=120332, relay=mx.third.example. [198.18.5.5], dsn=2.0.0, stat=Sent (Ok: queued as 1234)",
			"Dec  7 11:20:00 mx1 CRON[77]: (root) CMD (true)",
			"Dec  7 11:20:00 mx1 dovecot[88]: imap-login: Login: user=<bob>, method=PLAIN, rip=198.18.1.5",
		}
		for _, l := range ls {
			b.WriteString(l)
			b.WriteByte('\n')
			if n--; n == 0 {
				return b.Bytes()
			}
		}
	}
	return nil
}

// BenchmarkParse reads a generated log of mixed lines through the whole
// Analyzer and reports lines per second.
func BenchmarkParse(b *testing.B) {
	const lines = 100000
	log := benchLog(lines)
	b.SetBytes(int64(len(log)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		a := New(Options{Now: testNow, Location: time.UTC})
		if err := a.Read(bytes.NewReader(log), "bench.log"); err != nil {
			b.Fatal(err)
		}
		if r := a.Report(); r.Counts.Lines != lines {
			b.Fatalf("read %d lines, want %d", r.Counts.Lines, lines)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/time.Since(start).Seconds(), "lines/s")
}
