//go:build linux

package netns

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// captureSnap is how much of each frame a capture keeps: every header, no
// payload, so a 20 MB transfer costs a few MB.
const captureSnap = 256

// Frame is one captured Ethernet frame, cut to captureSnap bytes.
type Frame struct {
	Time     time.Time
	Outgoing bool // sent by the capturing interface's host
	OrigLen  int
	Data     []byte
}

// Capture records the frames of one interface in a namespace with an
// AF_PACKET socket, like tcpdump -i IFACE would.
type Capture struct {
	fd     int
	stopc  chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	frames []Frame
}

// StartCapture starts capturing on interface ifname in namespace ns.
func StartCapture(ns, ifname string) (*Capture, error) {
	proto := int(htons(unix.ETH_P_ALL))
	fd := -1
	err := InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("capture socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			fd = -1
			return fmt.Errorf("capture bind %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture in %s: %w", ns, err)
	}
	tv := unix.Timeval{Usec: 50000}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	c := &Capture{fd: fd, stopc: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) loop() {
	defer close(c.done)
	buf := make([]byte, 1<<16+128)
	for {
		select {
		case <-c.stopc:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, unix.MSG_TRUNC)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		f := Frame{Time: time.Now(), OrigLen: n}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			f.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		keep := min(n, captureSnap, len(buf))
		f.Data = append([]byte(nil), buf[:keep]...)
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// Stop ends the capture and returns its frames. Safe to call twice.
func (c *Capture) Stop() []Frame {
	select {
	case <-c.stopc:
	default:
		close(c.stopc)
		<-c.done
		unix.Close(c.fd)
	}
	return c.Frames()
}

// Frames returns the frames captured so far.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// WritePcap writes frames as a pcap file (Ethernet link type).
func WritePcap(w io.Writer, frames []Frame) error {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(captureSnap, layers.LinkTypeEthernet); err != nil {
		return err
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: f.Time, CaptureLength: len(f.Data), Length: f.OrigLen}
		if err := pw.WritePacket(ci, f.Data); err != nil {
			return err
		}
	}
	return nil
}
