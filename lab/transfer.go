//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// Direction of a transfer.
type Direction uint8

const (
	Upload   Direction = iota // client sends to server: outgoing mail
	Download                  // server sends to client
)

func (d Direction) String() string {
	if d == Download {
		return "download"
	}
	return "upload"
}

// Transfer describes one transfer between real sockets: the client in the
// client namespace, the server listening on Dst in the server namespace.
type Transfer struct {
	Dst     netip.Addr
	Port    uint16 // default SMTPPort
	Size    int    // bytes; default 20 MB
	Dir     Direction
	Timeout time.Duration // for everything from connect to the last byte; default 15s
	Seed    uint64        // payload generator seed
}

// DefaultSize is an SMTP-sized message: 20 MB.
const DefaultSize = 20 << 20

// DefaultTimeout ends a transfer that has not completed: it failed.
const DefaultTimeout = 15 * time.Second

// TransferResult is the outcome of a transfer.
type TransferResult struct {
	Transfer
	Received  int           // bytes that reached the receiving application
	Connected bool          // the handshake completed
	Elapsed   time.Duration // from connect to the last byte, or to the failure
	OK        bool          // all bytes arrived and their SHA-256 matches
	Err       error         // why it failed
}

// throughput is the bytes a second over Elapsed.
func (r TransferResult) throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received) / r.Elapsed.Seconds()
}

func (r TransferResult) String() string {
	if r.OK {
		return fmt.Sprintf("OK      %s of %s in %.2fs (%s), SHA-256 verified",
			r.Dir, fmtBytes(r.Size), r.Elapsed.Seconds(), fmtRate(r.throughput()))
	}
	what := "FAILED "
	if !r.Connected {
		return fmt.Sprintf("%s %s: no connection after %.2fs: %v", what, r.Dir, r.Elapsed.Seconds(), r.Err)
	}
	return fmt.Sprintf("%s %s: %s of %s arrived in %.2fs (%s): %v", what, r.Dir,
		fmtBytes(r.Received), fmtBytes(r.Size), r.Elapsed.Seconds(), fmtRate(r.throughput()), r.Err)
}

func fmtBytes(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func fmtRate(bps float64) string {
	mbit := bps * 8 / 1e6
	if mbit >= 1 {
		return fmt.Sprintf("%.1f Mbit/s", mbit)
	}
	return fmt.Sprintf("%.1f kbit/s", bps*8/1e3)
}

// ErrTimeout is a transfer that did not complete within its timeout.
var ErrTimeout = errors.New("timed out")

// Transfer runs t and reports its outcome; a failed transfer is a result,
// not an error. It returns an error only when the lab itself broke.
func (l *Lab) Transfer(ctx context.Context, t Transfer) (TransferResult, error) {
	p := t.Prepare()
	res := TransferResult{Transfer: p.Transfer}

	dst := netip.AddrPortFrom(p.Dst, p.Port)
	var ln net.Listener
	if err := netns.InNetns(l.Server, func() error {
		var err error
		ln, err = net.Listen("tcp", dst.String())
		return err
	}); err != nil {
		return res, fmt.Errorf("server listen: %w", err)
	}
	defer ln.Close()

	ctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	ln.(*net.TCPListener).SetDeadline(deadline)

	start := time.Now()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()

	var cli net.Conn
	var dialErr error
	if err := netns.InNetns(l.Client, func() error {
		var d net.Dialer
		cli, dialErr = d.DialContext(ctx, "tcp", dst.String())
		return nil
	}); err != nil {
		return res, fmt.Errorf("client dial: %w", err)
	}
	if dialErr != nil {
		res.Elapsed = time.Since(start)
		res.Err = dialErr
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("connect %s: %w", dst, ErrTimeout)
		}
		return res, nil
	}
	defer cli.Close()
	res.Connected = true
	srv := <-accepted
	if srv == nil {
		res.Elapsed = time.Since(start)
		res.Err = fmt.Errorf("server accept: %w", ErrTimeout)
		return res, nil
	}
	defer srv.Close()
	return p.Exchange(cli, srv, start, deadline), nil
}

// WithDefaults is t with its unset fields filled in: SMTPPort, DefaultSize,
// DefaultTimeout.
func (t Transfer) WithDefaults() Transfer {
	if t.Port == 0 {
		t.Port = SMTPPort
	}
	if t.Size <= 0 {
		t.Size = DefaultSize
	}
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	return t
}

// Prepared is a transfer ready to run over a connection: its defaults
// filled in and its data made from its seed, before the connection starts,
// so that making 20 MB of data is not timed.
type Prepared struct {
	Transfer
	data []byte
	sum  [sha256.Size]byte // of data, what the receiver must get
}

// Prepare fills in t's defaults and makes its data.
func (t Transfer) Prepare() Prepared {
	p := Prepared{Transfer: t.WithDefaults()}
	p.data = make([]byte, p.Size)
	rand.NewChaCha8([32]byte{byte(p.Seed), byte(p.Seed >> 8), byte(p.Seed >> 16), 'l', 'a', 'b'}).Read(p.data)
	p.sum = sha256.Sum256(p.data)
	return p
}

// Exchange sends p's data over the connected pair cli (the client's end)
// and srv in p's direction until deadline, and reports what arrived, when
// (Elapsed counts from start, before the connection), and why it fell
// short.
func (p Prepared) Exchange(cli, srv net.Conn, start, deadline time.Time) TransferResult {
	res := TransferResult{Transfer: p.Transfer, Connected: true}
	cli.SetDeadline(deadline)
	srv.SetDeadline(deadline)
	sender, receiver := cli, srv
	if res.Dir == Download {
		sender, receiver = srv, cli
	}
	sendErr := make(chan error, 1)
	go func() {
		_, err := sender.Write(p.data)
		if err == nil {
			err = sender.(*net.TCPConn).CloseWrite()
		}
		sendErr <- err
	}()
	h := sha256.New()
	n, rerr := io.Copy(h, receiver)
	res.Elapsed = time.Since(start)
	res.Received = int(n)
	// Unblock the sender whatever happened to the receiver.
	sender.SetDeadline(time.Now())
	serr := <-sendErr
	switch {
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		res.Err = ErrTimeout
	case rerr != nil:
		res.Err = fmt.Errorf("receive: %w", rerr)
	case res.Received != res.Size:
		res.Err = fmt.Errorf("received %d of %d bytes (send: %v)", res.Received, res.Size, serr)
	case !bytes.Equal(h.Sum(nil), p.sum[:]):
		res.Err = errors.New("SHA-256 mismatch")
	default:
		res.OK = true
	}
	return res
}
