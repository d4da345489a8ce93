package normalize

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// handshake is a SYN's decision, kept until its SYN-ACK comes back.
type handshake struct {
	flow     Flow
	pol      *Policy
	dir      Direction
	stripped Change // options stripped (or, log-only, to be stripped) from the SYN
	synShift uint8  // the SYN's window shift, noShift if none
	synHasTS bool
	synTS    uint32 // the SYN's TSval
	age      uint64 // insertion order; 0 marks a free slot
}

const noShift = 0xff

// handshakeWays is the associativity of the table: a new SYN replaces the
// oldest entry of its set, so the table is bounded and never searched wider.
const handshakeWays = 4

// handshakes is a bounded set-associative table owned by one worker. It never
// allocates after init and needs no locks.
type handshakes struct {
	slots   []handshake
	setMask uint64
	seed    uint64
	clock   uint64
	evicted uint64 // entries replaced before their SYN-ACK could use them
}

func (h *handshakes) init(n int) {
	sets := 1
	for sets*handshakeWays < n {
		sets <<= 1
	}
	h.slots = make([]handshake, sets*handshakeWays)
	h.setMask = uint64(sets - 1)
	h.seed = rand.Uint64() | 1
}

func (h *handshakes) set(f *Flow) []handshake {
	i := int(h.hash(f)&h.setMask) * handshakeWays
	return h.slots[i : i+handshakeWays]
}

// hash mixes the flow's addresses and ports with a per-table seed, so that
// crafted SYNs cannot aim at one set across restarts.
func (h *handshakes) hash(f *Flow) uint64 {
	c, s := f.Client.As16(), f.Server.As16()
	a := binary.LittleEndian.Uint64(c[0:]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(c[8:]), 32)
	b := binary.LittleEndian.Uint64(s[0:]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(s[8:]), 32)
	return mix(mix(a^h.seed) ^ b ^ uint64(f.ClientPort)<<16 ^ uint64(f.ServerPort)<<48)
}

func mix(x uint64) uint64 {
	hi, lo := bits.Mul64(x, 0x9e3779b97f4a7c15)
	return hi ^ lo
}

// put records a SYN's decision, replacing an entry for the same flow (a
// retransmitted SYN) or else the oldest in its set.
func (h *handshakes) put(e handshake) {
	set := h.set(&e.flow)
	victim := 0
	for i := range set {
		if set[i].age != 0 && set[i].flow == e.flow {
			victim = i
			break
		}
		if set[i].age < set[victim].age {
			victim = i
		}
	}
	if set[victim].age != 0 && set[victim].flow != e.flow {
		h.evicted++
	}
	h.clock++
	e.age = h.clock
	set[victim] = e
}

// get returns the decision for the flow's SYN, or nil.
func (h *handshakes) get(f Flow) *handshake {
	set := h.set(&f)
	for i := range set {
		if set[i].age != 0 && set[i].flow == f {
			return &set[i]
		}
	}
	return nil
}
