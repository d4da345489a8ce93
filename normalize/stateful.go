package normalize

// Stateful actions: the window-field rewrite of clamped flows and the TSval
// repair of flows through a timestamp-scrambling path (RFC 7323 sections 2
// and 5). They run on the later segments of flows whose SYN-ACK set
// tcpnorm's mark fields.

// handshakeMark computes the mark fields a SYN-ACK leaves on its flow, and
// reports whether any is needed. Window scaling is in effect only when both
// SYN and SYN-ACK carry the option (RFC 7323 section 2.2).
func handshakeMark(pol *Policy, dir Direction, synShift, synAckShift uint8, ts bool) (uint32, bool) {
	var f uint32
	if pol.WindowScale == WSClamp && synShift != noShift && synAckShift != noShift {
		local := synShift
		if dir == Inbound {
			local = synAckShift
		}
		if local > pol.WindowScaleMax {
			f |= uint32(local - pol.WindowScaleMax)
		}
	}
	if pol.Timestamps == TSRepair && ts {
		f |= fieldRepair
	}
	if f == 0 {
		return 0, false
	}
	if dir == Outbound {
		f |= fieldLocalClient
	}
	return f, true
}

// stateful rewrites a later segment of a marked flow.
func (n *Normalizer) stateful(r *Result, seg *segment, fields uint32, m *Meta) {
	tcp := seg.tcp
	fromLocal := (fields&fieldLocalClient != 0) == (fields&fieldOriginal != 0)
	r.Why.Reason = ReasonApplied
	writable := !m.Truncated && seg.complete
	if fromLocal {
		if fields&fieldRepair != 0 {
			n.learnEcho(seg, fields)
		}
		delta := fields & fieldDelta
		if delta == 0 {
			return
		}
		w := tcp.Window()
		nw := uint16(min(0xffff, uint32(w)<<delta))
		if nw == w {
			return
		}
		r.Why.Changes |= ChWindowRewritten
		r.Why.WinOld, r.Why.WinNew = w, nw
		if !writable {
			r.Why.Reason = ReasonTruncated
			return
		}
		tcp.SetWindow(nw)
		fixWordChecksum(seg, m, w, nw)
		r.Modified = true
		return
	}
	if fields&fieldRepair == 0 {
		return
	}
	f := repairFlow(seg, fields, false)
	end := tcp.Flags()&(FlagFIN|FlagRST) != 0
	var opts optionSummary
	summarize(tcp.Options(), &opts)
	if opts.auth || opts.malformed || opts.ts == nil {
		if end {
			n.flows.remove(f)
		}
		return
	}
	v := optTSval(opts.ts)
	nv := n.flows.repair(f, v, m.Now, n.cfg.TSRateMax)
	if end {
		n.flows.remove(f)
	}
	if nv == v {
		return
	}
	r.Why.Changes |= ChTSRepaired
	r.Why.TSOld, r.Why.TSNew = v, nv
	if !writable {
		r.Why.Reason = ReasonTruncated
		return
	}
	old := headerSum(seg, m.CsumNotReady)
	setOptTSval(opts.ts, nv)
	finishChecksum(seg, m.CsumNotReady, old)
	r.Modified = true
}

// repairFlow names the repaired flow of a later segment from the remote
// (fromLocal false) or from the local host.
func repairFlow(seg *segment, fields uint32, fromLocal bool) Flow {
	tcp := seg.tcp
	src, dst := seg.addrs()
	if (fields&fieldLocalClient != 0) != fromLocal { // the sender is the server
		return Flow{Client: dst, Server: src, ClientPort: tcp.DstPort(), ServerPort: tcp.SrcPort()}
	}
	return Flow{Client: src, Server: dst, ClientPort: tcp.SrcPort(), ServerPort: tcp.DstPort()}
}

// learnEcho reads the TSecr of the local host's segment of a repaired flow:
// a TSval the local host accepted, so at most the newest its PAWS check
// holds. A worker that lost the flow's state (a restart: the daemon never
// saw the handshake and seeded from a later segment, perhaps a scrambled
// one) learns from it what it must never forward less than.
func (n *Normalizer) learnEcho(seg *segment, fields uint32) {
	tcp := seg.tcp
	if tcp.Flags()&FlagACK == 0 {
		return
	}
	var opts optionSummary
	summarize(tcp.Options(), &opts)
	if opts.auth || opts.malformed || opts.ts == nil {
		return
	}
	// An echo of 0 is what a host without a timestamp to echo sends.
	if e := optTSecr(opts.ts); e != 0 {
		n.flows.echo(repairFlow(seg, fields, true), e)
	}
}

// fixWordChecksum updates the checksum after one aligned 16-bit word changed
// from o to w (RFC 1624), or recomputes it when the kernel left it
// unfinished.
func fixWordChecksum(seg *segment, m *Meta, o, w uint16) {
	if m.CsumNotReady {
		seg.tcp.SetChecksum(fullTCPChecksum(seg.pseudoHeaderSum(), seg.tcp))
		return
	}
	seg.tcp.SetChecksum(updateChecksum(seg.tcp.Checksum(), o, w))
}

// tsFlow is the repair state of one flow: the newest TSval the local host
// has been given, and what is known of the remote's clock.
type tsFlow struct {
	flow     Flow
	hi       uint32 // newest TSval forwarded
	hiAt     int64  // when hi last advanced (Meta.Now)
	baseV    uint32 // first accepted TSval, for learning the clock rate
	baseAt   int64
	rate     uint32 // learned ticks per second, 0 while unknown
	candV    uint32 // a run of values ahead of hi, consistent with each other
	candAt   int64
	candN    uint8
	lastSeen int64 // 0 marks a free slot
}

// tsReseedRun is how many consecutive consistent values ahead of hi make
// the remote's clock jump real.
const tsReseedRun = 4

// tsSlack is the TSval headroom beyond the clock rate's allowance.
const tsSlack = 16

const flowWays = 8

// flowTable is a bounded set-associative table of repair state, owned by
// one worker: a new flow replaces an idle or the least recently seen entry
// of its set.
type flowTable struct {
	slots   []tsFlow
	setMask uint64
	hs      handshakes // for its seeded hash
	idle    int64
	evicted uint64
}

func (t *flowTable) init(n int, idleNanos int64) {
	sets := 1
	for sets*flowWays < n {
		sets <<= 1
	}
	t.slots = make([]tsFlow, sets*flowWays)
	t.setMask = uint64(sets - 1)
	t.hs.init(handshakeWays)
	t.idle = idleNanos
}

func (t *flowTable) set(f *Flow) []tsFlow {
	i := int(t.hs.hash(f)&t.setMask) * flowWays
	return t.slots[i : i+flowWays]
}

func (t *flowTable) remove(f Flow) {
	set := t.set(&f)
	for i := range set {
		if set[i].lastSeen != 0 && set[i].flow == f {
			set[i] = tsFlow{}
		}
	}
}

// seed starts (or restarts) a flow's state at TSval v.
func (t *flowTable) seed(f Flow, v uint32, now int64) {
	set := t.set(&f)
	victim := 0
	for i := range set {
		if set[i].lastSeen != 0 && set[i].flow == f {
			victim = i
			break
		}
		if set[i].lastSeen == 0 || now-set[i].lastSeen > t.idle {
			if set[victim].lastSeen != 0 {
				victim = i
			}
			continue
		}
		if set[victim].lastSeen != 0 && set[i].lastSeen < set[victim].lastSeen {
			victim = i
		}
	}
	if e := &set[victim]; e.lastSeen != 0 && e.flow != f && now-e.lastSeen <= t.idle {
		t.evicted++
	}
	set[victim] = tsFlow{flow: f, hi: v, hiAt: now, baseV: v, baseAt: now, lastSeen: max(now, 1)}
}

// echo raises a flow's newest forwarded TSval to e, a value the local host
// echoed. For a flow tcpnorm followed from its handshake e is never above
// hi; one seeded from a later segment catches up with what the local host
// really accepted, and learns the remote's clock rate afresh. A flow
// without state is left to be seeded from the remote's next segment.
func (t *flowTable) echo(f Flow, e uint32) {
	set := t.set(&f)
	for i := range set {
		if x := &set[i]; x.lastSeen != 0 && x.flow == f {
			if int32(e-x.hi) > 0 {
				x.hi, x.baseV, x.baseAt, x.rate, x.candN = e, e, x.hiAt, 0, 0
			}
			return
		}
	}
}

// repair returns the TSval to forward for the remote's segment carrying v:
// v itself when it is no older than the newest forwarded and not further
// ahead than the remote's clock can have run, else the newest forwarded. A
// flow without state is seeded from v.
func (t *flowTable) repair(f Flow, v uint32, now int64, rateMax uint32) uint32 {
	set := t.set(&f)
	var e *tsFlow
	for i := range set {
		if set[i].lastSeen != 0 && set[i].flow == f {
			e = &set[i]
			break
		}
	}
	if e == nil {
		t.seed(f, v, now)
		return v
	}
	e.lastSeen = max(now, 1)
	rate := rateMax
	if e.rate != 0 {
		rate = min(rateMax, e.rate)
	}
	d := int32(v - e.hi)
	if d >= 0 && int64(d) <= allowance(rate, now-e.hiAt) {
		e.advance(v, now, rateMax)
		return v
	}
	if d > 0 {
		// Ahead of what the clock allows: trust a run of such values
		// only when they agree with each other.
		c := int32(v - e.candV)
		if e.candN > 0 && c >= 0 && int64(c) <= allowance(rate, now-e.candAt) {
			e.candN++
		} else {
			e.candN = 1
		}
		e.candV, e.candAt = v, now
		if e.candN >= tsReseedRun {
			e.hi, e.hiAt, e.baseV, e.baseAt, e.rate, e.candN = v, now, v, now, 0, 0
			return v
		}
	}
	return e.hi
}

func (e *tsFlow) advance(v uint32, now int64, rateMax uint32) {
	if v != e.hi {
		e.hi, e.hiAt = v, now
	}
	e.candN = 0
	// Learn the clock rate once a quarter second has passed, with 25%
	// headroom.
	if span := now - e.baseAt; span >= 250e6 {
		ticks := uint64(v - e.baseV)
		r := ticks * 1e9 / uint64(span)
		r += r / 4
		e.rate = uint32(min(uint64(rateMax), max(r, 1)))
	}
}

// allowance is how far ahead a TSval may be after dt nanoseconds at rate
// ticks per second.
func allowance(rate uint32, dt int64) int64 {
	if dt < 0 {
		dt = 0
	}
	return int64(rate)*dt/1e9 + int64(rate)/100 + tsSlack
}
