package suspects

import (
	"net/netip"
	"strings"
)

// Sendmail formats, from the Sendmail sources (as in freebsd-src
// contrib/sendmail/src):
//
// deliver.c logdelivery(): "to=<rcpt>, ..., mailer=esmtp, ..., relay=name.
// [addr], dsn=..., stat=Sent (...)" or "stat=Deferred: ...".
//
// usersmtp.c smtpdata() data timeout:
//
//	syserr("+451 4.4.1 timeout writing message to %s", CurHostName)
//
// and, while it waits for the reply to the final dot, SmtpPhase is
// "client DATA status", so util.c sfgets() logs
//
//	timeout waiting for input from %.100s during client DATA status
//
// The deferral itself then often says only "Connection timed out with
// NAME" or "Connection reset by NAME": those are stalls when one of the
// lines above came first for the same queue ID (Kind BodyPhase, Deferred).
//
// collect.c collect(), inbound:
//
//	collect: premature EOM: unexpected close      (no client named; not counted)
//	collect: unexpected close on connection from %.100s, sender=%s
//	collect: read timeout on connection from %s, from=%s   (via syserr: "SYSERR(root): ...")
//	collect: I/O error on connection from %s, from=%s
//
// and before 8.12 "timeout waiting for input from %s during message
// collect". The client is RealHostName: a name, or "[addr]" when it has
// none; the queue ID's "from=..., relay=name [addr]" line gives the
// address. srvrsmtp.c's "lost input channel from %s to %s after data" is
// logged when the client leaves after a message was accepted, so it is no
// stall and is not counted.

// parseSendmail reads the message part of a sendmail line.
func parseSendmail(msg string, e *Entry) {
	e.Kind = Mail
	id, rest, ok := queueID(msg)
	if !ok {
		return
	}
	e.ID = id
	rest = strings.TrimPrefix(rest, "SYSERR(root): ")
	if strings.HasPrefix(rest, "SYSERR(") {
		if i := strings.Index(rest, "): "); i > 0 {
			rest = rest[i+3:]
		}
	}
	switch {
	case strings.HasPrefix(rest, "from="):
		if s, ok := after(rest, ", size="); ok {
			if n := digitsAt(s); n >= 0 {
				e.Kind, e.Size = Size, n
			}
		}
		if r, ok := after(rest, ", relay="); ok {
			e.Host, e.Addr = sendmailRelay(r)
		}
	case strings.HasPrefix(rest, "to="):
		e.Rcpt = strings.Trim(upTo(rest[len("to="):], ",> "), "<")
		r, ok := after(rest, ", relay=")
		if !ok {
			return
		}
		e.Host, e.Addr = sendmailRelay(r)
		stat, ok := after(rest, ", stat=")
		if !ok || !e.Addr.IsValid() && e.Host == "" {
			return
		}
		switch {
		case strings.HasPrefix(stat, "Sent"):
			if e.Addr.IsValid() {
				e.Kind = Delivered
			}
		case strings.HasPrefix(stat, "Deferred"):
			if why := sendmailBodyStall(stat); why != "" {
				e.Kind, e.Why = Stalled, why
			} else {
				e.Kind, e.Why = Deferred, strings.TrimPrefix(stat, "Deferred: ")
			}
		}
	case strings.HasPrefix(rest, "collect: "):
		c := rest[len("collect: "):]
		for _, p := range []string{"unexpected close", "read timeout", "I/O error"} {
			if h, ok := strings.CutPrefix(c, p+" on connection from "); ok {
				h = upTo(h, ",")
				e.Host, e.Addr = sendmailRelay(h)
				e.Kind, e.Why = InStalled, p+" during message collect"
				return
			}
			// 8.17 as Debian 12 logs it (testdata/mta/sendmail-inbound.log):
			// "collect: relay=NAME, from=<...>, info=read timeout"; the
			// address comes with the from= line that follows.
			if h, ok := strings.CutPrefix(c, "relay="); ok && strings.HasSuffix(c, "info="+p) {
				e.Host, e.Addr = sendmailRelay(upTo(h, ","))
				e.Kind, e.Why = InStalled, p+" during message collect"
				return
			}
		}
	default:
		if h, ok := strings.CutPrefix(rest, "timeout waiting for input from "); ok {
			if i := strings.Index(h, " during message collect"); i >= 0 {
				e.Host, e.Addr = sendmailRelay(h[:i])
				e.Kind, e.Why = InStalled, "timeout during message collect"
			} else if i := strings.Index(h, " during client DATA status"); i >= 0 {
				e.Host, e.Addr = sendmailRelay(h[:i])
				e.Kind, e.Why = BodyPhase, "timeout waiting for the reply to the end of data"
			}
			return
		}
		if h, ok := strings.CutPrefix(rest, "timeout writing message to "); ok {
			e.Host, e.Addr = sendmailRelay(upTo(h, ":"))
			e.Kind, e.Why = BodyPhase, "timeout writing message"
		}
	}
}

// sendmailBodyStall returns the words of a deferral that say the body
// stalled.
func sendmailBodyStall(stat string) string {
	switch {
	case strings.Contains(stat, "timeout writing message"):
		return "timeout writing message"
	case strings.Contains(stat, "during client DATA status"):
		return "timeout waiting for the reply to the end of data"
	}
	return ""
}

// sendmailRelay reads "name. [addr]", "[addr]", "name [addr] (may be
// forged)" or a bare name, up to the next field.
func sendmailRelay(s string) (string, netip.Addr) {
	s = upTo(s, ",")
	if name, a := bracketAddr(s); a.IsValid() {
		return name, a
	}
	return trimHost(upTo(s, " ")), netip.Addr{}
}
