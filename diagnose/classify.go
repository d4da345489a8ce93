package diagnose

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Class is a failure class.
type Class string

const (
	ClassWindowScale Class = "window-scale-mismatch"
	ClassPAWS        Class = "paws-discard"
	ClassSYNOption   Class = "syn-option-black-hole"
	ClassPMTU        Class = "path-mtu-black-hole"
	ClassSACK        Class = "broken-sack"
	ClassChecksum    Class = "bad-checksum"
	// ClassWindowLimit is a stateful box that tracks windows with a
	// window-scale shift of at most K below the negotiated one and drops
	// data beyond ack + field << K.
	ClassWindowLimit Class = "window-limit-firewall"
	// ClassOverrun is a sender sending beyond the window with no scaling
	// that could explain it (none negotiated, the same shift at both ends,
	// or data beyond even the edge the sender's own shift gives): it
	// ignores flow control; no option fixes it.
	ClassOverrun Class = "window-overrun"
	// ClassLoss is retransmission with no option pattern: not an option
	// fault, and no policy fixes it.
	ClassLoss Class = "loss"
)

// Thresholds of the findings.
const (
	// minMTU is the IPv6 minimum MTU (RFC 8200 section 5): every path
	// carries packets of this size, so a black hole drops only larger ones.
	minMTU = 1280
	// minStall is how long data must stay away before it counts as
	// dropped for good: RFC 6298's initial retransmission timeout, by
	// which a sender has sent its data again.
	minStall = time.Second
	// stallRTTs is the same in handshake round trips, for slow paths: ten
	// leave room for the sender's backed-off retransmission timeouts.
	stallRTTs = 10

	// minBadSACK: a box shifting sequence numbers spoils every block; one
	// or two stray blocks are a stack's bug, not a path fault.
	minBadSACK = 3
	// minBadsumLost: one corrupted segment never acknowledged may be the
	// last before the capture ended; two are a pattern.
	minBadsumLost = 2
	// pawsHigh: a second discard rules out a single reordered segment.
	pawsHigh = 2
	// minBeyond, minBeyondLost, minWithin: segments on each side of the
	// receiver's edge, enough to tell an edge from random loss.
	minBeyond     = 4
	minBeyondLost = 4
	minWithin     = 3
	// minUnscaledHits, minUnscaledSegs: a flight held at the unscaled
	// window twenty times in fifty segments is no application pausing.
	minUnscaledHits = 20
	minUnscaledSegs = 50
	// minEdgeSegs: the fewest segments on each side of an edge K that
	// place it; two rule out one segment lost by chance.
	minEdgeSegs = 2
	// wlHighBeyond, wlHighAcks: with this many segments beyond the edge
	// and acknowledgments after the first, the receiver was alive and the
	// edge is certain.
	wlHighBeyond = 4
	wlHighAcks   = 2
	// minPauses: one or two pauses are an application's; four timeouts in
	// a row are a sender held back.
	minPauses = 4
	// minFullSegs: eight full-size segments show a bulk sender, which
	// fills the window it is offered.
	minFullSegs = 8
	// minIPIDGaps: one or two gaps in the identification numbers can be
	// packets of the host's other traffic; three are packets lost.
	minIPIDGaps = 3
)

// Fixable reports whether a policy can fix the class.
func (c Class) Fixable() bool {
	switch c {
	case ClassWindowScale, ClassPAWS, ClassSYNOption, ClassPMTU, ClassSACK, ClassWindowLimit:
		return true
	}
	return false
}

// finish analyses a connection that ended (or was evicted, or the capture
// ended) and frees its outstanding-segment state.
func (a *analyzer) finish(c *conn) {
	if !c.used || c.h[0].pkts+c.h[1].pkts == 0 {
		return
	}
	a.drain(c)
	ci := a.connInfo(c)
	a.synStats(c, ci)
	a.rep.Duplicates += uint64(c.h[0].dups + c.h[1].dups)

	optionFault := false
	for d := 0; d < 2; d++ {
		h, o := &c.h[d], &c.h[1-d]
		if ws := h.ws; ws > normalize.MaxWindowShift {
			a.note(fmt.Sprintf("%s sent window-scale shift %d in packet %d: out of range, treated as 14 (RFC 7323)", ci.endpoint(d), ws, h.synPkt))
		}
		if h.dataSegs == 0 {
			continue
		}
		if o.pkts == 0 {
			// One direction only (a capture filter, asymmetric routing):
			// without the peer's acknowledgments nothing shows what was
			// lost, so no data finding is made.
			a.note(fmt.Sprintf("the capture holds only %s's direction of the connection to %s (first packet %d): its data was not analysed",
				ci.endpoint(d), ci.endpoint(1-d), c.firstPkt))
			continue
		}
		if a.pawsFinding(c, ci, d) {
			optionFault = true
		}
		if !optionFault && a.windowLimitFinding(c, ci, d) {
			optionFault = true
		}
		if !optionFault && a.wscaleFinding(c, ci, d) {
			optionFault = true
		}
		if o.sackBad >= minBadSACK && o.sackBad*2 >= o.sackBlocks {
			optionFault = true
			a.add(c, ci, rawFinding{class: ClassSACK, conf: High, sender: int8(d),
				summary: fmt.Sprintf("%d of %d SACK blocks %s sent about %s's data lie outside anything %s sent: a middlebox shifts sequence numbers without fixing SACK blocks",
					o.sackBad, o.sackBlocks, ci.endpoint(1-d), ci.endpoint(d), ci.endpoint(d)),
				fix: Fix{SACKPermitted: true}})
		}
		if !optionFault && a.pmtuFinding(c, ci, d) {
			optionFault = true
		}
		if h.badsumLost >= minBadsumLost {
			a.add(c, ci, rawFinding{class: ClassChecksum, conf: Medium, sender: int8(d),
				summary: fmt.Sprintf("%d segments from %s with bad TCP checksums were never acknowledged (first in packet %d): corrupted on the path",
					h.badsumLost, ci.endpoint(d), h.badPkt)})
		} else if h.bad > 0 {
			a.note(fmt.Sprintf("%d segments from %s have bad TCP checksums (first: packet %d) but were acknowledged: checksum offload on the capturing host, not a fault",
				h.bad, ci.endpoint(d), h.badPkt))
		}
		if h.partial > 0 {
			a.note(fmt.Sprintf("%s's segments carry partial checksums (transmit checksum offload): they were captured on the host that sent them", ci.endpoint(d)))
		}
	}
	if !optionFault {
		for d := 0; d < 2; d++ {
			h := &c.h[d]
			if h.retx == 0 && h.lost == 0 || c.h[1-d].pkts == 0 {
				continue
			}
			stalled := h.unackedAtEnd > 0 && h.maxTx >= 2 && !h.fin
			s := fmt.Sprintf("%s retransmitted %d of %d data segments; ", ci.endpoint(d), h.retx, h.dataSegs)
			if stalled {
				s += "the connection ended with data still unacknowledged"
			} else {
				s += "all were eventually acknowledged"
			}
			s += ", with no window, timestamp, MSS or SACK pattern: path loss, not an option fault"
			a.add(c, ci, rawFinding{class: ClassLoss, conf: Medium, sender: int8(d), summary: s})
		}
	}
}

// pawsFinding reports segments the receiver discarded because their TSval
// went backwards (RFC 7323 section 5).
func (a *analyzer) pawsFinding(c *conn, ci connInfo, d int) bool {
	h := &c.h[d]
	if h.paws == 0 {
		return false
	}
	conf := Medium
	if h.paws >= pawsHigh {
		conf = High
	}
	a.add(c, ci, rawFinding{class: ClassPAWS, conf: conf, sender: int8(d),
		summary: fmt.Sprintf("%d times %s sent a data segment whose TSval was older than one %s had already taken in order, and %s never acknowledged it, so it was sent again: PAWS discards (%d TSvals went backwards in all)",
			h.paws, ci.endpoint(d), ci.endpoint(1-d), ci.endpoint(1-d), h.tsBack),
		fix: Fix{Timestamps: normalize.TSStrip}})
	return true
}

// wscaleFinding compares the shift the receiver announced with the one its
// acceptance of data shows (RFC 7323 section 2).
func (a *analyzer) wscaleFinding(c *conn, ci connInfo, d int) bool {
	h, o := &c.h[d], &c.h[1-d]
	recv := 1 - d
	// RFC 7323 section 2.2: a SYN-ACK may carry WS only if the SYN did.
	if c.client >= 0 {
		cl, sv := &c.h[c.client], &c.h[1-c.client]
		if cl.synSeen && sv.synSeen && cl.ws < 0 && sv.ws == 0 && !cl.synWasSYNACK {
			// Shift 0 scales nothing, and the client ignores it anyway
			// (RFC 7323 section 2.2).
			a.note(fmt.Sprintf("the SYN-ACK from %s (packet %d) carries window scale 0 although the SYN carried none: harmless, shift 0 changes nothing (RFC 7323: the client ignores it)",
				ci.endpoint(1-int(c.client)), sv.synPkt))
		} else if cl.synSeen && sv.synSeen && cl.ws < 0 && sv.ws > 0 && !cl.synWasSYNACK {
			// The client ignores it (RFC 7323 section 2.2), and the SYN
			// has no option a policy could strip: a note, not a fault.
			a.note(fmt.Sprintf("the SYN-ACK from %s (packet %d) carries window scale %d although the SYN (packet %d) carried none: RFC 7323 has the client ignore it; if %s scaled its windows anyway the client under-reads them (slow, not a stall), and no policy changes that",
				ci.endpoint(1-int(c.client)), sv.synPkt, sv.ws, cl.synPkt, ci.endpoint(1-int(c.client))))
		}
	}
	sh, ok := c.shift(recv)
	if !ok {
		return false
	}
	// The largest shift under which the segments lost were nearly all
	// beyond the receiver's right edge, at a rate random loss does not
	// reach, with enough segments on both sides of the edge to tell.
	for s := sh; s >= 0; s-- {
		bs, bl := h.beyondSent[s], h.beyondLost[s]
		ws, wl := h.withinSent[s], h.withinLost[s]
		if bs < minBeyond || ws < minWithin || bl < minBeyondLost || bl*5 < bs || wl*10 > bl+wl {
			continue
		}
		rf := rawFinding{class: ClassWindowScale, conf: High, sender: int8(d), shiftSeen: sh, shiftActing: s,
			fix: Fix{WindowScale: normalize.WSStrip}}
		if s == sh {
			// The sender read the windows with a larger shift only if it
			// had one to apply: the shift it announced itself, when larger
			// than the receiver's (a stack or a box mixing up the two
			// ends' shifts), and only if its data stayed within the edge
			// that shift gives. With the same shift at both ends, past the
			// edge of its own, past a zero window, or with no scaling
			// negotiated at all, it simply ignores flow control, and
			// stripping the option changes nothing. A box raising the
			// receiver's shift between this capture and the sender looks
			// the same here; captured at the sender's end, the raised
			// shift shows in the handshake and the branch below finds it.
			own := -1
			if h.ws >= 0 && o.ws >= 0 && o.win > 0 {
				own = int(min(h.ws, normalize.MaxWindowShift))
			}
			acting := -1
			for s2 := sh + 1; s2 <= own; s2++ {
				if h.beyondSent[s2]*10 <= bs {
					acting = s2
					break
				}
			}
			if acting < 0 {
				a.add(c, ci, rawFinding{class: ClassOverrun, conf: Medium, sender: int8(d), summary: overrunSummary(h, o, ci, d, sh, own)})
				return true
			}
			rf.shiftActing = acting
			rf.summary = fmt.Sprintf("%s sent %d segments beyond the window %s advertised under its shift %d, and %d of them were lost, against %d of %d within it; its data stayed within the edge shift %d gives, and it announced shift %d itself: %s scales %s's windows by a larger shift than %s sent",
				ci.endpoint(d), bs, ci.endpoint(recv), sh, bl, wl, ws, rf.shiftActing, own, ci.endpoint(d), ci.endpoint(recv), ci.endpoint(recv))
		} else {
			rf.summary = fmt.Sprintf("the handshake seen here gives %s window-scale shift %d, but %s accepts data as if its windows were scaled by at most %d: %d of %d segments sent beyond that edge were lost, %d of %d within it",
				ci.endpoint(recv), sh, ci.endpoint(recv), s, bl, bs, wl, ws)
		}
		c.addEvidence(ClassWindowScale, evidence{pkt: o.synPkt, side: int8(recv), seq: o.isn,
			note: fmt.Sprintf("the handshake packet announcing window-scale shift %d as seen here (SYN window never scaled)", o.ws)})
		a.addEvidenceLoss(c, d)
		a.add(c, ci, rf)
		return true
	}
	if sh > 0 && h.unscaledHits >= minUnscaledHits && h.overUnsc == 0 && h.dataSegs >= minUnscaledSegs {
		a.add(c, ci, rawFinding{class: ClassWindowScale, conf: Medium, sender: int8(d), shiftSeen: sh, shiftActing: 0,
			summary: fmt.Sprintf("%s never had more data in flight than %s's unscaled window field (%d times at the limit) although %s announced shift %d: the shift is lost on the way",
				ci.endpoint(d), ci.endpoint(recv), h.unscaledHits, ci.endpoint(recv), sh),
			fix: Fix{WindowScale: normalize.WSStrip}})
		return true
	}
	return false
}

// overrunSummary says why side d's data beyond the receiver's window under
// shift sh is no window-scale fault; own is the shift d announced (clamped
// to 14), -1 when scaling is off or the receiver's window ended at zero.
func overrunSummary(h, o *half, ci connInfo, d, sh, own int) string {
	recv := 1 - d
	bs, bl := h.beyondSent[sh], h.beyondLost[sh]
	var why string
	switch {
	case own < 0:
		return fmt.Sprintf("%s sent %d segments beyond the window %s advertised (shift %d in force), %d of them lost, and no larger shift explains where it stopped (windows down to %d): it ignores flow control or a box shrinks the windows; window scaling is not the cause, no policy fixes it",
			ci.endpoint(d), bs, ci.endpoint(recv), sh, bl, o.win)
	case own == sh:
		why = fmt.Sprintf("both ends announced shift %d", sh)
	case own < sh:
		why = fmt.Sprintf("%s announced shift %d itself, below %s's", ci.endpoint(d), own, ci.endpoint(recv))
	default:
		why = fmt.Sprintf("%d of them went beyond even the edge %s's own shift %d gives", h.beyondSent[own], ci.endpoint(d), own)
	}
	return fmt.Sprintf("%s sent %d segments beyond the window %s advertised under shift %d, %d of them lost, and %s: no mix-up of the two ends' shifts explains it. It ignores flow control or a box shrinks the windows, and no policy fixes it; only a box between this capture and %s raising %s's shift would also explain it, and the handshake captured at %s's end would show the raised shift",
		ci.endpoint(d), bs, ci.endpoint(recv), sh, bl, why, ci.endpoint(d), ci.endpoint(recv), ci.endpoint(d))
}

// addEvidenceLoss cites the most retransmitted segment of side d.
func (a *analyzer) addEvidenceLoss(c *conn, d int) {
	h := &c.h[d]
	if h.maxTx < 2 {
		return
	}
	c.addEvidence(ClassWindowScale, evidence{pkt: h.stuck.pkt, side: int8(d), seq: h.stuck.seq, length: int(h.stuck.end - h.stuck.seq),
		note: fmt.Sprintf("sent %d times (last in packet %d), beyond the receiver's real window", h.stuck.tx, h.stuck.lastPkt)})
}

// pmtuFinding: full-size segments sent again and again while smaller ones
// get through, and no ICMP too-big in the capture (RFC 1191, RFC 8201,
// RFC 4821 section 1).
func (a *analyzer) pmtuFinding(c *conn, ci connInfo, d int) bool {
	h, o := &c.h[d], &c.h[1-d]
	var ps *peerStat
	if p, ok := a.peers[c.addr[1-d]]; ok {
		ps = p
	}
	if ps != nil && ps.tooBig > 0 {
		return false
	}
	// The sender's view: a segment sent three times or more and never
	// acknowledged, larger than anything acknowledged on the first try and
	// than 1280 bytes (the IPv6 minimum MTU, which paths carry), sent while
	// the peer was still open. The receiver's view of a black hole is only
	// absence (the large segments never arrive), which an idle connection
	// shows too: it is not reported.
	if isLoopback(ci.addr[0]) || isLoopback(ci.addr[1]) {
		return false
	}
	peerOpen := o.closedAt == 0 || o.closedAt > h.stuck.sentAt
	if h.repeatLost >= 1 && h.maxTx >= repeatTx && !h.stuckAcked && peerOpen && h.minRepeatWire > h.maxDelivered &&
		int(h.stuck.wire) > h.maxDelivered && h.stuck.wire > minMTU {
		working := h.maxDelivered
		why := fmt.Sprintf("the largest packet acknowledged on its first transmission was %d bytes", working)
		if working == 0 {
			why = "no data packet was acknowledged on its first transmission, only the handshake got through"
		}
		if working < minMTU && h.minRepeatWire > minMTU {
			working = minMTU
			why += "; 1280 bytes (the IPv6 minimum MTU) is a size paths carry"
		}
		conf := High
		if h.maxDelivered == 0 && !c.synAcked {
			conf = Medium
		}
		mss := working - c.headerLen()
		c.addEvidence(ClassPMTU, evidence{pkt: h.stuck.pkt, side: int8(d), seq: h.stuck.seq, length: int(h.stuck.end - h.stuck.seq),
			note: fmt.Sprintf("%d-byte packets: sent %d times, last in packet %d, never acknowledged", h.stuck.wire, h.stuck.tx, h.stuck.lastPkt)})
		a.add(c, ci, rawFinding{class: ClassPMTU, conf: conf, sender: int8(d), mss: mss,
			summary: fmt.Sprintf("%s sent %d-byte packets %d times without an acknowledgment while smaller ones got through (%s) and no ICMP fragmentation-needed/packet-too-big is in the capture",
				ci.endpoint(d), h.minRepeatWire, h.maxTx, why),
			fix: Fix{MSSMax: mss}})
		return true
	}
	return false
}

// isLoopback: no path MTU, no middlebox.
func isLoopback(a netip.Addr) bool { return a.IsLoopback() }

// windowLimitFinding finds a stateful box that honours the receiver's
// window-scale shift S only up to K < S: it computes the receiver's window
// as field << K and drops data beyond ack + field << K.
//
// The sender's view: under some K < S, every segment sent beyond the
// receiver's latest ack + field << K was lost (sent again or never
// acknowledged) while those within it were delivered, the receiver kept
// acknowledging after the first one beyond was sent (it was alive), and
// the lost data lay within the window it really advertised (field << S):
// without the box those segments would have been acknowledged like the
// others.
//
// The receiver's view: the sender's data never ended beyond ack + field <<
// K, for K < S, although field << S left room for several more segments,
// and it came in short bursts after pauses of retransmission-timeout
// length, with no hole and no SACK: the sender was sending (full-size
// segments) but only what fits the smaller window arrived. Without the box
// a bulk sender fills the window it is offered.
func (a *analyzer) windowLimitFinding(c *conn, ci connInfo, d int) bool {
	h, o := &c.h[d], &c.h[1-d]
	recv := 1 - d
	S, ok := c.shift(recv)
	// Shift 14 is what rewriting boxes raise shifts to: that is the
	// window-scale mismatch, found next.
	if !ok || S == 0 || S >= normalize.MaxWindowShift || h.ws < 0 || o.ws < 0 {
		return false
	}
	lo, hi := -1, -1
	for k := 0; k < S; k++ {
		bs, bl := h.nowBeyond[k], h.nowBeyondLost[k]
		ws, wl := h.nowWithin[k], h.nowWithinLost[k]
		// The receiver was alive: it acknowledged, or at least sent,
		// something after the first segment beyond the edge.
		alive := h.advAfter[k] >= 1 || o.lastPktAt > h.firstBeyondAt[k]
		if bs >= minEdgeSegs && ws >= minEdgeSegs && bl*10 >= bs*8 && wl*10 <= ws && alive && h.maxTx >= 2 &&
			h.nowBeyondLost[S]*5 <= bl {
			if lo < 0 {
				lo = k
			}
			hi = k
		}
	}
	if lo >= 0 {
		bs, bl := h.nowBeyond[hi], h.nowBeyondLost[hi]
		ws, wl := h.nowWithin[hi], h.nowWithinLost[hi]
		conf := High
		if bs < wlHighBeyond || h.maxTx < repeatTx || h.advAfter[hi] < wlHighAcks {
			conf = Medium
		}
		// Every segment lost was also larger than every one delivered and
		// than 1280 bytes: a path-MTU black hole fits the same packets.
		// Both are worked around, and the finding says so.
		var mss int
		if h.maxTx >= repeatTx && !h.stuckAcked && h.minRepeatWire > max(h.maxDelivered, minMTU) && int(h.stuck.wire) > minMTU {
			conf = Medium
			mss = minMTU - c.headerLen()
		}
		rng := fmt.Sprintf("K = %d", lo)
		if hi > lo {
			rng = fmt.Sprintf("K between %d and %d", lo, hi)
		}
		rf := rawFinding{class: ClassWindowLimit, conf: conf, sender: int8(d), shiftSeen: S, capLo: lo, capHi: hi,
			capWin: uint32(o.win) << hi, mss: mss,
			summary: fmt.Sprintf("%s announced window-scale shift %d, but of %s's segments those ending beyond ack + window field << %d (the latest acknowledgment's) were lost, %d of %d, and those within it delivered, %d of %d lost; %s went on acknowledging the data within that edge (%d times after the first segment beyond it), and the lost data lay within the window it advertised under shift %d: a stateful box on the path tracks the window with shift %s and drops what lies beyond",
				ci.endpoint(recv), S, ci.endpoint(d), hi, bl, bs, wl, ws, ci.endpoint(recv), h.advAfter[hi], S, rng)}
		if mss > 0 {
			rf.summary += fmt.Sprintf(". The segments lost were also the only ones over 1280 bytes (%d bytes and more; the largest delivered was %d): a path-MTU black hole would look the same here, so the policy also lowers the MSS to %d",
				h.minRepeatWire, h.maxDelivered, mss)
		}
		if h.maxTx >= 2 {
			c.addEvidence(ClassWindowLimit, evidence{pkt: h.stuck.pkt, side: int8(d), seq: h.stuck.seq, length: int(h.stuck.end - h.stuck.seq),
				note: fmt.Sprintf("sent %d times (last in packet %d), within the window advertised under shift %d but beyond ack + field << %d", h.stuck.tx, h.stuck.lastPkt, S, hi)})
		}
		c.addEvidence(ClassWindowLimit, evidence{pkt: o.synPkt, side: int8(recv), seq: o.isn,
			note: fmt.Sprintf("the handshake packet announcing window-scale shift %d", o.ws)})
		a.add(c, ci, rf)
		return true
	}
	K := h.fitMax
	// No hole: random loss of a flight shows as segments arriving past
	// the lost one; a box dropping everything beyond an edge leaves none.
	// Segments arriving twice (D-SACK) are the sender's timeouts.
	if K < S && h.pauses >= minPauses && h.holes == 0 && h.fullSegs >= minFullSegs {
		// The positive evidence: packets the sender numbered (IPv4
		// identification) that never arrived, though the sequence space
		// has no hole: they lay beyond the edge. Without it an application
		// sending in short bursts looks the same, so the finding is only
		// suspected.
		conf, also := Suspected, fmt.Sprintf(" The capture cannot tell this from an application sending in short bursts (no IPv4 identification gaps to show packets that never arrived): capture at %s's end, or check its retransmission counters, to settle it.", ci.endpoint(d))
		if h.ipidGaps >= minIPIDGaps {
			conf = Medium
			also = fmt.Sprintf(" %s's IPv4 identification numbers skip %d packets in %d places although no sequence hole was seen: packets sent and dropped on the path.", ci.endpoint(d), h.ipidLost, h.ipidGaps)
		}
		a.add(c, ci, rawFinding{class: ClassWindowLimit, conf: conf, sender: int8(d), shiftSeen: S, capLo: K, capHi: K,
			capWin: uint32(o.win) << K,
			summary: fmt.Sprintf("%s announced window-scale shift %d, but none of %s's %d new segments ever ended beyond ack + window field << %d, although the window under shift %d left room for more; the data came after %d pauses of up to %v without a hole, full-size segments in short bursts: a stateful box on the path tracks the window with shift K = %d (or more) and drops what lies beyond, and the sender keeps timing out.",
				ci.endpoint(recv), S, ci.endpoint(d), h.fitSegs, K, S, h.pauses, roundDur(h.maxPause), K) + also})
		return true
	}
	return a.unarrivedFinding(c, ci, d, S)
}

// unarrivedFinding is the receiver's view of data that stopped for good:
// the sender's later packets without data carry a sequence number beyond
// everything of its data that arrived, so it sent data the path dropped
// (one such packet says so: it is the sender's own count), yet for a
// second or more none of it arrived, not even retransmitted, while the
// receiver had acknowledged all that came and its window under shift S
// left room. A box computing the receiver's window as field << K drops
// every full-size segment when that is below the sender's segment size:
// the receiver's field, read without its shift, is the tell. Through such
// a box a mail's dialogue passes and its body never comes (after the 354
// reply, when the capture shows it).
func (a *analyzer) unarrivedFinding(c *conn, ci connInfo, d, S int) bool {
	h, o := &c.h[d], &c.h[1-d]
	recv := 1 - d
	mssp := c.mssPayload(d)
	if mssp <= 0 || h.aheadN == 0 || !seqGT(h.aheadSeq, h.sndMax) || !o.ackSet || o.ack != h.sndMax {
		return false
	}
	gap := h.aheadSeq - h.sndMax
	win := uint32(o.win)
	// The stall lasted: retransmissions had time to arrive.
	last := max(h.lastPktAt, o.lastPktAt)
	stall := time.Duration(last - h.lastNewData)
	if gap < uint32(mssp) || win == 0 || win >= uint32(mssp) || win<<S < uint32(mssp) ||
		stall < max(minStall, stallRTTs*c.handshakeRTT()) {
		return false
	}
	hi := 0
	for hi+1 < S && win<<(hi+1) < uint32(mssp) {
		hi++
	}
	rng := "K = 0"
	if hi > 0 {
		rng = fmt.Sprintf("K between 0 and %d", hi)
	}
	var mss int
	if int(o.mss)+c.headerLen() > minMTU {
		mss = minMTU - c.headerLen()
	}
	after := ""
	if o.dataGoPkt != 0 && h.lastNewData <= o.dataGoAt {
		after = fmt.Sprintf(" The stall began after %s's 354 reply (packet %d): the SMTP dialogue passed and the message body never came.", ci.endpoint(recv), o.dataGoPkt)
	}
	summary := fmt.Sprintf("%s's packets from packet %d on carry sequence number %d, %d bytes beyond all of its data that arrived, which %s acknowledged (%d such packets); in the %v from its last data to the end, none of the missing data arrived, not even retransmitted.%s "+
		"%s's window field was %d: %d bytes under the shift %d it announced, but below %s's segment size (%d bytes) read without the shift, or with a shift up to %d: a stateful box on the path that tracks the window with shift %s drops every full-size segment",
		ci.endpoint(d), h.aheadPkt, h.aheadSeq, gap, ci.endpoint(recv), h.aheadN, roundDur(stall), after,
		ci.endpoint(recv), win, win<<S, S, ci.endpoint(d), mssp, hi, rng)
	if mss > 0 {
		summary += fmt.Sprintf(". A path-MTU black hole dropping the full-size segments (%d-byte packets) would look the same from here, so the policy also lowers the MSS to %d",
			int(o.mss)+c.headerLen(), mss)
	}
	c.addEvidence(ClassWindowLimit, evidence{pkt: h.aheadPkt, time: h.aheadAt, side: int8(d), seq: h.aheadSeq, ack: o.ack,
		note: fmt.Sprintf("sequence number %d bytes beyond the data that arrived: sent and dropped before the capture", gap)})
	c.addEvidence(ClassWindowLimit, evidence{pkt: o.synPkt, side: int8(recv), seq: o.isn,
		note: fmt.Sprintf("the handshake packet announcing window-scale shift %d", o.ws)})
	a.add(c, ci, rawFinding{class: ClassWindowLimit, conf: Medium, sender: int8(d), shiftSeen: S, capLo: 0, capHi: hi,
		capWin: win << hi, mss: mss, summary: summary})
	return true
}
