package suspects

import (
	"net/netip"
	"strings"
	"time"
)

// MTA is the mail server a line came from.
type MTA uint8

const (
	NoMTA MTA = iota
	Postfix
	Exim
	Sendmail
)

func (m MTA) String() string {
	switch m {
	case Postfix:
		return "postfix"
	case Exim:
		return "exim"
	case Sendmail:
		return "sendmail"
	}
	return "none"
}

// Kind says what a line tells. A line that is not understood is a kind, not
// an error.
type Kind uint8

const (
	// Garbled: no syslog, journal or Exim mainlog header.
	Garbled Kind = iota
	// OtherProgram: a well-formed line of a program that is no MTA.
	OtherProgram
	// Mail: a line of an MTA that carries nothing this package uses.
	Mail
	// Size: a message's size (Postfix qmgr from=, Exim <=, Sendmail
	// from=). Addr and Host are the sending client when the line names it.
	Size
	// Client: Postfix smtpd names the client a queue ID came from.
	Client
	// Delivered: a recipient accepted by a remote SMTP server.
	Delivered
	// Stalled: a delivery timed out or lost its connection while the
	// message body was being sent or its end acknowledged.
	Stalled
	// Deferred: a Sendmail deferral whose line does not tell the SMTP
	// phase; it is a stall when a BodyPhase line of the same ID came first.
	Deferred
	// BodyPhase: Sendmail logged a timeout while writing a body or waiting
	// for the reply to its end.
	BodyPhase
	// InStalled: a client's session died while it sent us a body.
	InStalled
	// Removed: the MTA is done with this ID.
	Removed
)

var kindNames = [...]string{"garbled", "other-program", "mail", "size", "client", "delivered", "stalled", "deferred", "body-phase", "in-stalled", "removed"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Entry is what one log line says.
type Entry struct {
	Kind Kind
	MTA  MTA
	Time time.Time // zero when the line has no time
	ID   string    // queue ID (Postfix, Sendmail) or message ID (Exim)
	Rcpt string    // Delivered, Stalled, Deferred: the recipient
	// Host is the remote MX (outbound) or the client's name (inbound),
	// without a trailing dot; "" when the line has none.
	Host string
	Addr netip.Addr // its address, when logged
	// Size: the message size for Size; the bytes received before the
	// session died for InStalled; the bytes written for an Exim Stalled.
	// -1 when the line has none.
	Size int64
	Why  string // Stalled, InStalled, BodyPhase: the MTA's words
}

// Domain is the recipient's domain, lower case.
func (e *Entry) Domain() string {
	at := strings.LastIndexByte(e.Rcpt, '@')
	if at < 0 {
		return ""
	}
	return strings.ToLower(strings.TrimSuffix(e.Rcpt[at+1:], "."))
}

// ParseLine reads one log line. now supplies the year of classic syslog
// stamps, which have none: now's year, or the year before when that would
// put the line more than a day after now. loc is the zone of Exim mainlog
// stamps logged without one.
func ParseLine(line string, now time.Time, loc *time.Location) Entry {
	e := Entry{Size: -1}
	line = strings.TrimRight(line, "\r\n")
	t, rest, ok := parseStamp(line, now, loc)
	if !ok {
		return e
	}
	e.Time = t
	if rest.exim {
		e.MTA = Exim
		parseExim(rest.msg, &e)
		return e
	}
	e.Kind = OtherProgram
	switch prog := rest.prog; {
	case strings.HasPrefix(prog, "postfix"):
		// postfix/smtp, postfix-out/smtp (multiple instances),
		// postfix/submission/smtpd (master.cf service names).
		slash := strings.LastIndexByte(prog, '/')
		if slash < 0 {
			return e
		}
		e.MTA = Postfix
		parsePostfix(prog[slash+1:], rest.msg, &e)
	case prog == "exim" || prog == "exim4":
		e.MTA = Exim
		parseExim(rest.msg, &e)
	case prog == "sendmail" || prog == "sm-mta" || prog == "sm-msp-queue":
		e.MTA = Sendmail
		parseSendmail(rest.msg, &e)
	}
	return e
}

// header is what follows a line's time stamp.
type header struct {
	exim bool   // an Exim mainlog line: msg follows the stamp, no host or program
	prog string // the syslog tag without [pid]
	msg  string
}

// parseStamp splits a line into its time, program and message. Forms:
//
//	Dec  7 18:00:00 host prog[pid]: msg                classic syslog, journalctl -o short
//	Dec 07 18:00:00.123456 host prog[pid]: msg         journalctl -o short-precise
//	2026-12-07T18:00:00.123456+00:00 host prog[pid]: msg  RFC 3339 (rsyslog on Debian 12)
//	2026-12-07T18:00:00+0000 host prog[pid]: msg       journalctl -o short-iso
//	2026-12-07 18:00:00 [+0000] [pid] msg               Exim's own mainlog
func parseStamp(s string, now time.Time, loc *time.Location) (time.Time, header, bool) {
	var h header
	var t time.Time
	var rest string
	switch {
	case len(s) >= 16 && isUpper(s[0]):
		mon := monthOf(s[:3])
		if mon == 0 || s[3] != ' ' || s[6] != ' ' {
			return t, h, false
		}
		day, ok := num(strings.TrimLeft(s[4:6], " "))
		if !ok || day < 1 || day > 31 {
			return t, h, false
		}
		clock, n, ok := parseClock(s[7:])
		if !ok {
			return t, h, false
		}
		y := now.Year()
		t = time.Date(y, mon, day, 0, 0, 0, 0, now.Location()).Add(clock)
		if t.After(now.Add(24 * time.Hour)) {
			t = time.Date(y-1, mon, day, 0, 0, 0, 0, now.Location()).Add(clock)
		}
		rest = s[7+n:]
	case len(s) >= 19 && isDigit(s[0]) && s[4] == '-' && s[7] == '-' && (s[10] == 'T' || s[10] == ' '):
		y, ok1 := num(s[:4])
		mo, ok2 := num(s[5:7])
		d, ok3 := num(s[8:10])
		if !ok1 || !ok2 || !ok3 || mo < 1 || mo > 12 || d < 1 || d > 31 {
			return t, h, false
		}
		clock, n, ok := parseClock(s[11:])
		if !ok {
			return t, h, false
		}
		rest = s[11+n:]
		zone, zn, ok := parseZone(rest)
		if s[10] == 'T' {
			if !ok {
				return t, h, false
			}
			rest = rest[zn:]
		} else {
			// Exim mainlog: the zone only with log_timezone, after a space.
			h.exim = true
			if len(rest) > 2 && rest[0] == ' ' && (rest[1] == '+' || rest[1] == '-') {
				if zone, zn, ok = parseZone(rest[1:]); ok {
					rest = rest[1+zn:]
				}
			}
			if !ok {
				zone = nil
			}
		}
		if zone == nil {
			zone = loc
		}
		t = time.Date(y, time.Month(mo), d, 0, 0, 0, 0, zone).Add(clock)
	default:
		return t, h, false
	}
	if len(rest) == 0 || rest[0] != ' ' {
		return t, h, false
	}
	rest = rest[1:]
	if h.exim {
		// log_selector +pid: "[1234] ".
		if len(rest) > 2 && rest[0] == '[' {
			if end := strings.IndexByte(rest, ']'); end > 0 && end+1 < len(rest) && rest[end+1] == ' ' {
				if _, ok := num(rest[1:end]); ok {
					rest = rest[end+2:]
				}
			}
		}
		h.msg = rest
		return t, h, true
	}
	// host prog[pid]: msg
	sp := strings.IndexByte(rest, ' ')
	if sp <= 0 {
		return t, h, false
	}
	rest = rest[sp+1:]
	colon := strings.Index(rest, ": ")
	if colon <= 0 {
		if !strings.HasSuffix(rest, ":") {
			return t, h, false
		}
		colon = len(rest) - 1
	}
	prog := rest[:colon]
	if b := strings.IndexByte(prog, '['); b >= 0 {
		prog = prog[:b]
	}
	if prog == "" || strings.IndexByte(prog, ' ') >= 0 {
		return t, h, false
	}
	h.prog = prog
	if colon+2 <= len(rest) {
		h.msg = rest[colon+2:]
	}
	return t, h, true
}

// parseClock reads "15:04:05" and an optional fraction; n is the bytes read.
func parseClock(s string) (d time.Duration, n int, ok bool) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, 0, false
	}
	hh, ok1 := num(s[0:2])
	mm, ok2 := num(s[3:5])
	ss, ok3 := num(s[6:8])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return 0, 0, false
	}
	d = time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute + time.Duration(ss)*time.Second
	n = 8
	if n < len(s) && (s[n] == '.' || s[n] == ',') {
		scale := time.Second
		n++
		start := n
		for n < len(s) && isDigit(s[n]) {
			if scale > 1 {
				scale /= 10
				d += time.Duration(s[n]-'0') * scale
			}
			n++
		}
		if n == start {
			return 0, 0, false
		}
	}
	return d, n, true
}

// parseZone reads "Z", "+01:00" or "+0100".
func parseZone(s string) (*time.Location, int, bool) {
	if len(s) >= 1 && s[0] == 'Z' {
		return time.UTC, 1, true
	}
	if len(s) < 5 || (s[0] != '+' && s[0] != '-') {
		return nil, 0, false
	}
	hh, ok1 := num(s[1:3])
	mmStr, n := s[3:5], 5
	if s[3] == ':' {
		if len(s) < 6 {
			return nil, 0, false
		}
		mmStr, n = s[4:6], 6
	}
	mm, ok2 := num(mmStr)
	if !ok1 || !ok2 || hh > 23 || mm > 59 {
		return nil, 0, false
	}
	off := hh*3600 + mm*60
	if s[0] == '-' {
		off = -off
	}
	if off == 0 {
		return time.UTC, n, true
	}
	return time.FixedZone("", off), n, true
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

func monthOf(s string) time.Month {
	for i, m := range months {
		if s == m {
			return time.Month(i + 1)
		}
	}
	return 0
}

// num parses a short unsigned decimal; ok false for anything else.
func num(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// size parses a byte count; -1 for anything else.
func size(s string) int64 {
	if s == "" || len(s) > 15 {
		return -1
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return -1
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// after returns what follows the first key in s.
func after(s, key string) (string, bool) {
	i := strings.Index(s, key)
	if i < 0 {
		return "", false
	}
	return s[i+len(key):], true
}

// upTo returns s up to the first of the stop bytes, or all of it.
func upTo(s, stop string) string {
	if i := strings.IndexAny(s, stop); i >= 0 {
		return s[:i]
	}
	return s
}

// digitsAt returns the leading decimal digits of s as a byte count.
func digitsAt(s string) int64 {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return size(s[:n])
}

// hostAddr splits Postfix's "name[addr]" (also "name[addr]:port").
func hostAddr(s string) (string, netip.Addr) {
	b := strings.IndexByte(s, '[')
	if b < 0 {
		return trimHost(s), netip.Addr{}
	}
	e := strings.IndexByte(s[b:], ']')
	if e < 0 {
		return trimHost(s[:b]), netip.Addr{}
	}
	return trimHost(s[:b]), parseAddr(s[b+1 : b+e])
}

// bracketAddr finds the first "[addr]" in s (Exim's and Sendmail's host
// notation, "name [addr]") and returns the name before it and the address.
func bracketAddr(s string) (string, netip.Addr) {
	for off := 0; ; {
		b := strings.IndexByte(s[off:], '[')
		if b < 0 {
			return "", netip.Addr{}
		}
		b += off
		e := strings.IndexByte(s[b:], ']')
		if e < 0 {
			return "", netip.Addr{}
		}
		if a := parseAddr(s[b+1 : b+e]); a.IsValid() {
			name := strings.TrimSpace(s[:b])
			if p := strings.IndexByte(name, ' '); p >= 0 {
				name = name[:p] // "name (helo) [addr]": the name comes first
			}
			if strings.HasPrefix(name, "(") {
				name = ""
			}
			return trimHost(name), a
		}
		off = b + e
	}
}

// parseAddr reads an address as MTAs log it: Sendmail writes "IPv6:" before
// IPv6 addresses, Exim may append ".port" to IPv6 and ":port" to IPv4.
func parseAddr(s string) netip.Addr {
	s = strings.TrimPrefix(s, "IPv6:")
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func trimHost(s string) string {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	if s == "unknown" {
		return ""
	}
	return strings.ToLower(s)
}

// queueID splits "ID: rest" when ID looks like a queue ID (letters and
// digits, as Postfix's short and long IDs and Sendmail's are).
func queueID(msg string) (id, rest string, ok bool) {
	colon := strings.Index(msg, ": ")
	if colon < 5 || colon > 24 || msg[:colon] == "NOQUEUE" {
		return "", msg, false
	}
	for i := 0; i < colon; i++ {
		c := msg[i]
		if !(isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return "", msg, false
		}
	}
	return msg[:colon], msg[colon+2:], true
}
