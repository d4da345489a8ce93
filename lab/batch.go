//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// Batch is transfers running at once to one listener on the server, the
// load of a mail relay with many connections open.
type Batch struct {
	results   []TransferResult
	ln        net.Listener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	dialed    sync.WaitGroup
	connected chan struct{}
	completed atomic.Int32

	mu      sync.Mutex
	pending map[string]chan net.Conn // accepted connections by the client's address
}

// StartBatch starts every transfer of ts at once. They must share Dst and
// Port; each has its own direction, size, seed and timeout. It returns once
// the transfers are dialling; Wait returns their outcomes.
func (l *Lab) StartBatch(ctx context.Context, ts []Transfer) (*Batch, error) {
	if len(ts) == 0 {
		return nil, errors.New("lab: empty batch")
	}
	for i := range ts {
		ts[i] = ts[i].withDefaults()
		if ts[i].Dst != ts[0].Dst || ts[i].Port != ts[0].Port {
			return nil, fmt.Errorf("lab: batch transfer %d goes to %s port %d, the first to %s port %d",
				i, ts[i].Dst, ts[i].Port, ts[0].Dst, ts[0].Port)
		}
	}
	dst := netip.AddrPortFrom(ts[0].Dst, ts[0].Port)
	b := &Batch{results: make([]TransferResult, len(ts)), connected: make(chan struct{}), pending: map[string]chan net.Conn{}}
	if err := netns.InNetns(l.Server, func() error {
		var err error
		b.ln, err = net.Listen("tcp", dst.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("server listen: %w", err)
	}
	ctx, b.cancel = context.WithCancel(ctx)
	go b.accept()
	b.dialed.Add(len(ts))
	b.wg.Add(len(ts))
	for i, t := range ts {
		go b.run(ctx, l.Client, dst, i, t)
	}
	go func() {
		b.dialed.Wait()
		close(b.connected)
	}()
	return b, nil
}

// accept hands every accepted connection to the transfer that dialled it.
func (b *Batch) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.conn(c.RemoteAddr().String()) <- c
	}
}

// conn is the hand-over channel for the client at addr.
func (b *Batch) conn(addr string) chan net.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.pending[addr]
	if ch == nil {
		ch = make(chan net.Conn, 1)
		b.pending[addr] = ch
	}
	return ch
}

func (b *Batch) run(ctx context.Context, ns string, dst netip.AddrPort, i int, t Transfer) {
	defer b.wg.Done()
	res := &b.results[i]
	res.Transfer = t
	data, want := payload(t)
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	start := time.Now()
	var cli net.Conn
	var err error
	if nerr := netns.InNetns(ns, func() error {
		var d net.Dialer
		cli, err = d.DialContext(ctx, "tcp", dst.String())
		return nil
	}); nerr != nil {
		err = nerr
	}
	b.dialed.Done()
	if err != nil {
		res.Elapsed, res.Err = time.Since(start), err
		if ctx.Err() != nil {
			res.Err = fmt.Errorf("connect %s: %w", dst, ErrTimeout)
		}
		return
	}
	defer cli.Close()
	res.Connected = true
	var srv net.Conn
	select {
	case srv = <-b.conn(cli.LocalAddr().String()):
	case <-ctx.Done():
		res.Elapsed, res.Err = time.Since(start), fmt.Errorf("server accept: %w", ErrTimeout)
		return
	}
	defer srv.Close()
	exchange(res, cli, srv, data, want, start, deadline)
	if res.OK {
		b.completed.Add(1)
	}
}

// Connected is closed once every transfer's handshake completed or failed.
func (b *Batch) Connected() <-chan struct{} { return b.connected }

// Completed is how many transfers have completed so far.
func (b *Batch) Completed() int { return int(b.completed.Load()) }

// Wait waits for every transfer to end and returns their outcomes, in the
// order they were given.
func (b *Batch) Wait() []TransferResult {
	b.wg.Wait()
	b.cancel()
	b.ln.Close()
	b.mu.Lock()
	for _, ch := range b.pending {
		select {
		case c := <-ch:
			c.Close()
		default:
		}
	}
	b.mu.Unlock()
	return b.results
}

// Outcome is how a transfer ended, as an operator counts them.
type Outcome uint8

const (
	Completed Outcome = iota // every byte arrived, checksum verified
	Stalled                  // still unfinished at its timeout
	Reset                    // the connection was reset or refused
	Broken                   // any other failure
)

func (o Outcome) String() string {
	return [...]string{"complete", "stalled", "reset", "broken"}[o]
}

// Outcome classifies r.
func (r TransferResult) Outcome() Outcome {
	switch {
	case r.OK:
		return Completed
	case errors.Is(r.Err, ErrTimeout):
		return Stalled
	case errors.Is(r.Err, syscall.ECONNRESET), errors.Is(r.Err, syscall.ECONNREFUSED), errors.Is(r.Err, syscall.EPIPE):
		return Reset
	}
	return Broken
}

// CountOutcomes counts rs by outcome.
func CountOutcomes(rs []TransferResult) map[Outcome]int {
	m := map[Outcome]int{}
	for _, r := range rs {
		m[r.Outcome()]++
	}
	return m
}
