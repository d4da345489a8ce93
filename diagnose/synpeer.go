package diagnose

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// minSYNs: a SYN sent three times went unanswered through two timeouts
// (1 s, then 2 s on Linux): no single lost packet explains it.
const minSYNs = 3

// peerStat is what the SYNs to one remote address did, across connections.
type peerStat struct {
	unanswered   int
	unMask       uint16 // options every unanswered SYN carried
	unSYNs       int
	unCI         connInfo
	unEv         []evidence
	answered     [8]uint16
	answeredPkt  [8]uint64
	nAnswered    int
	within       bool // one connection's later SYN, with fewer options, was answered
	withinFirst  uint16
	withinLast   uint16
	withinCI     connInfo
	withinEv     []evidence
	tooBig       int
	tooBigMTU    int
	unreachable  int // ICMP destination-unreachable errors about it
	addr         netip.Addr
	answeredConn int
}

// synStats records the connection's handshake in its server's peerStat.
func (a *analyzer) synStats(c *conn, ci connInfo) {
	if c.client < 0 {
		return
	}
	cl := &c.h[c.client]
	if !cl.synSeen || cl.synWasSYNACK {
		return
	}
	ps := a.peer(c.addr[1-c.client])
	if ps == nil {
		return
	}
	ps.addr = c.netAddr(1 - int(c.client))
	switch {
	case c.synAcked:
		ps.answeredConn++
		found := false
		for i := 0; i < ps.nAnswered; i++ {
			found = found || ps.answered[i] == cl.synLastMask
		}
		if !found && ps.nAnswered < len(ps.answered) {
			ps.answered[ps.nAnswered] = cl.synLastMask
			ps.answeredPkt[ps.nAnswered] = cl.synLastPkt
			ps.nAnswered++
		}
		if cl.syns >= 2 && cl.synFirstMask&^cl.synLastMask != 0 && !ps.within {
			ps.within = true
			ps.withinFirst, ps.withinLast = cl.synFirstMask, cl.synLastMask
			ps.withinCI = ci
			ps.withinEv = evidenceOf(c, ClassSYNOption)
		}
	case !c.refused && cl.syns >= minSYNs:
		if ps.unanswered == 0 {
			ps.unMask = cl.synFirstMask
			ps.unCI = ci
			ps.unEv = evidenceOf(c, ClassSYNOption)
			ps.unSYNs = int(cl.syns)
			ps.unEv = append([]evidence{{class: ClassSYNOption, pkt: cl.synPkt, side: c.client, seq: cl.isn,
				note: "SYN with options " + maskString(cl.synFirstMask)}}, ps.unEv...)
		}
		ps.unMask &= cl.synLastMask & cl.synFirstMask
		ps.unanswered++
	}
}

func evidenceOf(c *conn, cl Class) []evidence {
	var ev []evidence
	for _, e := range c.ev {
		if e.class == cl {
			ev = append(ev, e)
		}
	}
	return ev
}

// synFindings turns the per-peer SYN statistics into findings, peer by
// peer in address order: findings of equal rank keep that order.
func (a *analyzer) synFindings() {
	addrs := slices.SortedFunc(maps.Keys(a.peers), func(x, y [16]byte) int { return bytes.Compare(x[:], y[:]) })
	for _, addr := range addrs {
		ps := a.peers[addr]
		switch {
		case ps.within:
			off := ps.withinFirst &^ ps.withinLast
			rf := rawFinding{class: ClassSYNOption, conf: Medium, sender: -1, opts: off, ci: ps.withinCI, count: 1, peerFixed: true,
				summary: fmt.Sprintf("SYNs to %s with options %s went unanswered; the retransmitted SYN without %s was answered",
					ps.addr, maskString(ps.withinFirst), maskString(off)),
				ev: ps.withinEv, fix: synFix(off)}
			a.addRaw(rf)
		case ps.unanswered > 0:
			var off uint16
			var cmp uint64
			for i := 0; i < ps.nAnswered; i++ {
				if d := ps.unMask &^ ps.answered[i]; d != 0 && (off == 0 || bitsSet(d) < bitsSet(off)) {
					off, cmp = d, ps.answeredPkt[i]
				}
			}
			rf := rawFinding{class: ClassSYNOption, sender: -1, ci: ps.unCI, count: ps.unanswered, ev: ps.unEv, peerFixed: true}
			switch {
			case off != 0:
				rf.conf = High
				rf.summary = fmt.Sprintf("%d connection(s) to %s: SYNs with options %s sent up to %d times, never answered, while the SYN without %s (packet %d) was answered",
					ps.unanswered, ps.addr, maskString(ps.unMask), ps.unSYNs, maskString(off), cmp)
				rf.ev = append(rf.ev, evidence{class: ClassSYNOption, pkt: cmp, side: ps.unCI.client, note: "answered SYN without " + maskString(off)})
			case ps.answeredConn > 0:
				// SYNs with the same options were answered too: not the options.
				rf.class, rf.conf = ClassLoss, Medium
				rf.summary = fmt.Sprintf("%d connection(s) to %s got no answer to their SYNs, while others with the same options were answered: loss or an overloaded server, not an option fault",
					ps.unanswered, ps.addr)
				a.addRaw(rf)
				continue
			case ps.unreachable > 0:
				rf.class, rf.conf = ClassLoss, Medium
				rf.summary = fmt.Sprintf("%d connection(s) to %s got no answer to their SYNs, and %d ICMP destination-unreachable error(s) about %s are in the capture: the host is unreachable, not an option fault",
					ps.unanswered, ps.addr, ps.unreachable, ps.addr)
				a.addRaw(rf)
				continue
			default:
				off = ps.unMask & (optBitTS | optBitWS | optBitSACKOK | optBitTFO | optBitMPTCP | optBitOther)
				if off&optBitTS != 0 {
					off = optBitTS
				}
				if off == 0 {
					rf.class, rf.conf = ClassLoss, Low
					rf.summary = fmt.Sprintf("%d connection(s) to %s got no answer to SYNs sent up to %d times, which carried no option a policy can remove (%s): the host is down or filtered, not an option fault",
						ps.unanswered, ps.addr, ps.unSYNs, maskString(ps.unMask))
					a.addRaw(rf)
					continue
				}
				// Silence alone: an unreachable or overloaded host looks
				// the same, so no policy until a SYN without the options
				// is seen answered.
				rf.conf = Suspected
				rf.summary = fmt.Sprintf("%d connection(s) to %s: SYNs with options %s sent up to %d times, never answered (no RST, no ICMP). No SYN without them to compare: a SYN-option firewall is suspected (timestamps most often), but an unreachable host looks the same. "+
					"To settle it, capture one connection attempt to %s with %s off (e.g. sysctl net.ipv4.tcp_timestamps=0 for the test): answered, it is the option",
					ps.unanswered, ps.addr, maskString(ps.unMask), ps.unSYNs, ps.addr, maskString(off))
			}
			rf.opts = off
			rf.fix = synFix(off)
			a.addRaw(rf)
		}
	}
}

// synFix strips the offending options; kinds the policy cannot name alone
// fall under unknown = "strip".
func synFix(off uint16) Fix {
	var f Fix
	if off&optBitTS != 0 {
		f.Timestamps = normalize.TSStrip
	}
	if off&optBitWS != 0 {
		f.WindowScale = normalize.WSStrip
	}
	if off&optBitSACKOK != 0 {
		f.SACKPermitted = true
	}
	if off&(optBitTFO|optBitMPTCP|optBitOther) != 0 {
		f.Unknown = true
	}
	return f
}

func bitsSet(m uint16) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}
