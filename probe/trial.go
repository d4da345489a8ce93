//go:build linux

package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds and defaults of a Workload.
const (
	DefaultPort    = 25
	DefaultBytes   = 2 << 20
	MaxBytes       = 64 << 20
	DefaultStall   = 10 * time.Second
	MaxTimeout     = 5 * time.Minute
	ConnectTimeout = 10 * time.Second // no answer to the SYN for this long: Unreachable (at most; see connectTimeout)

	// dialogueTime is allowed for the SMTP commands around the body: a
	// server may pause its banner for a while on purpose (greet pause).
	dialogueTime = 30 * time.Second
	// slowFloor is the slowest transfer the default timeout allows for.
	slowFloor = 64 << 10 // bytes per second
	// pollInterval is how often the watcher reads TCP_INFO.
	pollInterval = 100 * time.Millisecond
	// drainInterval is how often the trial looks for the last ACK after
	// the last write, finer than pollInterval so as not to pad Duration.
	drainInterval = 5 * time.Millisecond
)

// Proto is what a trial speaks to the peer.
type Proto uint8

const (
	SMTP Proto = iota // banner, EHLO, MAIL, RCPT, then a body never completed
	TCP               // the body alone, to a peer that just reads
)

func (p Proto) String() string {
	switch p {
	case SMTP:
		return "smtp"
	case TCP:
		return "tcp"
	}
	return fmt.Sprintf("Proto(%d)", uint8(p))
}

// MarshalText makes a Proto its name in JSON and TOML.
func (p Proto) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText accepts "smtp" and "tcp".
func (p *Proto) UnmarshalText(b []byte) error {
	switch string(b) {
	case "smtp":
		*p = SMTP
	case "tcp":
		*p = TCP
	default:
		return fmt.Errorf("probe: protocol %q is neither \"smtp\" nor \"tcp\"", b)
	}
	return nil
}

// Workload is what one trial sends.
type Workload struct {
	Proto   Proto         // SMTP (default) or TCP
	Port    uint16        // default DefaultPort
	Bytes   int64         // body size, default DefaultBytes, at most MaxBytes
	Stall   time.Duration // nothing acknowledged for this long while data is outstanding: Stalled (default DefaultStall)
	Timeout time.Duration // bound on the whole trial, at most MaxTimeout (default: from Bytes at a slow 64 KiB/s)
	Helo    string        // EHLO name (default: os.Hostname)
	RcptTo  string        // RCPT TO address, e.g. postmaster@example.net (required for SMTP)
	Mark    uint32        // SO_MARK for the socket; 0 = none (setting it needs CAP_NET_ADMIN)
	Local   netip.Addr    // optional source address
}

// WithDefaults returns w with its defaults filled in, or an error when w is
// out of bounds or incomplete.
func (w Workload) WithDefaults() (Workload, error) {
	if w.Proto != SMTP && w.Proto != TCP {
		return w, fmt.Errorf("probe: unknown protocol %v", w.Proto)
	}
	if w.Port == 0 {
		w.Port = DefaultPort
	}
	if w.Bytes == 0 {
		w.Bytes = DefaultBytes
	}
	if w.Bytes < 0 || w.Bytes > MaxBytes {
		return w, fmt.Errorf("probe: body of %d bytes is outside 1..%d (64 MiB)", w.Bytes, MaxBytes)
	}
	if w.Stall == 0 {
		w.Stall = DefaultStall
	}
	if w.Stall < 0 || w.Stall >= MaxTimeout {
		return w, fmt.Errorf("probe: stall bound %v is outside 0..%v", w.Stall, MaxTimeout)
	}
	if w.Timeout == 0 {
		w.Timeout = min(MaxTimeout,
			ConnectTimeout+dialogueTime+w.Stall+time.Duration(w.Bytes)*time.Second/slowFloor)
	}
	if w.Timeout < 0 || w.Timeout > MaxTimeout {
		return w, fmt.Errorf("probe: timeout %v is outside 0..%v", w.Timeout, MaxTimeout)
	}
	if w.Proto == SMTP {
		if w.Helo == "" {
			h, err := os.Hostname()
			if err != nil || h == "" {
				return w, fmt.Errorf("probe: no EHLO name and no host name: %v", err)
			}
			w.Helo = h
		}
		if strings.ContainsAny(w.Helo, " \t\r\n") {
			return w, fmt.Errorf("probe: EHLO name %q contains white space", w.Helo)
		}
		if w.RcptTo == "" {
			return w, errors.New("probe: SMTP needs a recipient (RcptTo)")
		}
		if strings.ContainsAny(w.RcptTo, " \t\r\n<>") {
			return w, fmt.Errorf("probe: recipient %q is not a bare address", w.RcptTo)
		}
	}
	return w, nil
}

// Outcome is what a trial found. The zero Outcome is none: a Trial that
// was never run is not Completed.
type Outcome uint8

const (
	_            Outcome = iota
	Completed            // the peer's TCP acknowledged the whole body (tcpi_bytes_acked covers it)
	Stalled              // nothing acknowledged for Stall while data was outstanding, or the trial timed out in the body
	Refused              // connection refused (RST to SYN)
	Unreachable          // no answer to the SYN, ICMP unreachable, no route
	Inconclusive         // the SMTP session never reached the body, or the server ended it early
	Failed               // local error (socket, permission, cancellation, bad workload)
	Degraded             // the whole body acknowledged, but DegradedRetrans or more of its segments retransmitted
)

var outcomeNames = [...]string{"none", "completed", "stalled", "refused", "unreachable", "inconclusive", "failed", "degraded"}

// DegradedRetrans is the share of retransmitted segments from which a
// delivered body counts as Degraded: the path throws away data a working
// connection does not lose (a window-limit firewall dropping everything
// beyond the window it computes), many times plain loss (a path losing 2%
// retransmits about as much).
const DegradedRetrans = 0.10

// retransShare is the retransmitted segments over the segments the
// acknowledged bytes took.
func (t Trial) retransShare() float64 {
	if t.SndMSS == 0 || t.BytesAcked == 0 {
		return 0
	}
	segs := float64(t.BytesAcked) / float64(t.SndMSS)
	return float64(t.Retrans) / max(segs, 1)
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// MarshalText makes an Outcome its name in JSON.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Trial is one test connection as the kernel saw it. The TCP_INFO fields
// are read when the outcome is decided: at the last ACK, at the stall, or
// at the timeout.
type Trial struct {
	Outcome       Outcome
	Detail        string // why, e.g. "RCPT TO: 550 5.1.1 user unknown" or "no ACK for 10s after 187 KiB of the body"
	Local, Remote netip.AddrPort
	Started       time.Time
	Duration      time.Duration
	BodyVia       string // "BDAT" or "DATA" when an SMTP body was started; empty otherwise
	BodyBytes     int64  // body bytes handed to the socket
	BytesAcked    uint64 // tcpi_bytes_acked: the SYN, the SMTP commands and the body
	Retrans       uint32 // tcpi_total_retrans
	WindowScaling bool   // window scaling negotiated (tcpi_options); the shifts are 0 without it
	SndWscale     uint8  // tcpi_snd_wscale: the peer's shift
	RcvWscale     uint8  // tcpi_rcv_wscale: our shift
	Timestamps    bool   // negotiated (tcpi_options)
	SACK          bool   // negotiated (tcpi_options)
	SndMSS        uint32
	SndWnd        uint32        // tcpi_snd_wnd: the peer's last window, scaled; 0 before Linux 5.4
	RTT           time.Duration // tcpi_rtt, smoothed
	RwndLimited   time.Duration // tcpi_rwnd_limited: time the receive window held the sender back
	AckedAtStall  uint64        // tcpi_bytes_acked when the stall was called; 0 without a stall
	Mark          uint32        // SO_MARK read back from the socket
}

// Run runs one trial against addr. It never panics and always closes its
// socket. Cancelling ctx ends the trial at once: Failed, "cancelled during
// ...", with the kernel's view at that moment.
func Run(ctx context.Context, addr netip.Addr, w Workload) (t Trial) {
	t.Started = time.Now()
	defer func() {
		if p := recover(); p != nil {
			t.Outcome, t.Detail = Failed, fmt.Sprintf("internal error: %v", p)
		}
		t.Duration = time.Since(t.Started)
	}()
	addr = addr.Unmap()
	w, err := w.WithDefaults()
	t.Remote = netip.AddrPortFrom(addr, w.Port)
	switch {
	case err != nil:
	case !addr.IsValid():
		err = errors.New("probe: no address to test")
	case w.Local.IsValid() && w.Local.Unmap().Is4() != addr.Is4():
		err = fmt.Errorf("probe: source address %v is not of the family of %v", w.Local, addr)
	}
	if err != nil {
		t.Outcome, t.Detail = Failed, err.Error()
		return t
	}

	ctx, cancel := context.WithTimeoutCause(ctx, w.Timeout, errTrialTimeout)
	defer cancel()
	conn, err := dial(ctx, addr, w)
	if err != nil {
		t.Outcome, t.Detail = dialFailure(ctx, err)
		return t
	}
	defer conn.Close()
	t.Local = conn.LocalAddr().(*net.TCPAddr).AddrPort()
	t.Local = netip.AddrPortFrom(t.Local.Addr().Unmap(), t.Local.Port())

	r := &run{w: w, conn: conn, ended: make(chan struct{})}
	r.cc = countingConn{conn, &r.sent, &r.writing}
	if r.raw, err = conn.SyscallConn(); err == nil {
		var ti tcpInfo
		ti, err = readTCPInfo(r.raw)
		r.base = ti.bytesAcked // 1 on Linux: the SYN
	}
	if err != nil {
		t.Outcome, t.Detail = Failed, fmt.Sprintf("TCP_INFO: %v", err)
		return t
	}
	t.Mark, _ = readMark(r.raw)

	stop := make(chan struct{})
	var watching sync.WaitGroup
	watching.Go(func() { r.watch(ctx, stop) })
	defer func() {
		close(stop)
		watching.Wait()
	}()

	switch w.Proto {
	case SMTP:
		r.mail(ctx, &t)
	case TCP:
		r.tcp(&t)
	}
	return t
}

// errTrialTimeout is the cause of the trial's context when Timeout ran out.
var errTrialTimeout = errors.New("trial timed out")

// connectTimeout is how long a trial waits for a SYN-ACK: twice the stall
// bound, at least 3 s (the SYN and two retransmissions, RFC 6298's 1 s
// initial timeout doubling), at most ConnectTimeout. A SYN the path drops
// for its options costs every variant's trial this long.
func connectTimeout(w Workload) time.Duration {
	return min(max(2*w.Stall, 3*time.Second), ConnectTimeout)
}

// dial connects to addr with the workload's mark and source address.
func dial(ctx context.Context, addr netip.Addr, w Workload) (*net.TCPConn, error) {
	network := "tcp4"
	if addr.Is6() {
		network = "tcp6"
	}
	d := net.Dialer{Timeout: connectTimeout(w), KeepAlive: -1}
	if w.Local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(w.Local.Unmap(), 0))
	}
	if w.Mark != 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(w.Mark))
			})
			if err == nil {
				err = serr
			}
			if err != nil {
				return &markError{w.Mark, err}
			}
			return nil
		}
	}
	c, err := d.DialContext(ctx, network, netip.AddrPortFrom(addr, w.Port).String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// markError is a failure to set SO_MARK, told apart from the connect's.
type markError struct {
	mark uint32
	err  error
}

func (e *markError) Error() string {
	if errors.Is(e.err, unix.EPERM) {
		return fmt.Sprintf("SO_MARK %#x: %v (needs CAP_NET_ADMIN)", e.mark, e.err)
	}
	return fmt.Sprintf("SO_MARK %#x: %v", e.mark, e.err)
}

func (e *markError) Unwrap() error { return e.err }

// dialFailure classifies a failed connect.
func dialFailure(ctx context.Context, err error) (Outcome, string) {
	var me *markError
	var ne net.Error
	switch {
	case errors.As(err, &me):
		return Failed, me.Error()
	case context.Cause(ctx) == errTrialTimeout:
		return Unreachable, fmt.Sprintf("no answer to SYN within the trial's timeout: %v", err)
	case ctx.Err() != nil:
		return Failed, "cancelled while connecting"
	case errors.Is(err, unix.ECONNREFUSED):
		return Refused, "connection refused (RST to SYN)"
	case errors.Is(err, unix.ETIMEDOUT), errors.As(err, &ne) && ne.Timeout():
		return Unreachable, "no answer to SYN within the connect timeout"
	case errors.Is(err, unix.EHOSTUNREACH), errors.Is(err, unix.ENETUNREACH),
		errors.Is(err, unix.EHOSTDOWN), errors.Is(err, unix.ENETDOWN):
		return Unreachable, fmt.Sprintf("connect: %v", errnoOf(err))
	}
	return Failed, fmt.Sprintf("connect: %v", err)
}

// errnoOf is the errno inside err, or err when there is none: "connect:
// no route to host" says more than the whole chain of wrappers.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// countingConn counts the bytes handed to the socket, so that the trial
// can compare them with tcpi_bytes_acked.
type countingConn struct {
	*net.TCPConn
	sent    *atomic.Int64
	writing *atomic.Bool // a Write is blocked on a full send buffer: data is outstanding
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writing.Store(true)
	n, err := c.TCPConn.Write(b)
	c.writing.Store(false)
	c.sent.Add(int64(n))
	return n, err
}

// Close does nothing: the trial closes the socket itself, after reading
// TCP_INFO, and go-smtp's client closes it on a refused banner.
func (c countingConn) Close() error { return nil }

// A trickle is a stall too: a path that lets through a segment now and
// then (a black hole for large segments, a window clamped to nothing) acks
// too little to ever deliver the body, and would otherwise hold the trial
// until its timeout. Less than one initial window's worth in 5 × Stall is
// 1.3 KiB/s at the default Stall: no working path is that slow.
const (
	trickleBytes  = 64 << 10
	trickleStalls = 5
)

// ending is why the watcher ended a trial.
type ending uint8

const (
	running   ending = iota
	stalled          // nothing acknowledged for Stall
	trickled         // less than trickleBytes acknowledged in trickleStalls × Stall
	timedOut         // Timeout ran out
	cancelled        // the caller cancelled
)

// run is the state of one trial. The trial's goroutine does the I/O; the
// watcher only reads TCP_INFO and, to end the trial, closes the socket.
type run struct {
	w       Workload
	conn    *net.TCPConn
	cc      countingConn // conn, counted
	raw     syscall.RawConn
	base    uint64       // tcpi_bytes_acked after the handshake
	sent    atomic.Int64 // bytes handed to the socket: commands and body
	writing atomic.Bool  // a Write is in progress (sent does not count it yet)

	bodyFrom int64 // sent when the body began: the commands before it
	body     int64 // body bytes handed to the socket

	ended chan struct{} // closed once why and last are set
	mu    sync.Mutex
	why   ending
	last  tcpInfo // when the watcher ended the trial
}

// acked is how many bytes past the handshake the peer has acknowledged.
func (r *run) acked(ti tcpInfo) int64 { return int64(ti.bytesAcked - r.base) }

// watch runs beside the trial until stop: it reads TCP_INFO every
// pollInterval and ends the trial on a stall or when ctx is done.
func (r *run) watch(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last int64
	since := time.Now()
	type sample struct {
		t     time.Time
		acked int64
	}
	var window []sample // the acked counts of the last trickleStalls × Stall
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			why := cancelled
			if context.Cause(ctx) == errTrialTimeout {
				why = timedOut
			}
			r.end(why)
			return
		case now := <-tick.C:
			ti, err := readTCPInfo(r.raw)
			if err != nil {
				continue // closed: the trial is finishing
			}
			acked := r.acked(ti)
			// Outstanding: written and not acknowledged, or a Write
			// blocked on a send buffer that never drains.
			outstanding := r.sent.Load() > acked || r.writing.Load()
			if !outstanding {
				window = window[:0]
			} else {
				window = append(window, sample{now, acked})
				span := trickleStalls * r.w.Stall
				for len(window) > 1 && now.Sub(window[1].t) >= span {
					window = window[1:]
				}
				if now.Sub(window[0].t) >= span && acked-window[0].acked < trickleBytes {
					r.end(trickled)
					return
				}
			}
			if acked != last || !outstanding {
				last, since = acked, now
				continue
			}
			if now.Sub(since) >= r.w.Stall {
				r.end(stalled)
				return
			}
		}
	}
}

// end records why the trial ends and the kernel's view at that moment,
// then closes the socket, which fails the trial's pending I/O.
func (r *run) end(why ending) {
	r.mu.Lock()
	if r.why == running {
		r.why = why
		r.last, _ = readTCPInfo(r.raw)
		close(r.ended)
	}
	r.mu.Unlock()
	r.conn.Close()
}

// endedBy reports whether the watcher ended the trial, and why.
func (r *run) endedBy() (ending, tcpInfo) {
	select {
	case <-r.ended:
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.why, r.last
	default:
		return running, tcpInfo{}
	}
}

// tcp is a trial of Proto TCP: the body, then the last ACK.
func (r *run) tcp(t *Trial) {
	r.bodyFrom = r.sent.Load()
	if err := r.writeBody(r.cc, r.w.Bytes, newMessage(r.w, t.Started)); err != nil {
		r.fail(t, "the body", err)
		return
	}
	r.complete(t)
}

// writeBody hands n bytes of m to w, counting them in r.body.
func (r *run) writeBody(w io.Writer, n int64, m *message) error {
	buf := make([]byte, min(n, 64<<10))
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		m.fill(b)
		k, err := w.Write(b)
		r.body += int64(k)
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// complete waits until the peer has acknowledged everything handed to the
// socket, then records a Completed trial. The watcher bounds the wait.
func (r *run) complete(t *Trial) bool {
	tick := time.NewTicker(drainInterval)
	defer tick.Stop()
	for {
		ti, err := readTCPInfo(r.raw)
		if err != nil {
			r.fail(t, "the wait for the last ACK", err)
			return false
		}
		if r.acked(ti) >= r.sent.Load() {
			r.record(t, ti)
			t.Outcome = Completed
			t.Detail = fmt.Sprintf("%s of the body acknowledged in %v", kib(r.body),
				time.Since(t.Started).Round(time.Millisecond))
			if share := t.retransShare(); share >= DegradedRetrans {
				t.Outcome = Degraded
				t.Detail += fmt.Sprintf(", %.0f%% of the segments retransmitted", 100*share)
			}
			return true
		}
		select {
		case <-r.ended:
			r.fail(t, "the wait for the last ACK", net.ErrClosed)
			return false
		case <-tick.C:
		}
	}
}

// record copies the kernel's view and the body count into t.
func (r *run) record(t *Trial, ti tcpInfo) {
	ti.fill(t)
	t.BodyBytes = r.body
}

// fail records a trial that ended in step with err: the watcher's reason
// when it ended the trial, else what err says about the peer.
func (r *run) fail(t *Trial, step string, err error) {
	why, ti := r.endedBy()
	if why == running {
		// The trial's own failure; the socket is still open.
		ti, _ = readTCPInfo(r.raw)
	}
	r.record(t, ti)
	inBody := r.body > 0 || step == "the body"
	bodyAcked := max(0, r.acked(ti)-r.bodyFrom)
	var smtpErr *smtpError
	switch {
	case why == trickled:
		t.Outcome = Stalled
		t.AckedAtStall = ti.bytesAcked
		t.Detail = fmt.Sprintf("less than %s acknowledged in %v, after %s of the body", kib(trickleBytes), trickleStalls*r.w.Stall, kib(bodyAcked))
	case why == stalled:
		t.Outcome = Stalled
		t.AckedAtStall = ti.bytesAcked
		if inBody {
			t.Detail = fmt.Sprintf("no ACK for %v after %s of the body", r.w.Stall, kib(bodyAcked))
		} else {
			t.Detail = fmt.Sprintf("no ACK for %v during %s", r.w.Stall, step)
		}
	case why == timedOut && inBody && r.acked(ti) >= r.sent.Load():
		t.Outcome = Inconclusive
		t.Detail = fmt.Sprintf("timed out after %v waiting for the reply to %s; all sent was acknowledged",
			r.w.Timeout, step)
	case why == timedOut && inBody:
		t.Outcome = Stalled
		t.Detail = fmt.Sprintf("timed out after %v with %s of %s of the body acknowledged",
			r.w.Timeout, kib(bodyAcked), kib(r.w.Bytes))
	case why == timedOut:
		t.Outcome = Inconclusive
		t.Detail = fmt.Sprintf("timed out after %v during %s", r.w.Timeout, step)
	case why == cancelled:
		t.Outcome = Failed
		t.Detail = fmt.Sprintf("cancelled during %s", step)
	case errors.As(err, &smtpErr):
		t.Outcome = Inconclusive
		t.Detail = smtpErr.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, unix.ECONNRESET), errors.Is(err, unix.EPIPE):
		t.Outcome = Inconclusive
		if inBody {
			t.Detail = fmt.Sprintf("the server closed the connection after %s of the body", kib(bodyAcked))
		} else {
			t.Detail = fmt.Sprintf("the server closed the connection during %s", step)
		}
	default:
		t.Outcome = Inconclusive
		t.Detail = fmt.Sprintf("%s: %v", step, err)
	}
}

// kib formats a byte count for a Detail.
func kib(n int64) string {
	if n >= 10<<20 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
