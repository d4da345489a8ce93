//go:build linux

package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// bdatChunk is the size of one BDAT chunk. Chunks go one at a time: a
// reply per chunk costs a round trip per MiB, little against the stall
// bound, and a refusal stops the body at once.
const bdatChunk = 1 << 20

// quitTimeout bounds the QUIT after a refusal: a courtesy, not a result.
const quitTimeout = 2 * time.Second

// smtpError is a refusal: the command and the server's reply.
type smtpError struct {
	cmd  string
	code int
	msg  string
}

func (e *smtpError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.cmd, e.code, strings.ReplaceAll(e.msg, "\n", " / "))
}

// refusal turns a reply error from go-smtp or net/textproto into an
// smtpError naming cmd; any other error is returned as it is.
func refusal(cmd string, err error) error {
	var se *smtp.SMTPError
	var te *textproto.Error
	switch {
	case errors.As(err, &se):
		msg := se.Message
		if ec := se.EnhancedCode; ec != smtp.EnhancedCodeNotSet && ec != smtp.NoEnhancedCode {
			msg = fmt.Sprintf("%d.%d.%d %s", ec[0], ec[1], ec[2], msg)
		}
		return &smtpError{cmd, se.Code, msg}
	case errors.As(err, &te):
		return &smtpError{cmd, te.Code, te.Msg}
	}
	return err
}

// mail is a trial of Proto SMTP: the dialogue up to RCPT, then the body by
// BDAT when the server offers CHUNKING, else by DATA.
func (r *run) mail(ctx context.Context, t *Trial) {
	c := smtp.NewClient(r.cc)
	// The client sets and clears a deadline around each command. The
	// watcher, which closes the socket at the trial's deadline, is the
	// bound; the client's, a second later, only a backstop, so that a
	// timeout is always the watcher's and reads "timed out after ...".
	if dl, ok := ctx.Deadline(); ok {
		c.CommandTimeout = time.Until(dl) + time.Second
	}
	if err := c.Hello(r.w.Helo); err != nil {
		// The client reads the banner before it sends EHLO.
		step := "banner"
		if r.sent.Load() > 0 {
			step = "EHLO"
		}
		r.fail(t, step, refusal(step, err))
		return
	}
	// The null reverse path: nothing can bounce (RFC 5321 section 4.5.5).
	if err := c.Mail("", &smtp.MailOptions{Size: r.w.Bytes}); err != nil {
		r.fail(t, "MAIL FROM", refusal("MAIL FROM", err))
		quitRefused(c, err)
		return
	}
	if err := c.Rcpt(r.w.RcptTo, nil); err != nil {
		r.fail(t, "RCPT TO", refusal("RCPT TO", err))
		quitRefused(c, err)
		return
	}
	m := newMessage(r.w, t.Started)
	if ok, _ := c.Extension("CHUNKING"); ok {
		t.BodyVia = "BDAT"
		r.bdat(t, m)
		return
	}
	t.BodyVia = "DATA"
	r.data(t, c, m)
}

// quitRefused ends with QUIT a session whose MAIL or RCPT the server
// refused, as a well-behaved client does; other errors leave nothing to say.
func quitRefused(c *smtp.Client, err error) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		c.CommandTimeout = quitTimeout
		c.Quit()
	}
}

// bdat sends the body as BDAT chunks, none of them LAST, then RSET and
// QUIT (RFC 3030). From here on the replies are read here, not by the
// go-smtp client: it has no BDAT, and it has read nothing past the reply
// to RCPT, as the server sends nothing unasked.
func (r *run) bdat(t *Trial, m *message) {
	replies := textproto.NewReader(bufio.NewReader(r.cc))
	r.bodyFrom = r.sent.Load()
	for left := r.w.Bytes; left > 0; {
		n := min(left, bdatChunk)
		if _, err := fmt.Fprintf(r.cc, "BDAT %d\r\n", n); err != nil {
			r.fail(t, "the body", err)
			return
		}
		if err := r.writeBody(r.cc, n, m); err != nil {
			r.fail(t, "the body", err)
			return
		}
		left -= n
		// The acknowledgment decides, not the reply: the last chunk is
		// Completed once acknowledged, whatever the server answers.
		if left == 0 && !r.complete(t) {
			return
		}
		if _, _, err := replies.ReadResponse(250); err != nil {
			if left == 0 {
				t.Detail += "; " + refusal("BDAT", err).Error()
				break
			}
			r.fail(t, "BDAT", refusal("BDAT", err))
			return
		}
	}
	// RSET discards the chunks; a failure here no longer changes the
	// outcome, and closing the socket next discards them as well.
	for _, cmd := range []struct {
		verb string
		code int
	}{{"RSET", 250}, {"QUIT", 221}} {
		if _, err := fmt.Fprintf(r.cc, "%s\r\n", cmd.verb); err != nil {
			t.Detail += fmt.Sprintf("; %s: %v", cmd.verb, err)
			return
		}
		if _, _, err := replies.ReadResponse(cmd.code); err != nil {
			t.Detail += "; " + refusal(cmd.verb, err).Error()
			return
		}
	}
}

// data sends the body after DATA and closes the connection before the end
// of data indication, so the server must cancel the transaction (RFC 5321
// section 4.1.1.10). The body goes to the socket directly: the client's
// dot writer buffers, and closing it would end the data.
func (r *run) data(t *Trial, c *smtp.Client, m *message) {
	if _, err := c.Data(); err != nil {
		r.fail(t, "DATA", refusal("DATA", err))
		return
	}
	r.bodyFrom = r.sent.Load()
	if err := r.writeBody(r.cc, r.w.Bytes, m); err != nil {
		r.fail(t, "the body", err)
		return
	}
	if r.complete(t) {
		r.conn.Close()
		t.Detail += "; closed before the end of data"
	}
}

// lineLen is the length of a body line without its CRLF, under the 78 of
// RFC 5322 section 2.1.1.
const lineLen = 76

// lineChars are the characters of the body lines. There is no '.', so no
// line needs dot-stuffing (RFC 5321 section 4.5.2).
const lineChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// message generates the body of a trial: RFC 5322 headers that say what it
// is, then lines of pseudo-random characters, which no middlebox can
// compress away. A trial sends as much of it as Workload.Bytes asks.
type message struct {
	pending []byte // the rest of the headers or of the current line
	rng     *rand.PCG
	line    [lineLen + 2]byte
}

func newMessage(w Workload, started time.Time) *message {
	host := w.Helo
	if host == "" {
		host = "localhost"
	}
	to := "undisclosed-recipients:;"
	if w.RcptTo != "" {
		to = "<" + w.RcptTo + ">"
	}
	seed := uint64(started.UnixNano())
	head := strings.Join([]string{
		"From: tcpnorm probe <postmaster@" + host + ">",
		"To: " + to,
		"Subject: tcpnorm probe, never completed",
		"Date: " + started.Format(time.RFC1123Z),
		fmt.Sprintf("Message-ID: <tcpnorm-probe.%x@%s>", seed, host),
		"Auto-Submitted: auto-generated",
		"MIME-Version: 1.0",
		"Content-Type: text/plain; charset=us-ascii",
		"",
		"This message tests the TCP path to this server (tcpnorm probe).",
		"Its sender abandons the transaction before the end of the data:",
		"RSET after BDAT chunks none of which is LAST, or the connection",
		"closed before the final dot. It must never be delivered; if it",
		"was, please tell postmaster@" + host + ".",
		"",
	}, "\r\n")
	m := &message{pending: []byte(head + "\r\n"), rng: rand.NewPCG(seed, 0x7463706e6f726d)}
	m.line[lineLen], m.line[lineLen+1] = '\r', '\n'
	return m
}

// fill writes the next len(b) bytes of the message into b.
func (m *message) fill(b []byte) {
	for len(b) > 0 {
		if len(m.pending) == 0 {
			m.nextLine()
		}
		n := copy(b, m.pending)
		m.pending = m.pending[n:]
		b = b[n:]
	}
}

// nextLine makes the next body line pending: 6 random bits a character.
func (m *message) nextLine() {
	var x uint64
	for i := range lineLen {
		if i%10 == 0 {
			x = m.rng.Uint64()
		}
		m.line[i] = lineChars[x&63]
		x >>= 6
	}
	m.pending = m.line[:]
}
