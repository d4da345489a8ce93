package normalize

import (
	"errors"
	"math/bits"
)

// Fields of tcpnorm's part of the packet mark and connmark. They sit in the
// lowest MarkFieldBits bits of [rules] mark, which must be contiguous.
//
// The handshake verdict sets the saved fields on the SYN-ACK; a filter-table
// rule saves them to the connmark; mangle restores them on later segments,
// adds fieldOriginal on packets in conntrack's ORIGINAL direction, and queues
// only the direction that needs rewriting. So a clamp needs no memory and
// survives a restart of the daemon.
const (
	fieldDelta       = 0x0f // clamp: the local host's shift minus window_scale_max (1..14)
	fieldRepair      = 0x10 // repair the remote's TSvals
	fieldLocalClient = 0x20 // the local host opened the connection (outbound)
	fieldOriginal    = 0x40 // set per packet by the restore rule; never saved
	fieldsSaved      = fieldDelta | fieldRepair | fieldLocalClient

	// MarkFieldBits is how many contiguous bits [rules] mark must have.
	MarkFieldBits = 8
)

// MarkBits places the fields inside a [rules] mark mask.
type MarkBits struct {
	shift uint8
	ok    bool
}

// ProbeMark is the mark bit of tcpnorm probe's own sockets (SO_MARK). The
// daemon's rules leave connections carrying it to the probe, so the mark
// bits a policy table uses ([rules] mark) must not include it.
const ProbeMark uint32 = 0x00800000

// Used is the mask of the mark bits b's fields occupy.
func (b MarkBits) Used() uint32 {
	if !b.ok {
		return 0
	}
	return b.put(0xff)
}

// NewMarkBits checks a [rules] mark mask: its set bits must be contiguous
// and at least MarkFieldBits wide.
func NewMarkBits(mask uint32) (MarkBits, error) {
	if mask == 0 {
		return MarkBits{}, errors.New("mark mask is 0")
	}
	shift := bits.TrailingZeros32(mask)
	run := mask >> shift
	if run&(run+1) != 0 {
		return MarkBits{}, errors.New("mark mask bits must be contiguous")
	}
	if bits.OnesCount32(run) < MarkFieldBits {
		return MarkBits{}, errors.New("mark mask needs at least 8 contiguous bits")
	}
	return MarkBits{shift: uint8(shift), ok: true}, nil
}

func (b MarkBits) put(f uint32) uint32 { return f << b.shift }

func (b MarkBits) get(mark uint32) uint32 {
	if !b.ok {
		return 0
	}
	return mark >> b.shift & 0xff
}

// Saved is the mask of the fields saved to the connmark.
func (b MarkBits) Saved() uint32 { return b.put(fieldsSaved) }

// Original is the bit the restore rule adds to packets in conntrack's
// ORIGINAL direction.
func (b MarkBits) Original() uint32 { return b.put(fieldOriginal) }

// Selector matches packets whose (restored) mark needs the stateful queue:
// mark&Mask == Value, and mark&NonZero != 0.
type Selector struct {
	Value, Mask, NonZero uint32
	Why                  string
	// Bypass lets the kernel accept the packet unchanged while no daemon
	// has the queue bound (it died, or is restarting). A clamped flow's
	// local window then reaches the path as the raw field, which the path
	// reads as field << N, less than the real window: slower, never wrong.
	// A repaired flow's scrambled TSval would reach the local host and
	// poison its PAWS state for good, so repair waits for the daemon.
	Bypass bool
}

// Selectors lists the stateful queueing rules: the local host's segments of
// clamped flows and the remote's segments of repaired flows, for both ways a
// connection can be opened; then the local host's segments of repaired
// flows, only read (their TSecr tells a worker that lost the flow's state
// what the local host accepted), and let through unread while no daemon is
// bound. A clamped and repaired flow's local segments match the clamp
// rules first.
func (b MarkBits) Selectors() []Selector {
	dir := uint32(fieldLocalClient | fieldOriginal)
	return []Selector{
		{b.put(dir), b.put(dir), b.put(fieldDelta), "clamp: local client's segments", true},
		{0, b.put(dir), b.put(fieldDelta), "clamp: local server's segments", true},
		{b.put(fieldLocalClient | fieldRepair), b.put(dir | fieldRepair), b.put(fieldRepair), "repair: remote server's segments", false},
		{b.put(fieldOriginal | fieldRepair), b.put(dir | fieldRepair), b.put(fieldRepair), "repair: remote client's segments", false},
		{b.put(dir | fieldRepair), b.put(dir | fieldRepair), b.put(fieldRepair), "repair: local client's segments, read", true},
		{b.put(fieldRepair), b.put(dir | fieldRepair), b.put(fieldRepair), "repair: local server's segments, read", true},
	}
}
