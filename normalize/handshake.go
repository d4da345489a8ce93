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

func (h *handshakes) set(hash uint64) []handshake {
	i := int(hash&h.setMask) * handshakeWays
	return h.slots[i : i+handshakeWays]
}

// hash mixes the flow's addresses and ports with a per-table seed, so that
// crafted SYNs cannot aim at one set across restarts.
func (h *handshakes) hash(f *Flow) uint64 {
	if f.Client.Is4() {
		c, s := f.Client.As4(), f.Server.As4()
		return h.hashAddrs(c[:], s[:], f.ClientPort, f.ServerPort)
	}
	c, s := f.Client.As16(), f.Server.As16()
	return h.hashAddrs(c[:], s[:], f.ClientPort, f.ServerPort)
}

// hashAddrs is hash over the addresses' bytes (4 or 16 each), as they stand
// in the packet: the packet path hashes without building addresses.
func (h *handshakes) hashAddrs(client, server []byte, cport, sport uint16) uint64 {
	return mix(mix(addrWord(client)^h.seed) ^ addrWord(server) ^ uint64(cport)<<16 ^ uint64(sport)<<48)
}

func addrWord(b []byte) uint64 {
	if len(b) == 4 {
		return uint64(binary.LittleEndian.Uint32(b))
	}
	return binary.LittleEndian.Uint64(b[:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(b[8:16]), 32)
}

func mix(x uint64) uint64 {
	hi, lo := bits.Mul64(x, 0x9e3779b97f4a7c15)
	return hi ^ lo
}

// put records a SYN's decision, replacing an entry for the same flow (a
// retransmitted SYN) or else the oldest in its set.
func (h *handshakes) put(e *handshake, hash uint64) {
	set := h.set(hash)
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
	set[victim] = *e
}

// get returns the decision for the flow's SYN, or nil.
func (h *handshakes) get(f Flow, hash uint64) *handshake {
	set := h.set(hash)
	for i := range set {
		if set[i].age != 0 && set[i].flow == f {
			return &set[i]
		}
	}
	return nil
}
