//go:build linux

package e2e

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
	"github.com/tcpnorm/tcpnorm/lab"
)

// batch is transfers running at once to one listener on the lab's server,
// the load of a mail relay with many connections open.
type batch struct {
	results   []lab.TransferResult
	ln        net.Listener
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	dialed    sync.WaitGroup
	allDialed chan struct{} // closed once every transfer has dialed
	ok        atomic.Int32  // transfers completed

	mu      sync.Mutex
	pending map[string]chan net.Conn // accepted connections by the client's address
}

// startBatch starts every transfer of ts at once, from l's client. They
// must share Dst and Port; each has its own direction, size, seed and
// timeout. It returns once the transfers are dialling; wait returns their
// outcomes.
func startBatch(ctx context.Context, l *lab.Lab, ts []lab.Transfer) (*batch, error) {
	if len(ts) == 0 {
		return nil, errors.New("empty batch")
	}
	for i := range ts {
		ts[i] = ts[i].WithDefaults()
		if ts[i].Dst != ts[0].Dst || ts[i].Port != ts[0].Port {
			return nil, fmt.Errorf("batch transfer %d goes to %s port %d, the first to %s port %d",
				i, ts[i].Dst, ts[i].Port, ts[0].Dst, ts[0].Port)
		}
	}
	dst := netip.AddrPortFrom(ts[0].Dst, ts[0].Port)
	b := &batch{results: make([]lab.TransferResult, len(ts)), allDialed: make(chan struct{}), pending: map[string]chan net.Conn{}}
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
		close(b.allDialed)
	}()
	return b, nil
}

// accept hands every accepted connection to the transfer that dialled it.
func (b *batch) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.conn(c.RemoteAddr().String()) <- c
	}
}

// conn is the hand-over channel for the client at addr.
func (b *batch) conn(addr string) chan net.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := b.pending[addr]
	if ch == nil {
		ch = make(chan net.Conn, 1)
		b.pending[addr] = ch
	}
	return ch
}

func (b *batch) run(ctx context.Context, ns string, dst netip.AddrPort, i int, t lab.Transfer) {
	defer b.wg.Done()
	res := &b.results[i]
	res.Transfer = t
	p := t.Prepare()
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
			res.Err = fmt.Errorf("connect %s: %w", dst, lab.ErrTimeout)
		}
		return
	}
	defer cli.Close()
	res.Connected = true
	var srv net.Conn
	select {
	case srv = <-b.conn(cli.LocalAddr().String()):
	case <-ctx.Done():
		res.Elapsed, res.Err = time.Since(start), fmt.Errorf("server accept: %w", lab.ErrTimeout)
		return
	}
	defer srv.Close()
	*res = p.Exchange(cli, srv, start, deadline)
	if res.OK {
		b.ok.Add(1)
	}
}

// connected is closed once every transfer's handshake completed or failed.
func (b *batch) connected() <-chan struct{} { return b.allDialed }

// completed is how many transfers have completed so far.
func (b *batch) completed() int { return int(b.ok.Load()) }

// wait waits for every transfer to end and returns their outcomes, in the
// order they were given.
func (b *batch) wait() []lab.TransferResult {
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

// outcome is how a transfer ended, as an operator counts them.
type outcome uint8

const (
	outcomeComplete outcome = iota // every byte arrived, checksum verified
	outcomeStalled                 // still unfinished at its timeout
	outcomeReset                   // the connection was reset or refused
	outcomeBroken                  // any other failure
)

func (o outcome) String() string {
	return [...]string{"complete", "stalled", "reset", "broken"}[o]
}

// outcomeOf classifies r.
func outcomeOf(r lab.TransferResult) outcome {
	switch {
	case r.OK:
		return outcomeComplete
	case errors.Is(r.Err, lab.ErrTimeout):
		return outcomeStalled
	case errors.Is(r.Err, syscall.ECONNRESET), errors.Is(r.Err, syscall.ECONNREFUSED), errors.Is(r.Err, syscall.EPIPE):
		return outcomeReset
	}
	return outcomeBroken
}

// countOutcomes counts rs by outcome.
func countOutcomes(rs []lab.TransferResult) map[outcome]int {
	m := map[outcome]int{}
	for _, r := range rs {
		m[outcomeOf(r)]++
	}
	return m
}
