package normalize

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers and IPv6 extension headers (RFC 8200 section 4).
const (
	protoTCP       = 6
	ipv6HopByHop   = 0
	ipv6Routing    = 43
	ipv6Fragment   = 44
	ipv6DestOpts   = 60
	maxIPv6ExtHdrs = 8
)

// IPv4 is a view of an IPv4 header and what follows it (RFC 791).
type IPv4 []byte

const (
	IPv4MinimumSize = 20
	ipv4TotalLen    = 2
	ipv4ID          = 4
	ipv4FlagsFrag   = 6
	ipv4TTL         = 8
	ipv4Protocol    = 9
	ipv4Src         = 12
	ipv4Dst         = 16
)

// IsValid reports whether the header is complete: version 4, IHL >= 5, the
// header within the buffer and the total length covering it.
func (b IPv4) IsValid() bool {
	if len(b) < IPv4MinimumSize || b[0]>>4 != 4 {
		return false
	}
	hl := b.HeaderLength()
	return hl >= IPv4MinimumSize && hl <= len(b) && int(b.TotalLength()) >= hl
}

func (b IPv4) HeaderLength() int       { return int(b[0]&0x0f) * 4 }
func (b IPv4) TotalLength() uint16     { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }
func (b IPv4) ID() uint16              { return binary.BigEndian.Uint16(b[ipv4ID:]) }
func (b IPv4) TTL() uint8              { return b[ipv4TTL] }
func (b IPv4) Protocol() uint8         { return b[ipv4Protocol] }
func (b IPv4) Src() netip.Addr         { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }
func (b IPv4) Dst() netip.Addr         { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }
func (b IPv4) FragmentOffset() int     { return int(binary.BigEndian.Uint16(b[ipv4FlagsFrag:])&0x1fff) * 8 }
func (b IPv4) MoreFragments() bool     { return b[ipv4FlagsFrag]&0x20 != 0 }
func (b IPv4) IsFragment() bool        { return b.MoreFragments() || b.FragmentOffset() != 0 }
func (b IPv4) pseudoHeaderSum() uint32 { return sum16(b[ipv4Src:ipv4Dst+4], 0) }

// IPv6 is a view of an IPv6 fixed header and what follows it (RFC 8200).
type IPv6 []byte

const (
	IPv6MinimumSize = 40
	ipv6PayloadLen  = 4
	ipv6NextHeader  = 6
	ipv6HopLimit    = 7
	ipv6Src         = 8
	ipv6Dst         = 24
	ipv6FragOffset  = 2      // in the fragment header
	ipv6FragMask    = 0xfff8 // the fragment offset, without the M flag
)

// IsValid reports whether the fixed header is complete and version 6.
func (b IPv6) IsValid() bool {
	return len(b) >= IPv6MinimumSize && b[0]>>4 == 6
}

func (b IPv6) PayloadLength() uint16   { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }
func (b IPv6) NextHeader() uint8       { return b[ipv6NextHeader] }
func (b IPv6) HopLimit() uint8         { return b[ipv6HopLimit] }
func (b IPv6) Src() netip.Addr         { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }
func (b IPv6) Dst() netip.Addr         { return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16])) }
func (b IPv6) pseudoHeaderSum() uint32 { return sum16(b[ipv6Src:ipv6Dst+16], 0) }

// Transport walks the extension headers after the fixed header and returns
// the offset of the upper-layer header and its protocol. frag reports a
// fragment header (RFC 8200 section 4.5): such a packet is never rewritten.
// ok is false when the chain runs past the buffer or is too long.
func (b IPv6) Transport() (off int, proto uint8, frag, ok bool) {
	return b.transport(false)
}

// FirstFragmentTransport is Transport for tools that read captures: the
// fragment header of a first fragment (offset 0), whose upper-layer header
// follows, is walked past; any later fragment is not ok.
func (b IPv6) FirstFragmentTransport() (off int, proto uint8, ok bool) {
	off, proto, _, ok = b.transport(true)
	return off, proto, ok
}

func (b IPv6) transport(pastFirstFragment bool) (off int, proto uint8, frag, ok bool) {
	off, proto = IPv6MinimumSize, b.NextHeader()
	for i := 0; i < maxIPv6ExtHdrs; i++ {
		switch proto {
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			if off+8 > len(b) {
				return 0, 0, false, false
			}
			proto = b[off]
			off += (int(b[off+1]) + 1) * 8
		case ipv6Fragment:
			if !pastFirstFragment {
				return off, proto, true, true
			}
			if off+8 > len(b) || binary.BigEndian.Uint16(b[off+ipv6FragOffset:])&ipv6FragMask != 0 {
				return 0, 0, true, false
			}
			proto = b[off]
			off += 8
			frag = true
		default:
			return off, proto, frag, off <= len(b)
		}
	}
	return 0, 0, false, false
}

// TCP is a view of a TCP header and its payload (RFC 9293 section 3.1).
type TCP []byte

const (
	TCPMinimumSize = 20
	TCPMaximumSize = 60
	tcpSrcPort     = 0
	tcpDstPort     = 2
	tcpSeq         = 4
	tcpAck         = 8
	tcpDataOff     = 12
	tcpFlags       = 13
	tcpWindow      = 14
	tcpChecksum    = 16
)

// TCP flags in byte 13, and AE (RFC 9768, formerly NS) in byte 12.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagURG = 0x20
	FlagECE = 0x40
	FlagCWR = 0x80
	flagAE  = 0x01 // in byte 12
)

// IsValid reports whether the fixed header is present and the data offset
// points inside the buffer.
func (b TCP) IsValid() bool {
	if len(b) < TCPMinimumSize {
		return false
	}
	off := b.DataOffset()
	return off >= TCPMinimumSize && off <= len(b)
}

func (b TCP) SrcPort() uint16      { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }
func (b TCP) DstPort() uint16      { return binary.BigEndian.Uint16(b[tcpDstPort:]) }
func (b TCP) Seq() uint32          { return binary.BigEndian.Uint32(b[tcpSeq:]) }
func (b TCP) Ack() uint32          { return binary.BigEndian.Uint32(b[tcpAck:]) }
func (b TCP) DataOffset() int      { return int(b[tcpDataOff]>>4) * 4 }
func (b TCP) Flags() uint8         { return b[tcpFlags] }
func (b TCP) AE() bool             { return b[tcpDataOff]&flagAE != 0 }
func (b TCP) Window() uint16       { return binary.BigEndian.Uint16(b[tcpWindow:]) }
func (b TCP) SetWindow(w uint16)   { binary.BigEndian.PutUint16(b[tcpWindow:], w) }
func (b TCP) Checksum() uint16     { return binary.BigEndian.Uint16(b[tcpChecksum:]) }
func (b TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[tcpChecksum:], c) }

// Options returns the option bytes between the fixed header and the data
// offset. Valid only after IsValid.
func (b TCP) Options() []byte { return b[TCPMinimumSize:b.DataOffset()] }

// clearECN zeroes AE, CWR and ECE and reports whether any was set.
func (b TCP) clearECN(write bool) bool {
	set := b[tcpFlags]&(FlagECE|FlagCWR) != 0 || b[tcpDataOff]&flagAE != 0
	if set && write {
		b[tcpFlags] &^= FlagECE | FlagCWR
		b[tcpDataOff] &^= flagAE
	}
	return set
}
