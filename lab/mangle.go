//go:build linux

package lab

import "encoding/binary"

// TCP option kinds (RFC 9293, RFC 7323).
const (
	optEOL       = 0
	optNOP       = 1
	optMSS       = 2
	optWScale    = 3
	optSACKOK    = 4
	optTimestamp = 8
)

// tcpSegment locates the TCP header in an IPv4 or IPv6 packet (no IPv6
// extension headers: the lab sends none). ok is false for anything else.
func tcpSegment(pkt []byte) (tcpOff int, ok bool) {
	if len(pkt) < 1 {
		return 0, false
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return 0, false
		}
		ihl := int(pkt[0]&0x0f) * 4
		if ihl < 20 || pkt[9] != 6 || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return 0, false
		}
		tcpOff = ihl
	case 6:
		if len(pkt) < 40 || pkt[6] != 6 {
			return 0, false
		}
		tcpOff = 40
	default:
		return 0, false
	}
	if len(pkt) < tcpOff+20 {
		return 0, false
	}
	doff := int(pkt[tcpOff+12]>>4) * 4
	if doff < 20 || len(pkt) < tcpOff+doff {
		return 0, false
	}
	return tcpOff, true
}

// tcpFlags bits.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// findOption returns the offset in pkt of the first TCP option of kind,
// checking its length is want; -1 if absent or the list is malformed.
func findOption(pkt []byte, tcpOff int, kind byte, want int) int {
	doff := int(pkt[tcpOff+12]>>4) * 4
	opts := pkt[tcpOff+20 : tcpOff+doff]
	for i := 0; i < len(opts); {
		switch opts[i] {
		case optEOL:
			return -1
		case optNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return -1
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			return -1
		}
		if opts[i] == kind {
			if l != want {
				return -1
			}
			return tcpOff + 20 + i
		}
		i += l
	}
	return -1
}

// raiseWScale sets the window-scale shift of a SYN-ACK to shift if it is
// lower, fixing the checksum. It reports whether it changed the packet.
func raiseWScale(pkt []byte, shift byte) bool {
	off, ok := tcpSegment(pkt)
	if !ok || pkt[off+13]&(flagSYN|flagACK) != flagSYN|flagACK {
		return false
	}
	o := findOption(pkt, off, optWScale, 3)
	if o < 0 || pkt[o+2] >= shift {
		return false
	}
	pkt[o+2] = shift
	fixTCPChecksum(pkt, off)
	return true
}

// scrambleTSval moves the TSval of a data segment back by delta when pick
// says so, fixing the checksum. It reports whether it changed the packet.
func scrambleTSval(pkt []byte, delta uint32, pick func(seq uint32) bool) bool {
	off, ok := tcpSegment(pkt)
	if !ok {
		return false
	}
	flags := pkt[off+13]
	if flags&(flagSYN|flagRST) != 0 {
		return false
	}
	doff := int(pkt[off+12]>>4) * 4
	if tcpPayloadLen(pkt, off) == 0 || doff == 20 {
		return false
	}
	seq := binary.BigEndian.Uint32(pkt[off+4:])
	if !pick(seq) {
		return false
	}
	o := findOption(pkt, off, optTimestamp, 10)
	if o < 0 {
		return false
	}
	v := binary.BigEndian.Uint32(pkt[o+2:])
	binary.BigEndian.PutUint32(pkt[o+2:], v-delta)
	fixTCPChecksum(pkt, off)
	return true
}

// tcpPayloadLen is the TCP payload length per the IP header.
func tcpPayloadLen(pkt []byte, off int) int {
	doff := int(pkt[off+12]>>4) * 4
	var end int
	if pkt[0]>>4 == 4 {
		end = int(binary.BigEndian.Uint16(pkt[2:4]))
	} else {
		end = 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
	}
	if end > len(pkt) {
		end = len(pkt)
	}
	if n := end - off - doff; n > 0 {
		return n
	}
	return 0
}

// fixTCPChecksum recomputes the TCP checksum over the pseudo-header and the
// whole segment.
func fixTCPChecksum(pkt []byte, off int) {
	var sum uint32
	var segLen int
	if pkt[0]>>4 == 4 {
		segLen = int(binary.BigEndian.Uint16(pkt[2:4])) - off
		sum = csumAdd(sum, pkt[12:20])
	} else {
		segLen = int(binary.BigEndian.Uint16(pkt[4:6])) + 40 - off
		sum = csumAdd(sum, pkt[8:40])
	}
	if segLen < 0 || off+segLen > len(pkt) {
		segLen = len(pkt) - off
	}
	sum += 6 + uint32(segLen)
	pkt[off+16], pkt[off+17] = 0, 0
	sum = csumAdd(sum, pkt[off:off+segLen])
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(pkt[off+16:], ^uint16(sum))
}

func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}
