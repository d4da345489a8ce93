package diagnose

import (
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// numShifts is the number of window-scale shifts 0..14 (RFC 7323 section 2.3).
const numShifts = normalize.MaxWindowShift + 1

// maxEvidence bounds the evidence kept per connection and class.
const maxEvidence = 6

// Time thresholds of the per-packet analysis.
const (
	// dupWindow: the same packet captured twice (on two interfaces, or a
	// bridge and its port) comes again within microseconds; 50 ms is far
	// above that and below a retransmission timeout (200 ms at least on
	// Linux).
	dupWindow = 50 * time.Millisecond
	// minPause is the shortest pause in a sender's new data that counts as
	// a retransmission timeout: below Linux's 200 ms minimum RTO, above
	// its 40 ms delayed ACK.
	minPause = 150 * time.Millisecond
	// pauseRTTs is the same in handshake round trips, for slow paths: a
	// sender clocked by ACKs never waits thirty of them.
	pauseRTTs = 30
)

// Other thresholds of the per-packet analysis.
const (
	// maxIPIDGap: Linux numbers a connection's packets one by one; a
	// larger jump is a counter reset or a NAT's, not this side's packets
	// lost.
	maxIPIDGap = 256
	// minOpenSegs: a window open for four more full-size segments leaves a
	// bulk sender no reason to pause.
	minOpenSegs = 4
	// sackReach: a SACK block may start below the ack (D-SACK, RFC 2883),
	// but not by 32 MiB, several times Linux's largest default window.
	sackReach = 1 << 25
	// maxReplyPayload: the 354 go-ahead comes in a short segment; 512
	// octets is the longest SMTP reply line (RFC 5321 section 4.5.3.1.5).
	maxReplyPayload = 512
)

// connKey identifies a connection regardless of direction: the endpoint
// with the smaller address (then port) comes first.
type connKey struct {
	a, b   [16]byte
	pa, pb uint16
}

// sig is what makes a packet a duplicate of the previous one from its side.
type sig struct {
	seq, ack, tsval uint32
	win, ipid       uint16
	flags           uint8
	payload         int
}

// evidence is one packet worth citing, kept per class.
type evidence struct {
	class    Class
	pkt      uint64
	time     int64
	side     int8
	seq, ack uint32
	win      uint16
	length   int
	note     string
}

// half is what one endpoint of a connection sent, and what it acknowledged
// of the other's data. Its parts are embedded: the analysis reads their
// fields as the half's own.
type half struct {
	pkts           uint64
	ttlMin, ttlMax uint8
	partial, bad   uint32 // checksum states of complete segments
	badPkt         uint64
	lastPktAt      int64 // when this side's latest packet was captured
	closedAt       int64 // when this side sent its FIN or RST
	lastSig        sig   // to tell the same packet captured twice
	lastSigTime    int64
	lastSigSet     bool

	synSent
	dataSent
	resolved
	beyondEdge
	arrivals
	ipids
	unarrived
	acksSent
	tsSent
	sackSent
}

// synSent is the handshake: SYN or SYN-ACK.
type synSent struct {
	syns          uint16
	synFirstMask  uint16
	synLastMask   uint16
	synPkt        uint64
	synLastPkt    uint64
	isn           uint32
	synSeen       bool
	mss           uint16
	ws            int16 // -1: absent
	sackOK, ts    bool
	synWasSYNACK  bool
	firstDataSeq  uint32
	firstDataSeen bool
}

// dataSent is the data sent.
type dataSent struct {
	sndMaxSet              bool
	sndMax                 uint32
	dataSegs, dataBytes    uint64
	retx, reorder, dups    uint32
	oversize               uint32
	maxPayload             int
	lastNewData, lastRetx  int64
	fin, rst               bool
	ring                   *segRing
	unscaledHits, overUnsc uint32
	flightMax              uint32
}

// resolved is what the ledger counted of the data sent as each segment was
// acknowledged, sent again or left outstanding (ledger.go).
type resolved struct {
	beyondSent, beyondLost  [numShifts]uint32
	withinSent, withinLost  [numShifts]uint32
	delivered, lost         uint32 // segments acked on the first try / retransmitted
	maxDelivered            int    // largest wire size acked on the first try
	repeatLost              uint32 // segments sent three times or more
	minRepeatWire           int
	maxTx                   uint8
	stuck                   segEntry // the most retransmitted segment
	stuckAcked              bool     // and it was acknowledged in the end
	unackedAtEnd            uint32
	badsumLost, badsumAcked uint32
	// against the receiver's latest edges (beyondNow): entries beyond and
	// within each shift's edge, and those of them lost (sent again or
	// never acknowledged)
	nowBeyond, nowBeyondLost [numShifts]uint32
	nowWithin, nowWithinLost [numShifts]uint32
}

// beyondEdge is, per shift, when the first segment beyond the latest edge
// was sent, and how often the receiver's ack advanced after that (it was
// alive and taking the data within the edge).
type beyondEdge struct {
	firstBeyondAt [numShifts]int64
	advAfter      [numShifts]uint32
}

// arrivals is the receiver's view of this side's new data: the smallest
// shift whose latest edge every segment fitted (fitMax), pauses the
// receiver did not cause, segments arriving past a hole, full-size
// segments.
type arrivals struct {
	fitMax   int
	fitSegs  uint32
	pauses   uint32
	holes    uint32
	fullSegs uint32
	maxPause time.Duration
}

// ipids is the IPv4 identification: Linux numbers the packets of a
// connection one by one, so a jump is packets this side sent that never
// reached the capture.
type ipids struct {
	lastIPID uint16
	ipidGaps uint32
	ipidLost uint32
}

// unarrived is the receiver's view of data that never arrived: this side's
// packets without data (acknowledgments, FIN, RST) carry its SND.NXT (RFC
// 9293 section 3.10.7.4), which lies beyond everything of its data in the
// capture when segments it sent were dropped before the capture.
type unarrived struct {
	aheadSeq  uint32 // the furthest such sequence number
	aheadN    uint32 // packets showing it
	aheadPkt  uint64 // the first of them
	aheadAt   int64
	dataGoPkt uint64 // latest data segment holding an SMTP 354 reply (go ahead with the body)
	dataGoAt  int64
}

// acksSent is the acknowledgments and windows this side sent.
type acksSent struct {
	ackSet      bool
	dupAcks     uint32 // acks without data repeating ack since it last advanced
	ack         uint32
	win         uint16
	edges       [numShifts]uint32
	edgesSet    bool
	cur         [numShifts]uint32 // ack + field << s of the latest acknowledgment
	lastAdvance int64
	lastAckTime int64
}

// tsSent is the timestamps this side sent.
type tsSent struct {
	tsSet       bool
	tsMax       uint32
	tsBack      uint32
	tsRecentSet bool
	tsRecent    uint32 // the newest TSval the peer took in order (its TS.Recent)
	susp        segEntry
	suspTS      uint32
	suspRecent  uint32
	suspSet     bool
	paws        uint32
}

// sackSent is the SACK blocks this side sent about the other's data.
type sackSent struct {
	sackBlocks, sackBad uint32
}

// conn is one TCP connection's state.
type conn struct {
	key        connKey
	prev, next int32 // LRU list, most recent first
	used       bool
	v6         bool
	addr       [2][16]byte
	port       [2]uint16
	h          [2]half
	client     int8 // the SYN sender, -1 if unknown
	firstPkt   uint64
	firstTime  int64
	lastTime   int64
	lastSide   int8
	synTime    int64
	synAckTime int64
	ackTime    int64
	synAcked   bool // a SYN-ACK answered the client's SYN, or the client's ACK shows one did
	implicit   bool // synAcked from the client's ACK only: the SYN-ACK is not in the capture
	refused    bool // an RST answered it
	ev         []evidence
}

func (c *conn) reset() {
	*c = conn{prev: c.prev, next: c.next, used: c.used, ev: c.ev[:0], client: -1}
	for i := range c.h {
		c.h[i].ws = -1
		c.h[i].ttlMin = 255
	}
}

func (c *conn) addEvidence(cl Class, e evidence) {
	n := 0
	for i := range c.ev {
		if c.ev[i].class == cl {
			n++
		}
	}
	if n >= maxEvidence {
		return
	}
	e.class = cl
	c.ev = append(c.ev, e)
}

// shift returns the window-scale shift side d's windows carry, and whether
// it is known (the handshake was seen).
func (c *conn) shift(d int) (int, bool) {
	h, o := &c.h[d], &c.h[1-d]
	if !h.synSeen || !o.synSeen {
		return 0, false
	}
	if h.ws < 0 || o.ws < 0 {
		return 0, true
	}
	return int(min(h.ws, normalize.MaxWindowShift)), true
}

// tsOptionSpace is what the timestamps option takes of a full-size
// segment: its 10 bytes and the two NOPs every stack pads it with.
const tsOptionSpace = 12

// headerLen is the size of the IP and TCP headers without options: a full
// packet's size less its payload.
func (c *conn) headerLen() int {
	if c.v6 {
		return normalize.IPv6MinimumSize + normalize.TCPMinimumSize
	}
	return normalize.IPv4MinimumSize + normalize.TCPMinimumSize
}

// mssPayload is the payload of a full-size segment side d sends: the peer's
// MSS less the timestamps option, or 0 if unknown.
func (c *conn) mssPayload(d int) int {
	o := &c.h[1-d]
	if o.mss == 0 {
		return 0
	}
	p := int(o.mss)
	if c.h[d].ts && o.ts {
		p -= tsOptionSpace
	}
	return p
}

// update folds one segment sent by side d into the connection.
func (a *analyzer) update(c *conn, d int, s *segment) {
	h, o := &c.h[d], &c.h[1-d]
	t := s.tcp
	flags := t.Flags()
	seq, ackn, win := t.Seq(), t.Ack(), t.Window()

	// Exact duplicates (the same packet captured twice) are counted and
	// otherwise ignored.
	sg := sig{seq: seq, ack: ackn, win: win, flags: flags, payload: s.payload, tsval: s.tsval}
	if !s.v6 {
		sg.ipid = s.ipid
	}
	if h.lastSigSet && sg == h.lastSig && c.lastSide == int8(d) && time.Duration(a.now-h.lastSigTime) < dupWindow {
		h.dups++
		a.dups++
		return
	}
	h.lastSig, h.lastSigSet, h.lastSigTime = sg, true, a.now
	c.lastSide = int8(d)

	h.pkts++
	h.lastPktAt = a.now
	h.ttlMin, h.ttlMax = min(h.ttlMin, s.ttl), max(h.ttlMax, s.ttl)
	if !s.v6 && s.ipid != 0 {
		if gap := s.ipid - h.lastIPID - 1; h.lastIPID != 0 && gap > 0 && gap < maxIPIDGap {
			h.ipidGaps++
			h.ipidLost += uint32(gap)
		}
		h.lastIPID = s.ipid
	}
	if s.complete {
		switch s.csum {
		case normalize.ChecksumPartial:
			h.partial++
		case normalize.ChecksumBad:
			if h.bad == 0 {
				h.badPkt = a.pkt
			}
			h.bad++
		}
	}

	if s.payload == 0 && flags&normalize.FlagSYN == 0 && h.sndMaxSet && seqGT(seq, h.sndMax) {
		if h.aheadN == 0 || !seqGT(h.aheadSeq, h.sndMax) {
			h.aheadN, h.aheadPkt, h.aheadAt = 0, a.pkt, a.now
		}
		if h.aheadN == 0 || seqGT(seq, h.aheadSeq) {
			h.aheadSeq = seq
		}
		h.aheadN++
	}
	if flags&normalize.FlagRST != 0 {
		h.rst = true
		if h.closedAt == 0 {
			h.closedAt = a.now
		}
		if c.client == int8(1-d) && !c.synAcked && o.synSeen {
			c.refused = true
		}
		return
	}

	if flags&normalize.FlagSYN != 0 {
		a.handshake(c, d, s)
		return
	}
	if c.client == int8(d) && c.synAcked && c.ackTime == 0 {
		c.ackTime = a.now
	}
	// The client acknowledging the server's ISN got the SYN-ACK, even
	// when the capture holds only the client's direction.
	if c.client == int8(d) && !c.synAcked && flags&normalize.FlagACK != 0 && h.synSeen && (!o.synSeen || ackn == o.isn+1) {
		c.synAcked, c.implicit = true, !o.synSeen
	}

	if flags&normalize.FlagACK != 0 {
		a.ack(c, d, s, ackn, win)
	}

	end := seq + uint32(s.payload)
	if s.payload > 0 {
		a.data(c, d, s, seq, end)
	}
	if flags&normalize.FlagFIN != 0 {
		h.fin = true
		if h.closedAt == 0 {
			h.closedAt = a.now
		}
	}

	if s.hasTS {
		if h.tsSet && seqLT(s.tsval, h.tsMax) {
			h.tsBack++
		}
		if !h.tsSet || seqGT(s.tsval, h.tsMax) {
			h.tsMax = s.tsval
		}
		h.tsSet = true
	}
}

// handshake records a SYN or SYN-ACK.
func (a *analyzer) handshake(c *conn, d int, s *segment) {
	h := &c.h[d]
	t := s.tcp
	synack := t.Flags()&normalize.FlagACK != 0
	if !synack && c.client < 0 {
		c.client = int8(d)
	}
	if synack && c.client < 0 {
		c.client = int8(1 - d)
	}
	if !h.synSeen {
		h.synSeen = true
		h.synWasSYNACK = synack
		h.isn = t.Seq()
		h.synFirstMask = s.optMask
		h.synPkt = a.pkt
		h.mss, h.ws, h.sackOK, h.ts = s.mss, s.ws, s.sackOK, s.hasTS
		if synack {
			c.synAckTime = a.now
		} else {
			c.synTime = a.now
		}
	} else {
		// A retransmitted SYN may carry fewer options (some stacks drop
		// them after a few tries): what the answered one carried counts.
		h.isn = t.Seq()
		h.mss, h.ws, h.sackOK, h.ts = s.mss, s.ws, s.sackOK, s.hasTS
	}
	h.syns++
	h.synLastMask = s.optMask
	h.synLastPkt = a.pkt
	if h.syns == minSYNs || (h.syns > 1 && h.synLastMask != h.synFirstMask) {
		c.addEvidence(ClassSYNOption, evidence{pkt: a.pkt, time: a.now, side: int8(d), seq: t.Seq(),
			note: "SYN sent again: " + itoa(int(h.syns)) + " transmissions so far, options " + maskString(s.optMask)})
	}
	if synack {
		if !c.synAcked {
			c.synAcked = true
			if c.synAckTime == 0 {
				c.synAckTime = a.now
			}
		}
		a.ack(c, d, s, t.Ack(), t.Window())
	}
	if s.hasTS {
		// The peer takes its TS.Recent from the handshake (RFC 7323
		// section 4.3): a first data segment already older is discarded.
		h.tsSet, h.tsMax = true, s.tsval
		h.tsRecent, h.tsRecentSet = s.tsval, true
	}
}

// ack processes the acknowledgment, window and SACK blocks side d sent
// about the other side's data.
func (a *analyzer) ack(c *conn, d int, s *segment, ackn uint32, win uint16) {
	h, o := &c.h[d], &c.h[1-d]
	if h.ackSet && ackn == h.ack && s.payload == 0 && s.tcp.Flags()&(normalize.FlagSYN|normalize.FlagFIN) == 0 {
		h.dupAcks++
	}
	if !h.ackSet || seqGT(ackn, h.ack) {
		if h.ackSet {
			h.lastAdvance = a.now
			for sh, t := range o.firstBeyondAt {
				if t != 0 && t < a.now {
					o.advAfter[sh]++
				}
			}
		}
		h.dupAcks = 0
		h.ack = ackn
		h.ackSet = true
		if o.ring != nil {
			a.acked(c, 1-d, ackn)
		}
		if o.suspSet && seqGE(ackn, o.susp.end) {
			o.suspSet = false
		}
	}
	h.win = win
	h.lastAckTime = a.now
	// The right edge of this side's receive window under every shift: the
	// analysis picks the one the data behaved as if it were in force. SYN
	// windows are never scaled.
	syn := s.tcp.Flags()&normalize.FlagSYN != 0
	for sh := range h.edges {
		e := ackn + uint32(win)<<sh
		if syn {
			e = ackn + uint32(win)
		}
		if !h.edgesSet || seqGT(e, h.edges[sh]) {
			h.edges[sh] = e
		}
		if !h.edgesSet || !seqLT(ackn, h.ack) {
			h.cur[sh] = e
		}
	}
	h.edgesSet = true

	if s.nSACK > 0 && o.sndMaxSet && o.firstDataSeen && seqGE(ackn, o.firstDataSeq) {
		for i := 0; i < s.nSACK; i++ {
			l, r := s.sack[i][0], s.sack[i][1]
			h.sackBlocks++
			bad := seqGT(r, o.sndMax+1) || !seqLT(l, r) || seqLT(l, ackn-sackReach)
			if bad {
				h.sackBad++
				c.addEvidence(ClassSACK, evidence{pkt: a.pkt, time: a.now, side: int8(d), seq: s.tcp.Seq(), ack: ackn, win: win,
					note: "SACK block " + utoa(l) + "-" + utoa(r) + " outside anything sent (ack " + utoa(ackn) + ", highest sent " + utoa(o.sndMax) + ")"})
			}
		}
	}
}

// data processes a segment carrying payload [seq, end) sent by side d.
func (a *analyzer) data(c *conn, d int, s *segment, seq, end uint32) {
	h, o := &c.h[d], &c.h[1-d]
	h.dataSegs++
	h.dataBytes += uint64(s.payload)
	h.maxPayload = max(h.maxPayload, s.payload)
	if !h.firstDataSeen {
		h.firstDataSeen, h.firstDataSeq = true, seq
	}
	if smtpGoAhead(s) {
		h.dataGoPkt, h.dataGoAt = a.pkt, a.now
	}
	mssp := c.mssPayload(d)
	wire := s.ipLen
	if mssp > 0 && s.payload > mssp {
		h.oversize++
		wire = s.ipLen - s.payload + mssp
	}
	if !h.sndMaxSet {
		h.sndMaxSet, h.sndMax = true, seq
	}

	// PAWS: a pending suspect sent again without having been acknowledged
	// was discarded by the receiver.
	if h.suspSet && seqLT(seq, h.susp.end) && seqGT(end, h.susp.seq) && seqLT(seq, h.sndMax) {
		h.paws++
		h.suspSet = false
		c.addEvidence(ClassPAWS, evidence{pkt: a.pkt, time: a.now, side: int8(d), seq: seq, ack: s.tcp.Ack(), win: s.tcp.Window(), length: s.payload,
			note: "sent again: the segment of packet " + u64toa(h.susp.pkt) + " (TSval " + utoa(h.suspTS) + ", older than " + utoa(h.suspRecent) + " already seen) was never acknowledged"})
	}
	if s.hasTS && h.ts && o.ts {
		switch {
		case h.tsRecentSet && seqLT(s.tsval, h.tsRecent):
			if !h.suspSet {
				h.suspSet = true
				h.susp = segEntry{seq: seq, end: end, pkt: a.pkt}
				h.suspTS, h.suspRecent = s.tsval, h.tsRecent
				c.addEvidence(ClassPAWS, evidence{pkt: a.pkt, time: a.now, side: int8(d), seq: seq, ack: s.tcp.Ack(), win: s.tcp.Window(), length: s.payload,
					note: "TSval " + utoa(s.tsval) + " is older than TSval " + utoa(h.tsRecent) + ", the newest taken in order (handshake included): PAWS discards it"})
			}
		case !o.ackSet || seqLE(seq, o.ack):
			if !h.tsRecentSet || seqGT(s.tsval, h.tsRecent) {
				h.tsRecent, h.tsRecentSet = s.tsval, true
			}
		}
	}

	if seqGT(end, h.sndMax) {
		// New data (possibly after a gap the capture missed).
		if o.ackSet && seqGT(h.sndMax, o.ack) {
			flight := end - o.ack
			h.flightMax = max(h.flightMax, flight)
			if sh, ok := c.shift(1 - d); ok && sh > 0 && o.win > 0 {
				switch {
				case flight > uint32(o.win):
					h.overUnsc++
				case mssp > 0 && flight+uint32(mssp) > uint32(o.win):
					h.unscaledHits++
				}
			}
		}
		var beyond, beyondNow uint16
		if o.edgesSet {
			for sh := range o.edges {
				if seqGT(end, o.edges[sh]) {
					beyond |= 1 << sh
				}
				if seqGT(end, o.cur[sh]) {
					beyondNow |= 1 << sh
					if h.firstBeyondAt[sh] == 0 {
						h.firstBeyondAt[sh] = a.now
					}
				}
			}
			a.arrival(c, d, s, seq, beyondNow)
		}
		h.lastNewData = a.now
		if h.ring == nil {
			h.ring = a.getRing()
		}
		a.push(c, d, segEntry{seq: seq, end: end, wire: uint16(min(wire, 0xffff)), tx: 1, badsum: s.badChecksum(), beyond: beyond, beyondNow: beyondNow, sentAt: a.now, pkt: a.pkt})
		h.sndMax = end
		return
	}
	// Old data: a retransmission, a reordered segment filling a gap, or a
	// keepalive probe.
	if s.payload <= 1 && end == h.sndMax {
		return
	}
	// At the receiver a retransmission fills a hole like a reordered
	// segment does; it comes after duplicate acks for the hole.
	if h.ring != nil && h.ring.size > 0 && seqGE(seq, h.ring.at(0).seq) {
		if !a.retransmitted(c, d, seq, end, s) && !(o.ackSet && seq == o.ack && o.dupAcks >= 2) {
			h.reorder++
			return
		}
	} else if o.ackSet && seqGE(seq, o.ack) && h.ring != nil && h.ring.size > 0 && !(seq == o.ack && o.dupAcks >= 2) {
		h.reorder++
		return
	}
	h.retx++
	h.lastRetx = a.now
}

// arrival records what the receiver's side of a capture shows of side d's
// new data: the smallest shift under which it fitted the receiver's latest
// window, and whether it came after a pause the receiver did not cause
// (its window was open) or past a hole.
func (a *analyzer) arrival(c *conn, d int, s *segment, seq uint32, beyondNow uint16) {
	h, o := &c.h[d], &c.h[1-d]
	need := 0
	for need < numShifts && beyondNow&(1<<need) != 0 {
		need++
	}
	h.fitMax = max(h.fitMax, need)
	h.fitSegs++
	if mssp := c.mssPayload(d); mssp > 0 && s.payload >= mssp*3/4 {
		h.fullSegs++
	}
	if h.sndMaxSet && seqGT(seq, h.sndMax) {
		h.holes++
	}
	sh, ok := c.shift(1 - d)
	if !ok || !o.ackSet || o.lastAckTime == 0 {
		return
	}
	gap := time.Duration(a.now - o.lastAckTime)
	rtt := c.handshakeRTT()
	open := int64(int32(o.cur[sh] - h.sndMax))
	if mssp := c.mssPayload(d); gap > max(minPause, pauseRTTs*rtt) && mssp > 0 && open >= int64(minOpenSegs*mssp) {
		h.pauses++
		h.maxPause = max(h.maxPause, gap)
	}
}

// smtpGoAhead reports whether s is an SMTP server's reply holding 354, the
// go-ahead for the message body (RFC 5321 section 4.1.1.4), as far as the
// snap length kept it. Pipelined replies come in one segment with 354
// last.
func smtpGoAhead(s *segment) bool {
	if s.payload > maxReplyPayload {
		return false
	}
	switch s.tcp.SrcPort() {
	case 25, 465, 587:
	default:
		return false
	}
	b := s.tcp[s.tcp.DataOffset():]
	for i := 0; i+4 <= len(b); i++ {
		if (i == 0 || b[i-1] == '\n') && b[i] == '3' && b[i+1] == '5' && b[i+2] == '4' && (b[i+3] == ' ' || b[i+3] == '-') {
			return true
		}
	}
	return false
}

// handshakeRTT is the round trip the handshake took as the capture saw
// it, 0 if unknown.
func (c *conn) handshakeRTT() time.Duration {
	if c.synTime != 0 && c.ackTime > c.synTime {
		return time.Duration(c.ackTime - c.synTime)
	}
	return 0
}
