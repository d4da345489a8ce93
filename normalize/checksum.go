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
