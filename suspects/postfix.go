package suspects

import "strings"

// Postfix formats, from the Postfix sources (vdukhovni/postfix):
//
// smtp/smtp_proto.c xfer_states[] and smtp_trouble.c smtp_stream_except():
//
//	lost connection with %s while %s
//	conversation with %s timed out while %s
//
// where %s is session->namaddr, "name[addr]" (smtp_session.c), and the
// body phases are "sending message body" and "sending end of data --
// message may be sent more than once". These texts end up in the
// recipient's "status=deferred (...)" line, and in a line of their own
// ("QUEUEID: lost connection with ...") when Postfix moves on to the next
// MX host.
//
// smtpd/smtpd.c smtpd_proto() ("Log the byte count after DATA to help
// diagnose MTU troubles"):
//
//	%s: %s after %s (%lu bytes) from %s   queue ID or NOQUEUE, "lost connection" or "timeout", DATA or BDAT, namaddr
//
// Postfix before 2.5 wrote "lost connection after DATA from %s" with no
// queue ID and no byte count; both forms are read.

// parsePostfix reads the message part of a line of the Postfix service svc.
func parsePostfix(svc, msg string, e *Entry) {
	e.Kind = Mail
	switch svc {
	case "smtpd":
		if parsePostfixInbound(msg, e) {
			return
		}
		id, rest, ok := queueID(msg)
		if !ok {
			return
		}
		if c, ok := strings.CutPrefix(rest, "client="); ok {
			e.Kind, e.ID = Client, id
			e.Host, e.Addr = hostAddr(upTo(c, ", "))
		}
	case "qmgr":
		id, rest, ok := queueID(msg)
		if !ok {
			return
		}
		e.ID = id
		if rest == "removed" {
			e.Kind = Removed
			return
		}
		if !strings.HasPrefix(rest, "from=<") {
			return
		}
		if s, ok := after(rest, ", size="); ok {
			if n := digitsAt(s); n >= 0 {
				e.Kind, e.Size = Size, n
			}
		}
	case "smtp":
		id, rest, ok := queueID(msg)
		if !ok {
			return
		}
		e.ID = id
		if r, ok := strings.CutPrefix(rest, "to=<"); ok {
			e.Rcpt = upTo(r, ">")
			relay, ok := after(r, ", relay=")
			if !ok {
				return
			}
			e.Host, e.Addr = hostAddr(upTo(relay, ", "))
			status, ok := after(r, ", status=")
			switch {
			case !ok || e.Host == "none":
			case strings.HasPrefix(status, "sent "):
				e.Kind = Delivered
			case strings.HasPrefix(status, "deferred ") || strings.HasPrefix(status, "bounced "):
				if why := postfixBodyStall(status); why != "" {
					e.Kind, e.Why = Stalled, why
				}
			}
			return
		}
		// Non-final MX: the same text on a line of its own.
		if why := postfixBodyStall(rest); why != "" {
			peer := rest
			if p, ok := after(rest, " with "); ok {
				peer = upTo(p, " ")
			}
			e.Host, e.Addr = hostAddr(peer)
			e.Kind, e.Why = Stalled, why
		}
	}
}

// postfixBodyStall returns the words of s that say a body stalled, or "".
func postfixBodyStall(s string) string {
	for _, phase := range []string{" while sending message body", " while sending end of data"} {
		i := strings.Index(s, phase)
		if i < 0 {
			continue
		}
		switch {
		case strings.Contains(s[:i], "lost connection with "):
			return "lost connection" + phase
		case strings.Contains(s[:i], " timed out"):
			return "timed out" + phase
		}
	}
	return ""
}

// parsePostfixInbound reads smtpd's "lost connection after DATA (N bytes)
// from name[addr]" in its forms; false when msg is another line.
func parsePostfixInbound(msg string, e *Entry) bool {
	id, rest, ok := queueID(msg)
	if !ok {
		if strings.HasPrefix(msg, "NOQUEUE: ") {
			rest = msg[len("NOQUEUE: "):]
		} else {
			rest = msg
		}
	}
	var reason string
	switch {
	case strings.HasPrefix(rest, "lost connection after "):
		reason = "lost connection"
	case strings.HasPrefix(rest, "timeout after "):
		reason = "timeout"
	default:
		return false
	}
	rest = rest[len(reason)+len(" after "):]
	cmd := upTo(rest, " ")
	if cmd != "DATA" && cmd != "BDAT" {
		return false
	}
	rest = rest[len(cmd):]
	e.Size = -1
	if b, ok := strings.CutPrefix(rest, " ("); ok {
		e.Size = digitsAt(b)
	}
	from, ok := after(rest, " from ")
	if !ok {
		return false
	}
	e.Host, e.Addr = hostAddr(from)
	e.Kind, e.ID, e.Why = InStalled, id, reason+" after "+cmd
	return true
}
