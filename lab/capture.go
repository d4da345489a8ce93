//go:build linux

package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/internal/netns"
)

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

// Segments decodes the TCP segments among frames (netns.StartCapture's).
func Segments(frames []netns.Frame) []Segment {
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
