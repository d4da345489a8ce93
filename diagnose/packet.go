package diagnose

import (
	"encoding/binary"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// IP protocol numbers and IPv6 extension headers (RFC 8200 section 4).
const (
	protoICMP      = 1
	protoTCP       = 6
	protoICMPv6    = 58
	ipv6HopByHop   = 0
	ipv6Routing    = 43
	ipv6Fragment   = 44
	ipv6DestOpts   = 60
	maxIPv6ExtHdrs = 8
)

// pktKind says what a frame turned out to be.
type pktKind uint8

const (
	kindOther       pktKind = iota // not IP, not TCP, or a non-first fragment
	kindTCP                        // a TCP segment with a complete header
	kindTruncated                  // TCP, but the header is cut off by the snap length
	kindTooBig                     // ICMP fragmentation-needed or ICMPv6 packet-too-big
	kindBadLength                  // the IP length claims more than the frame held on the wire
	kindUnreachable                // ICMP or ICMPv6 destination unreachable (other than too-big)
)

// segment is one decoded TCP segment: views into the frame and the values
// the analysis reads. It is reused for every packet (no allocation).
type segment struct {
	v6       bool
	src, dst [16]byte // IPv4 in the first 4 bytes
	ttl      uint8
	ipid     uint16 // IPv4 identification
	ipLen    int    // IP packet length on the wire (from the header)
	tcp      normalize.TCP
	payload  int  // payload length on the wire
	complete bool // the whole segment is in the frame
	// csum is the checksum state of a complete segment.
	csum csumState
	// tooBigFor is the destination of the packet an ICMP too-big quotes.
	tooBigFor [16]byte
	tooBigMTU int

	// options
	mss     uint16
	ws      int16 // -1: absent
	sackOK  bool
	hasTS   bool
	tsval   uint32
	tsecr   uint32
	optMask uint16 // optBit* of the options present
	nSACK   int
	sack    [4][2]uint32
}

// Option presence bits, for SYN option sets.
const (
	optBitMSS uint16 = 1 << iota
	optBitWS
	optBitSACKOK
	optBitTS
	optBitSACK
	optBitTFO
	optBitMPTCP
	optBitAuth
	optBitOther
	optBitMalformed
)

// optNames names the bits of an option set, in the order they are printed.
var optNames = [...]struct {
	bit  uint16
	name string
}{
	{optBitMSS, "mss"}, {optBitWS, "wscale"}, {optBitSACKOK, "sackOK"}, {optBitTS, "TS"},
	{optBitSACK, "sack"}, {optBitTFO, "tfo"}, {optBitMPTCP, "mptcp"}, {optBitAuth, "md5/ao"},
	{optBitOther, "other"}, {optBitMalformed, "malformed"},
}

// csumState is a segment's checksum as normalize.VerifyTCPChecksum found
// it, or csumUnchecked when the capture does not hold the whole segment.
type csumState uint8

const (
	csumUnchecked csumState = iota
	csumGood
	csumBad
	csumPartial // the pseudo-header sum only: transmit checksum offload
)

func checkTCP(ip []byte, seg []byte) csumState {
	switch normalize.VerifyTCPChecksum(ip, seg) {
	case normalize.ChecksumGood:
		return csumGood
	case normalize.ChecksumPartial:
		return csumPartial
	}
	return csumBad
}

// decode parses an IP packet into s. wireLen is the frame's original length
// minus the link header: the IP length when the header does not say (TSO
// super-segments captured with a zero IPv4 total length).
func decode(ip []byte, wireLen int, s *segment) pktKind {
	if len(ip) == 0 {
		return kindOther
	}
	var (
		proto uint8
		l4    []byte
		hl    int
	)
	switch ip[0] >> 4 {
	case 4:
		h := normalize.IPv4(ip)
		if !h.IsValid() {
			if len(ip) >= 1 && len(ip) < normalize.IPv4MinimumSize {
				return kindOther
			}
			return kindOther
		}
		if h.FragmentOffset() != 0 {
			return kindOther
		}
		hl = h.HeaderLength()
		s.v6 = false
		s.src = [16]byte{}
		s.dst = [16]byte{}
		copy(s.src[:4], ip[12:16])
		copy(s.dst[:4], ip[16:20])
		s.ttl = ip[8]
		s.ipid = binary.BigEndian.Uint16(ip[4:])
		s.ipLen = int(h.TotalLength())
		if s.ipLen < hl {
			s.ipLen = wireLen
		}
		proto = h.Protocol()
		l4 = ip[hl:min(len(ip), max(s.ipLen, hl))]
	case 6:
		h := normalize.IPv6(ip)
		if !h.IsValid() {
			return kindOther
		}
		s.v6 = true
		copy(s.src[:], ip[8:24])
		copy(s.dst[:], ip[24:40])
		s.ttl = ip[7]
		s.ipLen = normalize.IPv6MinimumSize + int(h.PayloadLength())
		if h.PayloadLength() == 0 {
			s.ipLen = wireLen // jumbogram or BIG TCP
		}
		off, p, ok := ipv6Transport(ip)
		if !ok {
			return kindOther
		}
		hl, proto = off, p
		l4 = ip[hl:min(len(ip), max(s.ipLen, hl))]
	default:
		return kindOther
	}
	// A length field claiming more than was on the wire is corrupt or
	// fuzzed (a snapped packet still has its original length): its sizes
	// and sequence space would be invented.
	if wireLen > 0 && s.ipLen > wireLen {
		return kindBadLength
	}
	switch proto {
	case protoTCP:
	case protoICMP:
		return decodeICMP(l4, false, s)
	case protoICMPv6:
		return decodeICMP(l4, true, s)
	default:
		return kindOther
	}
	t := normalize.TCP(l4)
	if !t.IsValid() {
		if len(l4) < normalize.TCPMinimumSize || t.DataOffset() >= normalize.TCPMinimumSize {
			return kindTruncated
		}
		return kindOther
	}
	s.tcp = t
	s.payload = s.ipLen - hl - t.DataOffset()
	if s.payload < 0 {
		s.payload = 0
	}
	s.complete = hl+len(l4) >= s.ipLen && len(l4) == s.ipLen-hl
	s.csum = csumUnchecked
	if s.complete {
		s.csum = checkTCP(ip, l4)
	}
	s.parseOptions()
	return kindTCP
}

// ipv6Transport walks the extension headers. A fragment header ends the walk
// unusable (ok false) unless it is the first fragment of a TCP packet.
func ipv6Transport(b []byte) (off int, proto uint8, ok bool) {
	off, proto = normalize.IPv6MinimumSize, b[6]
	for i := 0; i < maxIPv6ExtHdrs; i++ {
		switch proto {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if off+8 > len(b) {
				return 0, 0, false
			}
			proto = b[off]
			off += (int(b[off+1]) + 1) * 8
		case ipv6Fragment:
			if off+8 > len(b) || binary.BigEndian.Uint16(b[off+2:])&0xfff8 != 0 {
				return 0, 0, false
			}
			proto = b[off]
			off += 8
		default:
			return off, proto, off <= len(b)
		}
	}
	return 0, 0, false
}

// decodeICMP recognizes ICMP fragmentation-needed (RFC 1191) and ICMPv6
// packet-too-big (RFC 8201), destination-unreachable errors, and the
// destination of the packet they quote (in tooBigFor).
func decodeICMP(b []byte, v6 bool, s *segment) pktKind {
	if len(b) < 8 {
		return kindOther
	}
	if v6 {
		if b[0] == 1 {
			q := b[8:]
			if len(q) < 40 || q[0]>>4 != 6 {
				return kindOther
			}
			copy(s.tooBigFor[:], q[24:40])
			return kindUnreachable
		}
		if b[0] != 2 {
			return kindOther
		}
		s.tooBigMTU = int(binary.BigEndian.Uint32(b[4:]))
		q := b[8:]
		if len(q) < 40 || q[0]>>4 != 6 {
			return kindOther
		}
		copy(s.tooBigFor[:], q[24:40])
		return kindTooBig
	}
	if b[0] != 3 {
		return kindOther
	}
	if b[1] != 4 {
		q := b[8:]
		if len(q) < 20 || q[0]>>4 != 4 {
			return kindOther
		}
		s.tooBigFor = [16]byte{}
		copy(s.tooBigFor[:4], q[16:20])
		return kindUnreachable
	}
	s.tooBigMTU = int(binary.BigEndian.Uint16(b[6:]))
	q := b[8:]
	if len(q) < 20 || q[0]>>4 != 4 {
		return kindOther
	}
	s.tooBigFor = [16]byte{}
	copy(s.tooBigFor[:4], q[16:20])
	return kindTooBig
}

// parseOptions walks the option list once with normalize's iterator.
func (s *segment) parseOptions() {
	s.mss, s.ws, s.sackOK, s.hasTS, s.optMask, s.nSACK = 0, -1, false, false, 0, 0
	it := normalize.Options(s.tcp.Options())
	for it.Next() {
		o := it.Option()
		switch o.Kind {
		case normalize.OptMSS:
			s.mss = binary.BigEndian.Uint16(o.Data[2:])
			s.optMask |= optBitMSS
		case normalize.OptWS:
			s.ws = int16(o.Data[2])
			s.optMask |= optBitWS
		case normalize.OptSACKOK:
			s.sackOK = true
			s.optMask |= optBitSACKOK
		case normalize.OptTS:
			s.hasTS = true
			s.tsval = binary.BigEndian.Uint32(o.Data[2:])
			s.tsecr = binary.BigEndian.Uint32(o.Data[6:])
			s.optMask |= optBitTS
		case normalize.OptSACK:
			s.optMask |= optBitSACK
			for i := 2; i+8 <= len(o.Data) && s.nSACK < len(s.sack); i += 8 {
				s.sack[s.nSACK] = [2]uint32{binary.BigEndian.Uint32(o.Data[i:]), binary.BigEndian.Uint32(o.Data[i+4:])}
				s.nSACK++
			}
		case normalize.OptTFO:
			s.optMask |= optBitTFO
		case normalize.OptMPTCP:
			s.optMask |= optBitMPTCP
		case normalize.OptMD5, normalize.OptAO:
			s.optMask |= optBitAuth
		default:
			s.optMask |= optBitOther
		}
	}
	if it.Malformed() {
		s.optMask |= optBitMalformed
	}
}
