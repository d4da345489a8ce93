package suspects

import (
	"net/netip"
	"strings"
)

// Exim formats, from the Exim sources (Exim/exim, src/src):
//
// deliver.c deferral_log() and d_hostlog():
//
//	ID == addr R=router T=transport defer (errno): strerror H=name [addr]: message
//	ID => addr R=router T=transport H=name [addr] ... C="250 ..."
//
// transports/smtp.c: smtp_command is "sending data block" while the body
// is written and "end of data" while the reply to the final dot is awaited;
// check_response() then makes the message
//
//	SMTP timeout after sending data block (N bytes written)
//	SMTP timeout after end of data (N bytes written)
//	Remote host closed connection in response to sending data block   (EOF or ECONNRESET)
//
// (Exim before 4.80 wrote "SMTP timeout while connected to NAME [ADDR]
// after sending data block (N bytes written)"). "SMTP error from remote
// mail server after end of data: 4xx ..." is an answer, not a stall,
// unless it is a 421 about a timeout (see eximBodyStall).
//
// receive.c handle_lost_connection() and smtp_in.c smtp_data_timeout_exit():
//
//	SMTP connection from NAME (HELO) [ADDR]:PORT lost while reading message data
//	SMTP data timeout (message abandoned) on connection from NAME [ADDR] F=<sender> D=...
//
// receive.c also logs "SMTP connection lost after final dot": the body
// arrived whole, so that is no body stall and is not counted; nor is
// "unexpected disconnection while reading SMTP command" (between commands).

// parseExim reads an Exim main log message, without its time stamp.
func parseExim(msg string, e *Entry) {
	e.Kind = Mail
	if rest, ok := strings.CutPrefix(msg, "SMTP connection from "); ok {
		if i := strings.Index(rest, " lost while reading message data"); i >= 0 {
			e.Host, e.Addr = bracketAddr(rest[:i])
			e.Kind, e.Why = InStalled, "connection lost while reading message data"
		}
		return
	}
	if rest, ok := strings.CutPrefix(msg, "SMTP data timeout (message abandoned) on connection from "); ok {
		if i := strings.Index(rest, " F=<"); i >= 0 {
			rest = rest[:i]
		}
		e.Host, e.Addr = bracketAddr(rest)
		e.Kind, e.Why = InStalled, "data timeout (message abandoned)"
		return
	}
	id, rest, ok := eximID(msg)
	if !ok {
		return
	}
	e.ID = id
	if rest == "Completed" || strings.HasPrefix(rest, "Completed ") {
		e.Kind = Removed
		return
	}
	if len(rest) < 3 || rest[2] != ' ' {
		return
	}
	flag, rest := rest[:2], rest[3:]
	switch flag {
	case "<=":
		if s, ok := after(rest, " S="); ok {
			if n := digitsAt(s); n >= 0 {
				e.Kind, e.Size = Size, n
				if h, ok := after(rest, " H="); ok {
					e.Host, e.Addr = bracketAddr(h)
				}
			}
		}
	case "=>", "->":
		h, ok := after(rest, " H=")
		if !ok || !strings.Contains(rest, " T=") {
			return // a local delivery
		}
		e.Rcpt = eximAddr(rest)
		e.Host, e.Addr = eximHost(h)
		if e.Addr.IsValid() {
			e.Kind = Delivered
		}
	case "==":
		e.Rcpt = eximAddr(rest)
		why := eximBodyStall(rest)
		if why == "" {
			return
		}
		if h, ok := after(rest, " H="); ok {
			e.Host, e.Addr = eximHost(h)
		} else if c, ok := after(rest, "while connected to "); ok {
			e.Host, e.Addr = eximHost(c)
		}
		if i := strings.Index(rest, " bytes written)"); i >= 0 {
			if j := strings.LastIndexByte(rest[:i], '('); j >= 0 {
				e.Size = size(rest[j+1 : i])
			}
		}
		e.Kind, e.Why = Stalled, why
	}
}

// eximBodyStall returns the words of a deferral that say the body stalled.
// A 421 reply to the final dot that speaks of a timeout is the server's
// own data timeout: it never got the whole body (Postfix's smtpd answers
// "421 4.4.2 HOST Error: timeout exceeded"; seen in testdata/mta).
func eximBodyStall(s string) string {
	for _, after := range []string{"after pipelined end of data: 421", "after end of data: 421"} {
		if i := strings.Index(s, after); i >= 0 && strings.Contains(strings.ToLower(s[i:]), "timeout") {
			return "the server timed out waiting for the body (421 after end of data)"
		}
	}
	for _, phase := range []string{"sending data block", "end of data"} {
		i := strings.Index(s, phase)
		if i < 0 {
			continue
		}
		switch before := s[:i]; {
		case strings.Contains(before, "SMTP timeout "):
			return "SMTP timeout after " + phase
		case strings.Contains(before, "Remote host closed connection in response to "):
			return "remote host closed connection in response to " + phase
		}
	}
	return ""
}

// eximID splits "ID rest" when ID is an Exim message ID: three groups of
// base-62 characters separated by '-', 6-6-2 (before 4.97) or 6-11-4.
func eximID(msg string) (id, rest string, ok bool) {
	sp := strings.IndexByte(msg, ' ')
	if sp < 16 || sp > 23 {
		return "", msg, false
	}
	id = msg[:sp]
	groups := strings.Split(id, "-")
	if len(groups) != 3 || len(groups[0]) != 6 {
		return "", msg, false
	}
	for _, g := range groups {
		if g == "" {
			return "", msg, false
		}
		for i := 0; i < len(g); i++ {
			c := g[i]
			if !(isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
				return "", msg, false
			}
		}
	}
	return id, msg[sp+1:], true
}

// eximAddr is the first address of a delivery line: "user@dom" or
// "user@dom <orig@dom>".
func eximAddr(s string) string {
	a := upTo(s, " ")
	return strings.Trim(a, "<>")
}

// eximHost reads "name [addr]" and the forms with " DS", ":port" after it.
func eximHost(s string) (string, netip.Addr) {
	name := upTo(s, " ")
	rest := s[len(name):]
	if i := strings.IndexByte(rest, '['); i >= 0 && i <= 4 {
		if j := strings.IndexByte(rest[i:], ']'); j > 0 {
			return trimHost(name), parseAddr(rest[i+1 : i+j])
		}
	}
	if strings.HasPrefix(name, "[") {
		return "", parseAddr(strings.Trim(name, "[]"))
	}
	return trimHost(name), netip.Addr{}
}
