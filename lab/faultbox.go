//go:build linux

package lab

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// tsScramblePick chooses about one data segment in 16 by its sequence number:
// a retransmission of a chosen segment is chosen again, so it never arrives.
func tsScramblePick(seq uint32) bool {
	return (seq*2654435761)>>28 == 5
}

// tsScrambleAheadPick chooses another one in 16, for ts-scramble2's values
// into the future.
func tsScrambleAheadPick(seq uint32) bool {
	return (seq*2654435761)>>28 == 9
}

// faultBox is the NFQUEUE fault injector in the path namespace.
type faultBox struct {
	nf      *nfqueue.Nfqueue
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	changed atomic.Uint64
}

// heldPacket is a verdict the box issues once its time has come.
type heldPacket struct {
	id  uint32
	pkt []byte // nil: accepted unchanged
	at  time.Time
}

// holdBacklog bounds the packets held for the added RTT: far above the
// bandwidth-delay product of the lab's transfers (tens of MB/s for tens of
// milliseconds is a few hundred packets), below the kernel queue.
const (
	holdBacklog    = 16384
	faultQueueLen  = 32768
	faultRcvBuffer = 32 << 20
)

func startFaultBox(ns string, f Fault, opt PathOptions) (*faultBox, error) {
	fd, err := unix.Open(netns.Dir+"/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fault box: %w", err)
	}
	defer unix.Close(fd)
	var srvIndex uint32
	if err := netns.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(ifPathSrv)
		if err == nil {
			srvIndex = uint32(ifi.Index)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("fault box: %w", err)
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        fd,
		NfQueue:      faultQueue,
		MaxPacketLen: 0xffff,
		MaxQueueLen:  faultQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("fault box: open queue %d in %s: %w", faultQueue, ns, err)
	}
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close()
		return nil, fmt.Errorf("fault box: %w", err)
	}
	// Held packets wait in the kernel queue, not in the socket; the buffer
	// only has to absorb bursts the hook has not read yet.
	if rc, err := nf.Con.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, faultRcvBuffer)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	fb := &faultBox{nf: nf, cancel: cancel}
	var capBox *windowCap
	if f == FaultWScaleCap {
		capBox = newWindowCap(opt.WScaleCap)
	}
	delay := opt.RTT / 2
	var held chan heldPacket
	if delay > 0 {
		held = make(chan heldPacket, holdBacklog)
		fb.wg.Add(1)
		go fb.release(ctx, held)
	}
	accept := func(id uint32, pkt []byte) {
		if held != nil {
			select {
			case held <- heldPacket{id: id, pkt: pkt, at: time.Now().Add(delay)}:
			case <-ctx.Done():
			}
			return
		}
		if pkt != nil {
			nf.SetVerdictModPacket(id, nfqueue.NfAccept, pkt)
		} else {
			nf.SetVerdict(id, nfqueue.NfAccept)
		}
	}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		id := *a.PacketID
		if a.Payload == nil {
			accept(id, nil)
			return 0
		}
		pkt := *a.Payload
		fromServer := a.InDev != nil && *a.InDev == srvIndex
		var changed bool
		switch f {
		case FaultWScale:
			changed = fromServer && raiseWScale(pkt, wscaleFaultShift)
		case FaultTSScramble:
			changed = fromServer && scrambleTSval(pkt, tsScrambleBack, tsScramblePick)
		case FaultTSScramble2:
			changed = fromServer && (scrambleTSval(pkt, tsScrambleBack, tsScramblePick) ||
				scrambleTSval(pkt, ^uint32(tsScrambleAhead)+1, tsScrambleAheadPick))
		case FaultWScaleCap:
			if !capBox.forward(pkt) {
				fb.changed.Add(1)
				nf.SetVerdict(id, nfqueue.NfDrop)
				return 0
			}
		}
		if changed {
			fb.changed.Add(1)
			accept(id, append([]byte(nil), pkt...))
		} else {
			accept(id, nil)
		}
		return 0
	}
	errFn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
		cancel()
		fb.wg.Wait()
		nf.Close()
		return nil, fmt.Errorf("fault box: %w", err)
	}
	return fb, nil
}

// release issues the held verdicts in order, each at its time.
func (fb *faultBox) release(ctx context.Context, held <-chan heldPacket) {
	defer fb.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		var h heldPacket
		select {
		case h = <-held:
		case <-ctx.Done():
			return
		}
		if d := time.Until(h.at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		if h.pkt != nil {
			fb.nf.SetVerdictModPacket(h.id, nfqueue.NfAccept, h.pkt)
		} else {
			fb.nf.SetVerdict(h.id, nfqueue.NfAccept)
		}
	}
}

func (fb *faultBox) stop() {
	fb.cancel()
	fb.wg.Wait()
	fb.nf.Close()
}
