package normalize

import "encoding/binary"

// sum16 adds b as big-endian 16-bit words to the 32-bit accumulator s,
// padding an odd final byte with zero (RFC 1071). The caller folds.
func sum16(b []byte, s uint32) uint32 {
	acc := uint64(s)
	for len(b) >= 8 {
		acc += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	// The 32-bit words are folded into 16-bit ones below: a 32-bit word
	// w contributes w>>16 + w&0xffff in ones' complement, which is what
	// folding a sum of 32-bit words gives.
	for acc>>32 != 0 {
		acc = acc&0xffffffff + acc>>32
	}
	return uint32(acc)
}

// fold reduces a ones'-complement accumulator to 16 bits.
func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// updateChecksum returns the checksum hc after the bytes summing to old were
// replaced by bytes summing to new, both as ones'-complement sums of the same
// 16-bit-aligned region (RFC 1624 equation 3: HC' = ~(~HC + ~m + m')).
// It keeps a checksum that verified verifying and one that did not failing.
func updateChecksum(hc uint16, old, new uint16) uint16 {
	s := uint32(^hc) + uint32(^old) + uint32(new)
	return ^fold(s)
}

// fullTCPChecksum computes the full TCP checksum of seg (header with its checksum
// field taken as zero, and payload) under the pseudo-header sum ph (addresses
// only; protocol and length are added here).
func fullTCPChecksum(ph uint32, seg []byte) uint16 {
	s := ph + protoTCP + uint32(len(seg))
	s = sum16(seg[:tcpChecksum], s)
	s = sum16(seg[tcpChecksum+2:], s)
	return ^fold(s)
}

// HeaderSum is the folded sum of the header words an edit may change: data
// offset and flags to the end of the options (editable). Taken before an
// edit, it is what UpdateChecksum needs after it. Valid only after IsValid.
func (b TCP) HeaderSum() uint16 { return fold(sum16(editable(b), 0)) }

// UpdateChecksum fixes the checksum after edits inside the header whose sum
// was old (HeaderSum) before them, incrementally (RFC 1624): a checksum that
// verified still does, one that did not still does not.
func (b TCP) UpdateChecksum(old uint16) {
	b.SetChecksum(updateChecksum(b.Checksum(), old, b.HeaderSum()))
}

// TCPChecksum computes the full checksum of seg, a complete segment carried
// by the IPv4 or IPv6 packet ip (the IP header at ip[0]; its checksum field
// is skipped). It is for tools that build packets; the packet path updates
// checksums (UpdateChecksum) unless the kernel left one unfinished.
func TCPChecksum(ip []byte, seg TCP) uint16 {
	if ip[0]>>4 == 6 {
		return fullTCPChecksum(IPv6(ip).pseudoHeaderSum(), seg)
	}
	return fullTCPChecksum(IPv4(ip).pseudoHeaderSum(), seg)
}

// ChecksumState is what a TCP checksum field says of its segment.
type ChecksumState uint8

const (
	ChecksumBad     ChecksumState = iota
	ChecksumGood                  // the segment verifies
	ChecksumPartial               // only the pseudo-header sum: left for the NIC to finish (transmit offload)
)

// VerifyTCPChecksum checks the checksum of seg, a complete segment carried
// by the IPv4 or IPv6 packet ip (the IP header at ip[0]). It is for tools
// that read captures; the packet path only updates checksums.
func VerifyTCPChecksum(ip []byte, seg TCP) ChecksumState {
	var ph uint32
	if len(ip) > 0 && ip[0]>>4 == 6 && len(ip) >= IPv6MinimumSize {
		ph = IPv6(ip).pseudoHeaderSum()
	} else if len(ip) >= IPv4MinimumSize {
		ph = IPv4(ip).pseudoHeaderSum()
	} else {
		return ChecksumBad
	}
	ph += protoTCP + uint32(len(seg))
	if fold(sum16(seg, ph)) == 0xffff {
		return ChecksumGood
	}
	if len(seg) >= TCPMinimumSize {
		if p := fold(ph); seg.Checksum() == p || seg.Checksum() == ^p {
			return ChecksumPartial
		}
	}
	return ChecksumBad
}
