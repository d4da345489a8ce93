//go:build linux

package lab

import (
	"encoding/binary"
	"net/netip"
	"syscall"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// tcpSegment returns the TCP segment of an IPv4 or IPv6 packet, cut to the
// length its IP header gives, with the packet's addresses. ok is false for
// anything else: fragments, IPv6 extension headers (the lab sends none) and
// headers cut short.
func tcpSegment(pkt []byte) (tcp normalize.TCP, src, dst netip.Addr, ok bool) {
	if len(pkt) < 1 {
		return nil, src, dst, false
	}
	switch pkt[0] >> 4 {
	case 4:
		ip := normalize.IPv4(pkt)
		if !ip.IsValid() || ip.Protocol() != syscall.IPPROTO_TCP || ip.IsFragment() {
			return nil, src, dst, false
		}
		tcp = normalize.TCP(pkt[ip.HeaderLength():min(int(ip.TotalLength()), len(pkt))])
		src, dst = ip.Src(), ip.Dst()
	case 6:
		ip := normalize.IPv6(pkt)
		if !ip.IsValid() || ip.NextHeader() != syscall.IPPROTO_TCP {
			return nil, src, dst, false
		}
		tcp = normalize.TCP(pkt[normalize.IPv6MinimumSize:min(normalize.IPv6MinimumSize+int(ip.PayloadLength()), len(pkt))])
		src, dst = ip.Src(), ip.Dst()
	default:
		return nil, src, dst, false
	}
	if !tcp.IsValid() {
		return nil, src, dst, false
	}
	return tcp, src, dst, true
}

// findOption returns the first option of kind in tcp's option list (the
// whole option, in place), or nil when there is none before the list ends
// or turns out malformed.
func findOption(tcp normalize.TCP, kind uint8) []byte {
	it := normalize.Options(tcp.Options())
	for it.Next() {
		if o := it.Option(); o.Kind == kind {
			return o.Data
		}
	}
	return nil
}

// payloadLen is the TCP payload length of a segment tcpSegment returned.
func payloadLen(tcp normalize.TCP) int { return len(tcp) - tcp.DataOffset() }

// raiseWScale sets the window-scale shift of a SYN-ACK to shift if it is
// lower, updating the checksum. It reports whether it changed the packet.
func raiseWScale(pkt []byte, shift byte) bool {
	tcp, _, _, ok := tcpSegment(pkt)
	if !ok || tcp.Flags()&(normalize.FlagSYN|normalize.FlagACK) != normalize.FlagSYN|normalize.FlagACK {
		return false
	}
	ws := findOption(tcp, normalize.OptWS)
	if ws == nil || ws[2] >= shift {
		return false
	}
	old := tcp.HeaderSum()
	ws[2] = shift
	tcp.UpdateChecksum(old)
	return true
}

// scrambleTSval moves the TSval of a data segment back by delta when pick
// says so, updating the checksum. It reports whether it changed the packet.
func scrambleTSval(pkt []byte, delta uint32, pick func(seq uint32) bool) bool {
	tcp, _, _, ok := tcpSegment(pkt)
	if !ok || tcp.Flags()&(normalize.FlagSYN|normalize.FlagRST) != 0 {
		return false
	}
	if payloadLen(tcp) == 0 || tcp.DataOffset() == normalize.TCPMinimumSize || !pick(tcp.Seq()) {
		return false
	}
	ts := findOption(tcp, normalize.OptTS)
	if ts == nil {
		return false
	}
	old := tcp.HeaderSum()
	binary.BigEndian.PutUint32(ts[2:], binary.BigEndian.Uint32(ts[2:])-delta)
	tcp.UpdateChecksum(old)
	return true
}
