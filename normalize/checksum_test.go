package normalize

import (
	"math/rand/v2"
	"testing"
)

// slowSum is the reference: bytewise ones'-complement sum (RFC 1071).
func slowSum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i++ {
		if i%2 == 0 {
			s += uint32(b[i]) << 8
		} else {
			s += uint32(b[i])
		}
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func TestSum16EveryLength(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random, ones, zeros := make([]byte, 1600), make([]byte, 1600), make([]byte, 1600)
	for i := range random {
		random[i], ones[i] = byte(rng.Uint32()), 0xff
	}
	for name, b := range map[string][]byte{"random": random, "ones": ones, "zeros": zeros} {
		for n := 0; n <= len(b); n++ {
			for _, start := range []int{0, 1} {
				if start > n {
					continue
				}
				if got, want := fold(sum16(b[start:n], 0)), slowSum(b[start:n]); got != want {
					t.Fatalf("%s [%d:%d]: sum16 = %#04x, want %#04x", name, start, n, got, want)
				}
			}
		}
	}
}

// TestChecksumRewrite: on random segments, with valid or corrupt checksums,
// the incremental update verifies after iff it did before, and the full
// checksum always verifies.
func TestChecksumRewrite(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	pol := stripAll()
	pol.WindowScale = WSClamp
	pol.WindowScaleMax = 1
	for i := 0; i < 3000; i++ {
		s := seg{src: "198.18.7.1", dst: "198.18.7.2", sport: uint16(rng.Uint32()), dport: 25, syn: true,
			seq: rng.Uint32(), window: uint16(rng.Uint32()), ece: rng.IntN(2) == 0, ns: rng.IntN(2) == 0,
			badCsum: rng.IntN(3) == 0, payload: make([]byte, rng.IntN(64))}
		if i%2 == 1 {
			s.src, s.dst = "2001:2::1", "2001:2::2"
		}
		for j := range s.payload {
			s.payload[j] = byte(rng.Uint32())
		}
		s.options = randomOptions(rng)
		pkt := build(t, s)
		before := verifies(t, pkt)
		notReady := i%5 == 0
		r := New(Config{}).Packet(pkt, table(pol, lab4, lab6), Meta{CsumNotReady: notReady})
		after := verifies(t, pkt)
		switch {
		case !r.Modified:
			if after != before {
				t.Fatalf("unmodified packet changed checksum validity")
			}
		case notReady:
			if !after {
				t.Fatalf("full checksum does not verify: %x", pkt)
			}
		case after != before:
			t.Fatalf("verifies before %v, after %v (changes %v): %x", before, after, r.Why.Changes, pkt)
		}
	}
}

// randomOptions makes a well-formed option list of up to 40 bytes from
// realistic pieces, in random order.
func randomOptions(rng *rand.Rand) []byte {
	pieces := [][]byte{
		{OptMSS, 4, byte(rng.Uint32()), byte(rng.Uint32())},
		{OptWS, 3, byte(rng.IntN(16))},
		{OptSACKOK, 2},
		{OptTS, 10, 1, 2, 3, 4, 0, 0, 0, 0},
		{OptNOP},
		{OptTFO, 2},
		{253, 4, 0xf9, 0x89},
	}
	var b []byte
	for _, k := range rng.Perm(len(pieces)) {
		if rng.IntN(3) > 0 && len(b)+len(pieces[k]) <= 40 {
			b = append(b, pieces[k]...)
		}
	}
	return b
}

// TestTCPChecksumAndUpdate: on random segments, TCPChecksum gives what
// gopacket computed, and an option byte edited with HeaderSum and
// UpdateChecksum around it leaves the checksum TCPChecksum computes, or
// still failing when it failed before.
func TestTCPChecksumAndUpdate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 2000; i++ {
		s := seg{src: "198.18.7.1", dst: "198.18.7.2", sport: uint16(rng.Uint32()), dport: 25, syn: true,
			seq: rng.Uint32(), window: uint16(rng.Uint32()), badCsum: rng.IntN(3) == 0,
			options: randomOptions(rng), payload: make([]byte, rng.IntN(64))}
		if i%2 == 1 {
			s.src, s.dst = "2001:2::1", "2001:2::2"
		}
		for j := range s.payload {
			s.payload[j] = byte(rng.Uint32())
		}
		pkt := build(t, s)
		tcp := tcpOf(t, pkt)
		ip := pkt[:len(pkt)-len(tcp)]
		if got, want := TCPChecksum(ip, tcp) == tcp.Checksum(), !s.badCsum; got != want {
			t.Fatalf("TCPChecksum = %#04x, field %#04x, checksum made bad %v: %x", TCPChecksum(ip, tcp), tcp.Checksum(), s.badCsum, pkt)
		}
		if len(tcp.Options()) == 0 {
			continue
		}
		old := tcp.HeaderSum()
		tcp.Options()[rng.IntN(len(tcp.Options()))] = byte(rng.Uint32())
		tcp.UpdateChecksum(old)
		if verifies(t, pkt) == s.badCsum {
			t.Fatalf("after an edit: verifies %v, checksum made bad %v: %x", !s.badCsum, s.badCsum, pkt)
		}
	}
}
