//go:build linux

package probe

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// backend records what a go-smtp server got from the trials.
type backend struct {
	rcptErr  error         // Rcpt's answer
	helloErr error         // NewSession's answer: refuses EHLO
	hold     chan struct{} // Data reads nothing until closed; nil = reads at once

	mu       sync.Mutex
	from     []string
	rcpts    []string
	resets   int
	read     int64   // body bytes Data read
	dataErrs []error // how each Data's reader ended: nil = a finished message
	out      chan struct{}
}

func (b *backend) NewSession(*smtp.Conn) (smtp.Session, error) {
	if b.helloErr != nil {
		return nil, b.helloErr
	}
	return &session{b}, nil
}

type session struct{ b *backend }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.from = append(s.b.from, from)
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.rcpts = append(s.b.rcpts, to)
	return s.b.rcptErr
}

// Data accepts nothing: it returns the reader's error, and a message
// whose reader ended cleanly is what a trial must never produce.
func (s *session) Data(r io.Reader) error {
	if s.b.hold != nil {
		<-s.b.hold
	}
	n, err := io.Copy(io.Discard, r)
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.read += n
	s.b.dataErrs = append(s.b.dataErrs, err)
	if err == nil {
		return errors.New("test backend: a trial finished a message")
	}
	return err
}

func (s *session) Reset() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.b.resets++
}

func (s *session) Logout() error {
	s.b.out <- struct{}{}
	return nil
}

// hideChunking drops CHUNKING from the server's EHLO reply: go-smtp's server
// always offers it. The server writes each reply line with one Write.
type hideChunking struct{ net.Listener }

func (l hideChunking) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return chunklessConn{c}, err
}

type chunklessConn struct{ net.Conn }

func (c chunklessConn) Write(b []byte) (int, error) {
	if bytes.Equal(b, []byte("250-CHUNKING\r\n")) {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// smtpServer serves be on l with go-smtp.
func smtpServer(t *testing.T, l net.Listener, be *backend) {
	t.Helper()
	s := smtp.NewServer(be)
	s.Domain = "mx.test"
	s.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(l)
	}()
	t.Cleanup(func() {
		if be.hold != nil {
			// Let the held session end by itself first: go-smtp's
			// Server.Close races with a BDAT blocked on the backend.
			close(be.hold)
			select {
			case <-be.out:
			case <-time.After(5 * time.Second):
				t.Error("the held session did not end")
			}
		}
		s.Close()
		<-done
	})
}

// banner554 is a server that refuses at the banner and closes.
func banner554(c net.Conn) {
	c.Write([]byte("554 5.7.1 mx.test no SMTP service here\r\n"))
	c.Close()
}

// closeAfterEHLO greets, reads EHLO and closes without a reply.
func closeAfterEHLO(c net.Conn) {
	c.Write([]byte("220 mx.test ESMTP\r\n"))
	bufio.NewReader(c).ReadString('\n')
	c.Close()
}

func TestRunSMTP(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name      string
		be        *backend                        // go-smtp server with this backend, or
		raw       func(net.Conn)                  // a raw server
		listen    func(net.Listener) net.Listener // wraps the listener
		rcvbuf    int
		stall     time.Duration // default 5s: only the stall row waits for it
		bytes     int64
		want      Outcome
		detail    string // prefix
		via       string
		resets    int  // at least
		dataEnded bool // the backend's Data ran and its reader ended in an error
	}{
		{
			name: "CHUNKING: BDAT without LAST, then RSET",
			be:   &backend{}, bytes: 3<<20 + 12345,
			want: Completed, detail: "3084 KiB of the body acknowledged in ", via: "BDAT",
			resets: 1, dataEnded: true,
		},
		{
			name: "no CHUNKING: DATA closed before the final dot",
			be:   &backend{}, listen: func(l net.Listener) net.Listener { return hideChunking{l} }, bytes: 3 << 20,
			want: Completed, detail: "3072 KiB of the body acknowledged in ", via: "DATA",
			dataEnded: true,
		},
		{
			name: "RCPT refused",
			be: &backend{rcptErr: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
				Message: "user unknown"}},
			want: Inconclusive, detail: "RCPT TO: 550 5.1.1 user unknown",
		},
		{
			name: "EHLO refused",
			be:   &backend{helloErr: errors.New("not now")},
			want: Inconclusive, detail: "EHLO: 451 4.0.0 not now",
		},
		{
			name: "banner 554",
			raw:  banner554,
			want: Inconclusive, detail: "banner: 554 5.7.1 mx.test no SMTP service here",
		},
		{
			name: "server closes after EHLO",
			raw:  closeAfterEHLO,
			want: Inconclusive, detail: "the server closed the connection during EHLO",
		},
		{
			name: "server stops reading the body",
			be:   &backend{hold: make(chan struct{})}, rcvbuf: 4096, stall: 500 * time.Millisecond, bytes: 8 << 20,
			want: Stalled, detail: "no ACK for 500ms after ", via: "BDAT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l net.Listener = listen(t, lo, tt.rcvbuf)
			if tt.listen != nil {
				l = tt.listen(l)
			}
			if tt.be != nil {
				tt.be.out = make(chan struct{}, 4)
				smtpServer(t, l, tt.be)
			} else {
				serve(t, l, tt.raw)
			}
			w := Workload{Port: port(l), Bytes: tt.bytes, Stall: cmp.Or(tt.stall, 5*time.Second),
				Helo: "probe.test", RcptTo: "postmaster@mx.test"}
			tr := Run(context.Background(), lo, w)
			t.Logf("%+v", tr)
			if tr.Outcome != tt.want || !strings.HasPrefix(tr.Detail, tt.detail) || tr.BodyVia != tt.via {
				t.Fatalf("Outcome = %v (%s), BodyVia %q, want %v (%s...), %q",
					tr.Outcome, tr.Detail, tr.BodyVia, tt.want, tt.detail, tt.via)
			}
			if tt.want == Completed && (tr.BodyBytes != tt.bytes || tr.BytesAcked <= uint64(tt.bytes)) {
				t.Errorf("BodyBytes = %d, BytesAcked = %d, want %d and more (the commands)", tr.BodyBytes, tr.BytesAcked, tt.bytes)
			}
			if tt.via == "" || tt.be.hold != nil {
				return
			}
			// The session ends (Logout) when the server sees QUIT or the
			// connection closed.
			select {
			case <-tt.be.out:
			case <-time.After(5 * time.Second):
				t.Fatal("the server's session did not end")
			}
			b := tt.be
			b.mu.Lock()
			defer b.mu.Unlock()
			if len(b.from) != 1 || b.from[0] != "" || len(b.rcpts) != 1 || b.rcpts[0] != w.RcptTo {
				t.Errorf("MAIL FROM %q, RCPT TO %q, want [\"\"], [%q]", b.from, b.rcpts, w.RcptTo)
			}
			if b.resets < tt.resets {
				t.Errorf("Reset called %d times, want at least %d", b.resets, tt.resets)
			}
			if tt.dataEnded && (len(b.dataErrs) != 1 || b.dataErrs[0] == nil) {
				t.Errorf("Data readers ended with %v, want one error: no finished message", b.dataErrs)
			}
			if b.read > tt.bytes {
				t.Errorf("Data read %d bytes, more than the %d sent", b.read, tt.bytes)
			}
			t.Logf("backend: Data read %d bytes and ended with %v; %d resets", b.read, b.dataErrs, b.resets)
		})
	}
}

// TestMessage checks the body: headers first, then CRLF lines of lineLen
// characters, none starting with '.', the same from any split of fill.
func TestMessage(t *testing.T) {
	started := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	w := Workload{Helo: "probe.test", RcptTo: "postmaster@mx.test"}
	whole := make([]byte, 256<<10)
	newMessage(w, started).fill(whole)
	tests := []struct {
		name  string
		split int // fill in pieces of this size
	}{
		{"one byte at a time", 1},
		{"odd pieces", 997},
		{"BDAT chunks", 64 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMessage(w, started)
			got := make([]byte, len(whole))
			for b := got; len(b) > 0; b = b[min(tt.split, len(b)):] {
				m.fill(b[:min(tt.split, len(b))])
			}
			if !bytes.Equal(got, whole) {
				t.Fatal("the body depends on how it is split")
			}
		})
	}
	head, body, ok := bytes.Cut(whole, []byte("\r\n\r\n"))
	if !ok {
		t.Fatal("no end of the header section")
	}
	for _, h := range []string{"From: tcpnorm probe <postmaster@probe.test>", "To: <postmaster@mx.test>",
		"Subject: tcpnorm probe, never completed", "Date: Mon, 07 Dec 2026 10:00:00 +0000", "Message-ID: <tcpnorm-probe."} {
		if !bytes.Contains(head, []byte(h)) {
			t.Errorf("headers lack %q:\n%s", h, head)
		}
	}
	lines := bytes.Split(body, []byte("\r\n"))
	for i, line := range lines[:len(lines)-1] { // the last may be cut
		if len(line) > 78 || bytes.HasPrefix(line, []byte(".")) || bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("line %d is %q", i, line)
		}
	}
	if n := len(lines[len(lines)-2]); n != lineLen {
		t.Errorf("a generated line has %d characters, want %d", n, lineLen)
	}
}
