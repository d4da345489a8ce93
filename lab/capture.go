//go:build linux

package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/evidence"
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

// Capture records the frames of one interface in a lab namespace with an
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

// Segment is one captured TCP segment's header, decoded.
type Segment struct {
	Time     time.Time
	Outgoing bool
	Src, Dst netip.AddrPort
	Flags    string // tcpdump style: S, S., ., P., F., R
	SYN, ACK bool
	Seq, Ack uint32
	Window   uint16
	Len      int // payload bytes per the IP header
	MSS      int // -1: no option
	WScale   int // -1: no option
	SACKOK   bool
	TS       bool
	TSval    uint32
	Options  string // tcpdump style, e.g. "mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7"
}

// Segments decodes the TCP segments among frames.
func Segments(frames []Frame) []Segment {
	var out []Segment
	for _, f := range frames {
		p := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
		var src, dst netip.Addr
		var ipPayload int
		switch ip := p.NetworkLayer().(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(ip.SrcIP.To4())
			dst, _ = netip.AddrFromSlice(ip.DstIP.To4())
			ipPayload = int(ip.Length) - int(ip.IHL)*4
		case *layers.IPv6:
			src, _ = netip.AddrFromSlice(ip.SrcIP)
			dst, _ = netip.AddrFromSlice(ip.DstIP)
			ipPayload = int(ip.Length)
		default:
			continue
		}
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !ok {
			continue
		}
		s := Segment{
			Time: f.Time, Outgoing: f.Outgoing,
			Src: netip.AddrPortFrom(src, uint16(tcp.SrcPort)),
			Dst: netip.AddrPortFrom(dst, uint16(tcp.DstPort)),
			SYN: tcp.SYN, ACK: tcp.ACK, Seq: tcp.Seq, Ack: tcp.Ack, Window: tcp.Window,
			Len: max(0, ipPayload-int(tcp.DataOffset)*4),
			MSS: -1, WScale: -1,
		}
		s.Flags = evidence.Flags(tcp)
		for _, o := range tcp.Options {
			switch {
			case o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2:
				s.MSS = int(binary.BigEndian.Uint16(o.OptionData))
			case o.OptionType == layers.TCPOptionKindWindowScale && len(o.OptionData) == 1:
				s.WScale = int(o.OptionData[0])
			case o.OptionType == layers.TCPOptionKindSACKPermitted:
				s.SACKOK = true
			case o.OptionType == layers.TCPOptionKindTimestamps && len(o.OptionData) == 8:
				s.TS = true
				s.TSval = binary.BigEndian.Uint32(o.OptionData)
			}
		}
		s.Options = evidence.Options(tcp.Options)
		out = append(out, s)
	}
	return out
}

func (s Segment) String() string {
	dir := "in "
	if s.Outgoing {
		dir = "out"
	}
	return fmt.Sprintf("%s %s > %s: Flags [%s], seq %d, win %d, options [%s], length %d",
		dir, s.Src, s.Dst, s.Flags, s.Seq, s.Window, s.Options, s.Len)
}
