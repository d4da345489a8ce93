package diagnose

import "time"

// ringSize bounds the outstanding segments tracked per sending side. Older
// ones are accounted for early when it fills.
const ringSize = 64

// segEntry is one transmission of new data, until it is acknowledged.
type segEntry struct {
	seq, end uint32
	wire     uint16 // IP packet length of one wire segment of it
	tx       uint8  // transmissions so far
	badsum   bool
	beyond   uint16 // bit s: its end was beyond the receiver's edge under shift s
	// bit s: its end was beyond ack + field << s of the receiver's latest
	// acknowledgment: what a box computing windows with shift s forwards
	beyondNow uint16
	sentAt    int64
	pkt       uint64 // first transmission
	lastPkt   uint64 // latest retransmission
}

// segRing holds a side's outstanding segments in sequence order.
type segRing struct {
	e          [ringSize]segEntry
	head, size int
}

func (r *segRing) at(i int) *segEntry { return &r.e[(r.head+i)%ringSize] }

// retransmitted marks the ring entries [seq, end) overlaps as sent again and
// reports whether there was one.
func (a *analyzer) retransmitted(c *conn, d int, seq, end uint32, s *segment) bool {
	r := c.h[d].ring
	hit := false
	for i := 0; i < r.size; i++ {
		e := r.at(i)
		if seqGE(e.seq, end) {
			break
		}
		if seqGT(e.end, seq) {
			hit = true
			if e.tx < 255 {
				e.tx++
			}
			e.lastPkt = a.pkt
			if e.tx == repeatTx {
				c.addEvidence(ClassPMTU, evidence{pkt: a.pkt, time: a.now, side: int8(d), seq: seq, ack: s.tcp.Ack(), win: s.tcp.Window(), length: s.payload,
					note: "third transmission of the segment first sent in packet " + u64toa(e.pkt) + " (" + itoa(int(e.wire)) + "-byte packets)"})
			}
		}
	}
	return hit
}

func (a *analyzer) getRing() *segRing {
	if n := len(a.rings); n > 0 {
		r := a.rings[n-1]
		a.rings = a.rings[:n-1]
		r.head, r.size = 0, 0
		return r
	}
	return new(segRing)
}

// push appends an entry, accounting for the oldest one early when full.
func (a *analyzer) push(c *conn, d int, e segEntry) {
	r := c.h[d].ring
	if r.size == ringSize {
		a.account(c, d, r.at(0), false)
		r.head = (r.head + 1) % ringSize
		r.size--
	}
	*r.at(r.size) = e
	r.size++
}

// acked accounts for side d's entries the peer's ack covers.
func (a *analyzer) acked(c *conn, d int, ackn uint32) {
	r := c.h[d].ring
	for r.size > 0 && seqLE(r.at(0).end, ackn) {
		a.account(c, d, r.at(0), true)
		r.head = (r.head + 1) % ringSize
		r.size--
	}
}

// repeatTx: a segment sent three times was lost twice, the second time
// after a backed-off timeout: a packet the path does not carry, not a
// random drop.
const repeatTx = 3

// lostAfter: a segment unacknowledged this long is lost, not in flight:
// RFC 6298's initial retransmission timeout.
const lostAfter = time.Second

// account folds one resolved entry into side d's counters. acked says the
// peer acknowledged it (rather than the ring or the capture ending).
func (a *analyzer) account(c *conn, d int, e *segEntry, acked bool) {
	h := &c.h[d]
	lost := e.tx > 1
	// Never acknowledged, and a second passed: lost too; sent just before
	// the capture ended, it tells nothing.
	gone := lost || !acked && time.Duration(a.now-e.sentAt) > lostAfter
	for sh := 0; sh < numShifts; sh++ {
		if e.beyondNow&(1<<sh) != 0 {
			h.nowBeyond[sh]++
			if gone {
				h.nowBeyondLost[sh]++
			}
		} else {
			h.nowWithin[sh]++
			if gone {
				h.nowWithinLost[sh]++
			}
		}
		if e.beyond&(1<<sh) != 0 {
			h.beyondSent[sh]++
			if lost {
				h.beyondLost[sh]++
			}
		} else {
			h.withinSent[sh]++
			if lost {
				h.withinLost[sh]++
			}
		}
	}
	if e.badsum {
		if lost || !acked {
			h.badsumLost++
		} else {
			h.badsumAcked++
		}
	}
	switch {
	case lost:
		h.lost++
	case acked:
		h.delivered++
		h.maxDelivered = max(h.maxDelivered, int(e.wire))
	}
	if !acked {
		h.unackedAtEnd++
	}
	if e.tx >= repeatTx {
		h.repeatLost++
		if h.minRepeatWire == 0 || int(e.wire) < h.minRepeatWire {
			h.minRepeatWire = int(e.wire)
		}
	}
	if e.tx > h.maxTx {
		h.maxTx = e.tx
		h.stuck = *e
		h.stuckAcked = acked
	}
}

// drain accounts for every entry still outstanding when the connection ends.
func (a *analyzer) drain(c *conn) {
	for d := range c.h {
		r := c.h[d].ring
		if r == nil {
			continue
		}
		for r.size > 0 {
			a.account(c, d, r.at(0), false)
			r.head = (r.head + 1) % ringSize
			r.size--
		}
		a.rings = append(a.rings, r)
		c.h[d].ring = nil
	}
}
