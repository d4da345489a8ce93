package diagnose

import (
	"encoding/binary"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// IP protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoICMPv6 = 58
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
	// csum is the checksum state of a complete segment; of another, it
	// means nothing.
	csum normalize.ChecksumState
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

// optNames names the bits of an option set, in the order they are printed:
// the kinds tcpdump names by its names, as the option printer does.
var optNames = [...]struct {
	bit  uint16
	name string
}{
	{optBitMSS, normalize.OptionName(normalize.OptMSS)}, {optBitWS, normalize.OptionName(normalize.OptWS)},
	{optBitSACKOK, normalize.OptionName(normalize.OptSACKOK)}, {optBitTS, normalize.OptionName(normalize.OptTS)},
	{optBitSACK, normalize.OptionName(normalize.OptSACK)}, {optBitTFO, "tfo"}, {optBitMPTCP, "mptcp"}, {optBitAuth, "md5/ao"},
	{optBitOther, "other"}, {optBitMalformed, "malformed"},
}

// badChecksum reports a complete segment whose checksum fails.
func (s *segment) badChecksum() bool {
	return s.complete && s.csum == normalize.ChecksumBad
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
			return kindOther
		}
		if h.FragmentOffset() != 0 {
			return kindOther
		}
		hl = h.HeaderLength()
		s.v6 = false
		src, dst := h.Src().As4(), h.Dst().As4()
		s.src, s.dst = [16]byte{}, [16]byte{}
		copy(s.src[:4], src[:])
		copy(s.dst[:4], dst[:])
		s.ttl = h.TTL()
		s.ipid = h.ID()
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
		s.src, s.dst = h.Src().As16(), h.Dst().As16()
		s.ttl = h.HopLimit()
		s.ipLen = normalize.IPv6MinimumSize + int(h.PayloadLength())
		if h.PayloadLength() == 0 {
			s.ipLen = wireLen // jumbogram or BIG TCP
		}
		off, p, ok := h.FirstFragmentTransport()
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
	if s.complete {
		s.csum = normalize.VerifyTCPChecksum(ip, l4)
	}
	s.parseOptions()
	return kindTCP
}

// ICMP and ICMPv6 errors (RFC 792, RFC 4443, RFC 1191).
const (
	icmpDstUnreachable   = 3 // type
	icmpFragNeeded       = 4 // its code of fragmentation needed
	icmpv6DstUnreachable = 1
	icmpv6PacketTooBig   = 2
	icmpHeaderLen        = 8 // type, code, checksum, 4 bytes (the MTU); then the quoted packet
)

// decodeICMP recognizes ICMP fragmentation-needed (RFC 1191) and ICMPv6
// packet-too-big (RFC 8201), destination-unreachable errors, and the
// destination of the packet they quote (in tooBigFor).
func decodeICMP(b []byte, v6 bool, s *segment) pktKind {
	if len(b) < icmpHeaderLen {
		return kindOther
	}
	kind := kindUnreachable
	if v6 {
		switch b[0] {
		case icmpv6DstUnreachable:
		case icmpv6PacketTooBig:
			s.tooBigMTU = int(binary.BigEndian.Uint32(b[4:]))
			kind = kindTooBig
		default:
			return kindOther
		}
		q := normalize.IPv6(b[icmpHeaderLen:])
		if !q.IsValid() {
			return kindOther
		}
		s.tooBigFor = q.Dst().As16()
		return kind
	}
	if b[0] != icmpDstUnreachable {
		return kindOther
	}
	if b[1] == icmpFragNeeded {
		s.tooBigMTU = int(binary.BigEndian.Uint16(b[6:]))
		kind = kindTooBig
	}
	// Only the quoted destination is read: the fixed header suffices.
	q := normalize.IPv4(b[icmpHeaderLen:])
	if len(q) < normalize.IPv4MinimumSize || q[0]>>4 != 4 {
		return kindOther
	}
	dst := q.Dst().As4()
	s.tooBigFor = [16]byte{}
	copy(s.tooBigFor[:4], dst[:])
	return kind
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
