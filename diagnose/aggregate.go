package diagnose

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Confidence is how strongly a finding's evidence shows its class.
type Confidence uint8

const (
	High Confidence = iota
	Medium
	Low
	// Suspected is a finding whose evidence is too weak for a policy: it
	// names what to capture next instead.
	Suspected
)

// connInfo is what a finding keeps of its connection.
type connInfo struct {
	addr   [2]netip.Addr
	port   [2]uint16
	client int8 // -1: the handshake was not in the capture
	score  int  // > 0: side 0 is the capturing host; < 0: side 1
	why    []string
	pkt    uint64 // first packet
}

// rawFinding is a finding before the vantage point is settled and the
// findings are grouped by peer.
type rawFinding struct {
	class   Class
	conf    Confidence
	ci      connInfo
	sender  int8 // the data sender's side in ci, -1: none (handshake)
	count   int
	summary string
	ev      []evidence
	fix     Fix
	// facts for the explanation
	shiftSeen, shiftActing int
	mss                    int
	opts                   uint16
	peerFixed              bool // the SYN finding is per peer (sender is the client)
	// window-limit: the range of the cap K the data shows, and the
	// receiver's window the sender was held to under it
	capLo, capHi int
	capWin       uint32
}

type aggKey struct {
	class  Class
	a, b   [16]byte
	sender int8
}

// add groups a connection's finding with those of the same class and peer.
func (a *analyzer) add(c *conn, ci connInfo, rf rawFinding) {
	rf.ci = ci
	rf.count = 1
	rf.ev = evidenceOf(c, rf.class)
	if rf.class == ClassLoss || rf.class == ClassChecksum {
		rf.ev = nil
	}
	a.addRaw(rf)
}

func (a *analyzer) addRaw(rf rawFinding) {
	k := aggKey{class: rf.class, sender: rf.sender}
	k.a = addr16(rf.ci.addr[0])
	k.b = addr16(rf.ci.addr[1])
	if f, ok := a.agg[k]; ok {
		f.count += rf.count
		return
	}
	if len(a.agg) >= maxAggregated {
		a.rep.Unlisted++
		return
	}
	p := &rf
	a.agg[k] = p
	a.aggOrder = append(a.aggOrder, p)
}

func addr16(a netip.Addr) [16]byte { return a.As16() }

// maxNotes bounds the notes of a report: a capture of many broken
// connections repeats the same few.
const maxNotes = 64

func (a *analyzer) note(s string) {
	if a.notes[s] || len(a.notes) >= maxNotes {
		return
	}
	a.notes[s] = true
	a.rep.Notes = append(a.rep.Notes, s)
}

// connInfo settles what the connection says about the vantage point.
func (a *analyzer) connInfo(c *conn) connInfo {
	ci := connInfo{client: c.client, pkt: c.firstPkt}
	for d := 0; d < 2; d++ {
		ci.addr[d], ci.port[d] = c.netAddr(d), c.port[d]
	}
	for d := 0; d < 2; d++ {
		for _, p := range a.opt.Local {
			if p.Contains(ci.addr[d]) {
				ci.score += 100 * (1 - 2*d)
				ci.why = append(ci.why, fmt.Sprintf("%s is a local address (--local)", ci.addr[d]))
			}
		}
	}
	if ci.score != 0 {
		return ci
	}
	h0, h1 := &c.h[0], &c.h[1]
	if h0.pkts > 0 && h1.pkts > 0 {
		i0, i1 := initialTTL(h0.ttlMax), initialTTL(h1.ttlMax)
		switch {
		case i0 && !i1:
			ci.score += 2
			ci.why = append(ci.why, fmt.Sprintf("%s's packets leave with TTL/hop limit %d (an initial value) and arrive from %s with %d (after hops)", ci.addr[0], h0.ttlMax, ci.addr[1], h1.ttlMax))
		case i1 && !i0:
			ci.score -= 2
			ci.why = append(ci.why, fmt.Sprintf("%s's packets leave with TTL/hop limit %d (an initial value) and arrive from %s with %d (after hops)", ci.addr[1], h1.ttlMax, ci.addr[0], h0.ttlMax))
		}
	}
	switch {
	case h0.partial > 0 && h1.partial == 0:
		ci.score += 3
		ci.why = append(ci.why, fmt.Sprintf("%s's segments carry partial checksums: transmit offload on the capturing host", ci.addr[0]))
	case h1.partial > 0 && h0.partial == 0:
		ci.score -= 3
		ci.why = append(ci.why, fmt.Sprintf("%s's segments carry partial checksums: transmit offload on the capturing host", ci.addr[1]))
	}
	if c.client >= 0 && c.synTime != 0 && c.synAckTime != 0 && c.ackTime != 0 {
		d1, d2 := time.Duration(c.synAckTime-c.synTime), time.Duration(c.ackTime-c.synAckTime)
		sign := 1 - 2*int(c.client) // toward the client
		switch {
		case d1 > 4*d2 && d1 > 0:
			ci.score += sign
			ci.why = append(ci.why, fmt.Sprintf("the client answered the SYN-ACK within %v but the SYN-ACK took %v: the capture is near the client", timeDur(d2), timeDur(d1)))
		case d2 > 4*d1 && d2 > 0:
			ci.score -= sign
			ci.why = append(ci.why, fmt.Sprintf("the server answered the SYN within %v but the client took %v to answer the SYN-ACK: the capture is near the server", timeDur(d1), timeDur(d2)))
		}
	}
	switch {
	case ci.score > 0:
		a.votes[ci.addr[0]]++
	case ci.score < 0:
		a.votes[ci.addr[1]]++
	}
	return ci
}

func initialTTL(t uint8) bool { return t == 64 || t == 128 || t == 255 || t == 32 }

func timeDur(d time.Duration) string {
	return fmt.Sprint(roundDur(d))
}

func (ci *connInfo) endpoint(d int) string {
	return netip.AddrPortFrom(ci.addr[d], ci.port[d]).String()
}

func maskString(m uint16) string {
	if m == 0 {
		return "(none)"
	}
	var parts []string
	for _, o := range optNames {
		if m&o.bit != 0 {
			parts = append(parts, o.name)
		}
	}
	return strings.Join(parts, ",")
}

func itoa(i int) string      { return strconv.Itoa(i) }
func utoa(u uint32) string   { return strconv.FormatUint(uint64(u), 10) }
func u64toa(u uint64) string { return strconv.FormatUint(u, 10) }
