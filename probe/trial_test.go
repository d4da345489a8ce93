//go:build linux

package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests use loopback only: 127.0.0.1 and ::1. Unreachable (no answer
// to the SYN, ICMP unreachable) cannot be made on loopback without root and
// a namespace; dialFailure is tested on the errors themselves here, and
// the lab tests cover it on a real path.

// listen listens on addr's loopback with a receive buffer of rcvbuf bytes
// (0: the host's default); it skips the test when the family is missing.
func listen(t *testing.T, addr netip.Addr, rcvbuf int) net.Listener {
	t.Helper()
	lc := net.ListenConfig{}
	if rcvbuf > 0 {
		// Set on the listener, the accepted sockets inherit it before the
		// handshake, so their window (and shift) is small from the start.
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	l, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		if addr.Is6() {
			t.Skipf("skipping: no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serve accepts on l until it is closed and hands each connection to fn.
func serve(t *testing.T, l net.Listener, fn func(net.Conn)) {
	t.Helper()
	done := make(chan struct{})
	conns := make(chan net.Conn, 16)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
			go fn(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
}

func port(l net.Listener) uint16 {
	return l.Addr().(*net.TCPAddr).AddrPort().Port()
}

// sink reads everything; hold reads nothing until the connection closes.
func sink(c net.Conn) { io.Copy(io.Discard, c) }
func hold(c net.Conn) {}

// sysctlOn reports whether a net.ipv4 TCP option is enabled on this host
// (they apply to IPv6 as well).
func sysctlOn(t *testing.T, name string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/" + name)
	if err != nil {
		t.Logf("%s: %v; assuming on", name, err)
		return true
	}
	return strings.TrimSpace(string(b)) != "0"
}

var loopbacks = []struct {
	name string
	addr netip.Addr
}{
	{"IPv4", netip.MustParseAddr("127.0.0.1")},
	{"IPv6", netip.MustParseAddr("::1")},
}

func TestRunTCPCompleted(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			l := listen(t, lo.addr, 0)
			serve(t, l, sink)
			w := Workload{Proto: TCP, Port: port(l), Bytes: 4 << 20, Stall: 5 * time.Second, Local: lo.addr}
			tr := Run(context.Background(), lo.addr, w)
			t.Logf("%+v", tr)
			if tr.Outcome != Completed {
				t.Fatalf("Outcome = %v (%s), want completed", tr.Outcome, tr.Detail)
			}
			if tr.BodyBytes != w.Bytes || tr.BytesAcked < uint64(w.Bytes) {
				t.Errorf("BodyBytes = %d, BytesAcked = %d, want %d and at least that", tr.BodyBytes, tr.BytesAcked, w.Bytes)
			}
			if want := sysctlOn(t, "tcp_window_scaling"); tr.WindowScaling != want || want && tr.RcvWscale == 0 {
				t.Errorf("WindowScaling = %v, RcvWscale = %d, want %v and a shift", tr.WindowScaling, tr.RcvWscale, want)
			}
			if want := sysctlOn(t, "tcp_timestamps"); tr.Timestamps != want {
				t.Errorf("Timestamps = %v, want %v", tr.Timestamps, want)
			}
			if want := sysctlOn(t, "tcp_sack"); tr.SACK != want {
				t.Errorf("SACK = %v, want %v", tr.SACK, want)
			}
			if tr.RTT <= 0 || tr.SndMSS == 0 {
				t.Errorf("RTT = %v, SndMSS = %d, want both > 0", tr.RTT, tr.SndMSS)
			}
			if tr.Remote != netip.AddrPortFrom(lo.addr, w.Port) || tr.Local.Addr() != lo.addr {
				t.Errorf("Local, Remote = %v, %v, want %v to %v", tr.Local, tr.Remote, lo.addr, tr.Remote)
			}
			if tr.AckedAtStall != 0 || tr.Mark != 0 {
				t.Errorf("AckedAtStall = %d, Mark = %#x, want 0, 0", tr.AckedAtStall, tr.Mark)
			}
		})
	}
}

func TestRunTCPStalled(t *testing.T) {
	const stall = 500 * time.Millisecond
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			l := listen(t, lo.addr, 4096)
			serve(t, l, hold)
			w := Workload{Proto: TCP, Port: port(l), Bytes: 8 << 20, Stall: stall}
			tr := Run(context.Background(), lo.addr, w)
			t.Logf("%+v", tr)
			if tr.Outcome != Stalled || !strings.HasPrefix(tr.Detail, "no ACK for 500ms after ") {
				t.Fatalf("Outcome = %v (%s), want stalled, no ACK for 500ms", tr.Outcome, tr.Detail)
			}
			if tr.Duration > stall+2*time.Second {
				t.Errorf("Duration = %v, want under the stall bound and 2s", tr.Duration)
			}
			if tr.AckedAtStall == 0 || tr.AckedAtStall >= uint64(w.Bytes) || tr.BytesAcked != tr.AckedAtStall {
				t.Errorf("AckedAtStall = %d, BytesAcked = %d, want in 1..%d and equal", tr.AckedAtStall, tr.BytesAcked, w.Bytes)
			}
			if tr.BodyBytes <= int64(tr.AckedAtStall)-1 {
				t.Errorf("BodyBytes = %d, want more than acknowledged (%d)", tr.BodyBytes, tr.AckedAtStall-1)
			}
		})
	}
}

// TestRunTCPTrickle: a peer that reads a little now and then keeps ACKs
// coming but will never take the body: a stall after trickleStalls ×
// Stall, not a wait for the trial's timeout.
func TestRunTCPTrickle(t *testing.T) {
	const stall = 500 * time.Millisecond
	lo := netip.MustParseAddr("127.0.0.1")
	l := listen(t, lo, 4096)
	serve(t, l, func(c net.Conn) {
		// 20 KiB/s: an ACK every read, 50 KiB in 2.5 s.
		buf := make([]byte, 2048)
		for {
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	w := Workload{Proto: TCP, Port: port(l), Bytes: 8 << 20, Stall: stall}
	tr := Run(context.Background(), lo, w)
	t.Logf("%+v", tr)
	if tr.Outcome != Stalled || !strings.HasPrefix(tr.Detail, "less than 64 KiB acknowledged in 2.5s") {
		t.Fatalf("Outcome = %v (%s), want stalled, less than 64 KiB acknowledged in 2.5s", tr.Outcome, tr.Detail)
	}
	if tr.Duration > trickleStalls*stall+2*time.Second {
		t.Errorf("Duration = %v, want about %v", tr.Duration, trickleStalls*stall)
	}
}

// TestRunEnds covers the ends the caller or the bounds impose, on peers
// that accept and then neither read nor write.
func TestRunEnds(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	deaf := listen(t, lo, 4096) // never reads the body
	serve(t, deaf, hold)
	silent := listen(t, lo, 0) // never sends a banner
	serve(t, silent, hold)
	tests := []struct {
		name    string
		w       Workload
		cancel  time.Duration // cancel the context after this long; 0 = never
		want    Outcome
		detail  string
		maxTime time.Duration
	}{
		{
			name:   "cancelled in the body",
			w:      Workload{Proto: TCP, Port: port(deaf), Bytes: 8 << 20, Stall: time.Minute},
			cancel: 300 * time.Millisecond, want: Failed, detail: "cancelled during the body",
			maxTime: 300*time.Millisecond + time.Second,
		},
		{
			name: "timed out in the body",
			w:    Workload{Proto: TCP, Port: port(deaf), Bytes: 8 << 20, Stall: time.Minute, Timeout: 700 * time.Millisecond},
			want: Stalled, detail: "timed out after 700ms with 4 KiB of 8192 KiB of the body acknowledged",
			maxTime: 700*time.Millisecond + time.Second,
		},
		{
			name: "timed out waiting for the banner",
			w:    Workload{Port: port(silent), Timeout: 700 * time.Millisecond, Helo: "probe.test", RcptTo: "postmaster@mx.test"},
			want: Inconclusive, detail: "timed out after 700ms during banner",
			maxTime: 700*time.Millisecond + time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel > 0 {
				time.AfterFunc(tt.cancel, cancel)
			}
			start := time.Now()
			tr := Run(ctx, lo, tt.w)
			took := time.Since(start)
			t.Logf("%+v", tr)
			if tr.Outcome != tt.want || tr.Detail != tt.detail {
				t.Errorf("Outcome = %v (%s), want %v (%s)", tr.Outcome, tr.Detail, tt.want, tt.detail)
			}
			if took > tt.maxTime {
				t.Errorf("Run took %v, want at most %v", took, tt.maxTime)
			}
		})
	}
}

func TestRunRefused(t *testing.T) {
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			l := listen(t, lo.addr, 0)
			p := port(l)
			l.Close() // nothing listens: the SYN gets a RST
			tr := Run(context.Background(), lo.addr, Workload{Proto: TCP, Port: p})
			if tr.Outcome != Refused {
				t.Errorf("Outcome = %v (%s), want refused", tr.Outcome, tr.Detail)
			}
		})
	}
}

func TestRunMark(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	l := listen(t, lo, 0)
	serve(t, l, sink)
	root := os.Geteuid() == 0
	tests := []struct {
		name   string
		root   bool // run as root only, else unprivileged only
		want   Outcome
		mark   uint32 // read back
		detail string
	}{
		{name: "applied", root: true, want: Completed, mark: 0x123},
		{name: "not permitted", root: false, want: Failed, detail: "SO_MARK 0x123: operation not permitted (needs CAP_NET_ADMIN)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root != root {
				t.Skipf("skipping: needs root %v, running as root %v", tt.root, root)
			}
			tr := Run(context.Background(), lo, Workload{Proto: TCP, Port: port(l), Bytes: 64 << 10, Mark: 0x123})
			if tr.Outcome != tt.want || tr.Mark != tt.mark || tt.detail != "" && tr.Detail != tt.detail {
				t.Errorf("Outcome = %v (%s), Mark = %#x, want %v (%s), %#x", tr.Outcome, tr.Detail, tr.Mark, tt.want, tt.detail, tt.mark)
			}
		})
	}
}

func TestDialFailure(t *testing.T) {
	connect := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp4", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		name   string
		err    error
		want   Outcome
		detail string
	}{
		{"RST", connect(unix.ECONNREFUSED), Refused, "connection refused (RST to SYN)"},
		{"SYN retries exhausted", connect(unix.ETIMEDOUT), Unreachable, "no answer to SYN within the connect timeout"},
		{"dialer timeout", &net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, Unreachable, "no answer to SYN within the connect timeout"},
		{"ICMP host unreachable", connect(unix.EHOSTUNREACH), Unreachable, "connect: no route to host"},
		{"no route", connect(unix.ENETUNREACH), Unreachable, "connect: network is unreachable"},
		{"mark not permitted", &net.OpError{Op: "dial", Err: &markError{0x10, unix.EPERM}}, Failed,
			"SO_MARK 0x10: operation not permitted (needs CAP_NET_ADMIN)"},
		{"no such local address", connect(unix.EADDRNOTAVAIL), Failed,
			"connect: dial tcp4: connect: cannot assign requested address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, detail := dialFailure(context.Background(), tt.err)
			if got != tt.want || detail != tt.detail {
				t.Errorf("dialFailure = %v, %q, want %v, %q", got, detail, tt.want, tt.detail)
			}
		})
	}
}

func TestWorkloadWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		w    Workload
		want Workload // the fields checked: Port, Bytes, Stall, Timeout
		err  string   // substring; "" = no error
	}{
		{
			name: "SMTP defaults",
			w:    Workload{Helo: "mx.example.org", RcptTo: "postmaster@example.net"},
			want: Workload{Port: 25, Bytes: 2 << 20, Stall: 10 * time.Second, Timeout: 82 * time.Second},
		},
		{
			name: "default timeout capped",
			w:    Workload{Proto: TCP, Bytes: MaxBytes},
			want: Workload{Port: 25, Bytes: MaxBytes, Stall: 10 * time.Second, Timeout: MaxTimeout},
		},
		{name: "body over the bound", w: Workload{Proto: TCP, Bytes: MaxBytes + 1}, err: "outside 1..67108864"},
		{name: "negative body", w: Workload{Proto: TCP, Bytes: -1}, err: "outside 1..67108864"},
		{name: "timeout over the bound", w: Workload{Proto: TCP, Timeout: MaxTimeout + 1}, err: "timeout 5m0.000000001s is outside"},
		{name: "no recipient", w: Workload{Helo: "mx.example.org"}, err: "needs a recipient"},
		{name: "recipient in brackets", w: Workload{Helo: "h", RcptTo: "<a@b>"}, err: "not a bare address"},
		{name: "EHLO name with a line break", w: Workload{Helo: "h\r\nRSET", RcptTo: "a@b"}, err: "white space"},
		{name: "unknown protocol", w: Workload{Proto: 7}, err: "unknown protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.w.WithDefaults()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Port != tt.want.Port || got.Bytes != tt.want.Bytes || got.Stall != tt.want.Stall || got.Timeout != tt.want.Timeout {
				t.Errorf("got Port %d Bytes %d Stall %v Timeout %v, want %d %d %v %v",
					got.Port, got.Bytes, got.Stall, got.Timeout, tt.want.Port, tt.want.Bytes, tt.want.Stall, tt.want.Timeout)
			}
		})
	}
}

func TestRunFailed(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name   string
		addr   netip.Addr
		w      Workload
		detail string
	}{
		{"body over the bound", lo, Workload{Proto: TCP, Bytes: MaxBytes + 1}, "probe: body of 67108865 bytes is outside 1..67108864 (64 MiB)"},
		{"no address", netip.Addr{}, Workload{Proto: TCP}, "probe: no address to test"},
		{"source of the other family", lo, Workload{Proto: TCP, Local: netip.MustParseAddr("::1")},
			"probe: source address ::1 is not of the family of 127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := Run(context.Background(), tt.addr, tt.w)
			if tr.Outcome != Failed || tr.Detail != tt.detail {
				t.Errorf("Outcome = %v (%s), want failed (%s)", tr.Outcome, tr.Detail, tt.detail)
			}
		})
	}
}

func TestProtoText(t *testing.T) {
	tests := []struct {
		name string
		text string
		want Proto
		err  bool
	}{
		{"smtp", "smtp", SMTP, false},
		{"tcp", "tcp", TCP, false},
		{"upper case", "SMTP", 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Proto
			err := p.UnmarshalText([]byte(tt.text))
			if (err != nil) != tt.err || p != tt.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v, want %v, error %v", tt.text, p, err, tt.want, tt.err)
			}
			if err == nil && p.String() != tt.text {
				t.Errorf("String() = %q, want %q", p.String(), tt.text)
			}
		})
	}
}

func TestOutcomeString(t *testing.T) {
	var zero Outcome
	if zero.String() != "none" || Completed.String() != "completed" || Failed.String() != "failed" || Outcome(99).String() != "Outcome(99)" {
		t.Errorf("names: %v %v %v %v", zero, Completed, Failed, Outcome(99))
	}
}
