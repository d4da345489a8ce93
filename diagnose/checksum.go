package diagnose

import "encoding/binary"

// The normalize package keeps its checksum arithmetic unexported (it only
// updates checksums); verifying one needs the full sum, which is this.

// sum16 adds b as big-endian 16-bit words to s, padding an odd final byte
// with zero (RFC 1071). The caller folds.
func sum16(b []byte, s uint64) uint64 {
	for len(b) >= 8 {
		s += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// checkTCP verifies the checksum of the complete segment seg inside the IP
// packet ip. A checksum field that holds only the pseudo-header sum is what
// Linux leaves for the NIC to finish (CHECKSUM_PARTIAL): a segment the
// capturing host sent with transmit checksum offload.
func checkTCP(ip []byte, v6 bool, seg []byte) csumState {
	var ph uint64
	if v6 {
		ph = sum16(ip[8:40], 0)
	} else {
		ph = sum16(ip[12:20], 0)
	}
	ph += protoTCP + uint64(len(seg))
	if fold(sum16(seg, ph)) == 0xffff {
		return csumGood
	}
	field := binary.BigEndian.Uint16(seg[16:])
	if p := fold(ph); field == p || field == ^p {
		return csumPartial
	}
	return csumBad
}
