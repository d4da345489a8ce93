package normalize

import "net/netip"

// Config sizes a Normalizer.
type Config struct {
	// HandshakeSlots bounds the handshake table (SYN decisions awaiting their
	// SYN-ACK). Default 4096; rounded up to a power of two.
	HandshakeSlots int
	// MarkMask is [rules] mark: the mark/connmark bits tcpnorm may use for
	// flows whose later segments need rewriting (see NewMarkBits). 0, or a
	// mask NewMarkBits refuses, disables the stateful actions.
	MarkMask uint32
	// FlowSlots bounds the timestamp-repair state ([flows] max for this
	// worker). Default 65536.
	FlowSlots int
	// FlowIdle is [flows] idle_timeout in nanoseconds: idle repair state may
	// be replaced. Default 5 minutes.
	FlowIdle int64
	// TSRateMax caps the remote clock rate (ticks per second) repair
	// assumes. Default 1000000.
	TSRateMax uint32
}

// Normalizer decides and applies rewrites for the packets of one queue worker.
// It is not safe for concurrent use: each worker owns one, and both directions
// of a connection reach the same worker.
type Normalizer struct {
	cfg   Config
	hs    handshakes
	marks MarkBits
	flows flowTable
	orig  [OriginalMax]byte // Result.Original of evidence policies
}

// New returns a Normalizer for one worker.
func New(cfg Config) *Normalizer {
	if cfg.HandshakeSlots <= 0 {
		cfg.HandshakeSlots = 4096
	}
	if cfg.FlowSlots <= 0 {
		cfg.FlowSlots = 65536
	}
	if cfg.FlowIdle <= 0 {
		cfg.FlowIdle = 300e9
	}
	if cfg.TSRateMax == 0 {
		cfg.TSRateMax = 1000000
	}
	n := &Normalizer{cfg: cfg}
	n.hs.init(cfg.HandshakeSlots)
	n.marks, _ = NewMarkBits(cfg.MarkMask)
	if n.marks.ok {
		n.flows.init(cfg.FlowSlots, cfg.FlowIdle)
	}
	return n
}

// Stats are a worker's own counters, beyond what each Result says.
type Stats struct {
	HandshakeEvictions uint64 // SYN decisions replaced before their SYN-ACK
	FlowEvictions      uint64 // repair state replaced before its flow went idle
}

// Stats returns the worker's counters. Call it from the worker's goroutine.
func (n *Normalizer) Stats() Stats {
	return Stats{HandshakeEvictions: n.hs.evicted, FlowEvictions: n.flows.evicted}
}

// SeedRepair starts a flow's timestamp-repair state from the remote's
// handshake TSval (Result.Seed), for the worker that will see the flow's
// later segments.
func (n *Normalizer) SeedRepair(f Flow, tsval uint32, now int64) {
	if n.marks.ok {
		n.flows.seed(f, tsval, now)
	}
}

// segment is one parsed TCP segment.
type segment struct {
	tcp      TCP
	ip       []byte // the IP header: IPv4 or IPv6 by its version
	complete bool   // the whole segment is in the buffer
}

func (s *segment) addrs() (src, dst netip.Addr) {
	if s.ip[0]>>4 == 4 {
		return IPv4(s.ip).Src(), IPv4(s.ip).Dst()
	}
	return IPv6(s.ip).Src(), IPv6(s.ip).Dst()
}

// addrBytes are the source and destination addresses as they stand in the
// packet.
func (s *segment) addrBytes() (src, dst []byte) {
	if s.ip[0]>>4 == 4 {
		return s.ip[ipv4Src : ipv4Src+4], s.ip[ipv4Dst : ipv4Dst+4]
	}
	return s.ip[ipv6Src : ipv6Src+16], s.ip[ipv6Dst : ipv6Dst+16]
}

// pseudoHeaderSum is the sum of the addresses, for a full checksum.
func (s *segment) pseudoHeaderSum() uint32 {
	if s.ip[0]>>4 == 4 {
		return IPv4(s.ip).pseudoHeaderSum()
	}
	return IPv6(s.ip).pseudoHeaderSum()
}

// parse finds the TCP segment in an IPv4 or IPv6 packet. The reason is
// non-zero (not ReasonNoPolicy) when there is no segment to work on.
func parse(pkt []byte, s *segment) Reason {
	if len(pkt) == 0 {
		return ReasonNotTCP
	}
	switch pkt[0] >> 4 {
	case 4:
		ip := IPv4(pkt)
		if !ip.IsValid() || ip.Protocol() != protoTCP {
			return ReasonNotTCP
		}
		if ip.IsFragment() {
			return ReasonFragment
		}
		end := int(ip.TotalLength())
		s.complete = end <= len(pkt)
		end = min(end, len(pkt))
		s.tcp = TCP(pkt[ip.HeaderLength():end])
	case 6:
		ip := IPv6(pkt)
		if !ip.IsValid() || ip.PayloadLength() == 0 {
			return ReasonNotTCP
		}
		off, proto, frag, ok := ip.Transport()
		if !ok {
			return ReasonNotTCP
		}
		if frag {
			return ReasonFragment
		}
		if proto != protoTCP {
			return ReasonNotTCP
		}
		end := IPv6MinimumSize + int(ip.PayloadLength())
		if off > end {
			return ReasonNotTCP
		}
		s.complete = end <= len(pkt)
		end = min(end, len(pkt))
		s.tcp = TCP(pkt[off:end])
	default:
		return ReasonNotTCP
	}
	s.ip = pkt
	if !s.tcp.IsValid() {
		return ReasonNotTCP
	}
	return ReasonNoPolicy
}

// Packet normalizes one IPv4 or IPv6 packet in place under table t and
// returns what to tell the kernel. It never allocates and never panics on any
// input; anything it cannot parse is accepted unchanged.
func (n *Normalizer) Packet(pkt []byte, t Table, m Meta) (r Result) {
	var seg segment
	if why := parse(pkt, &seg); why != ReasonNoPolicy {
		r.Why.Reason = why
		return r
	}
	tcp := seg.tcp
	switch tcp.Flags() & (FlagSYN | FlagACK | FlagRST | FlagFIN) {
	case FlagSYN:
		r.Kind = KindSYN
		r.Flow.Client, r.Flow.Server = seg.addrs()
		r.Flow.ClientPort, r.Flow.ServerPort = tcp.SrcPort(), tcp.DstPort()
	case FlagSYN | FlagACK:
		r.Kind = KindSYNACK
		r.Flow.Server, r.Flow.Client = seg.addrs()
		r.Flow.ServerPort, r.Flow.ClientPort = tcp.SrcPort(), tcp.DstPort()
	default:
		if fields := n.marks.get(m.Mark); fields&(fieldDelta|fieldRepair) != 0 {
			n.stateful(&r, &seg, fields, &m)
			return r
		}
		r.Why.Reason = ReasonNotHandshake
		return r
	}

	src, dst := seg.addrBytes()
	var hash uint64
	var rec *handshake
	if r.Kind == KindSYN {
		hash = n.hs.hashAddrs(src, dst, r.Flow.ClientPort, r.Flow.ServerPort)
	} else {
		hash = n.hs.hashAddrs(dst, src, r.Flow.ClientPort, r.Flow.ServerPort)
		rec = n.hs.get(r.Flow, hash)
	}
	if rec != nil {
		r.Policy, r.Dir = rec.pol, rec.dir
	} else {
		r.Policy, r.Dir = lookup(t, &r.Flow)
		if r.Policy == nil {
			r.Why.Reason = ReasonNoPolicy
			return r
		}
	}
	pol := r.Policy

	var opts optionSummary
	summarize(tcp.Options(), &opts)
	switch {
	case opts.auth:
		r.Why.Reason = ReasonAuthenticated
		return r
	case opts.malformed:
		r.Why.Reason = ReasonMalformed
		if r.Kind == KindSYN && pol.DropMalformed {
			r.Why.Reason = ReasonMalformedDrop
			if pol.Mode == Enforce {
				r.Verdict = Drop
			}
		}
		return r
	}

	var ch Change
	shift := uint8(noShift)
	if opts.ws != nil {
		shift = min(opts.ws[2], MaxWindowShift)
	}
	switch {
	case r.Kind == KindSYN:
		ch = synChanges(pol, &opts, shift)
	case rec != nil:
		ch = synAckChanges(pol, &opts, shift, rec.stripped)
	default:
		// A SYN-ACK whose SYN this worker never saw (a restart, or an
		// evicted record): only MSS, which is per direction, is clamped.
		ch = mssChange(pol, &opts)
	}
	if pol.ClearECN && (rec != nil || r.Kind == KindSYN) && tcp.clearECN(false) {
		ch |= ChECNCleared
	}
	r.Why.Changes = ch
	if ch&ChWSClamped != 0 {
		r.Why.WSOld, r.Why.WSNew = opts.ws[2], pol.WindowScaleMax
	}
	if ch&ChMSSClamped != 0 {
		r.Why.MSSOld, r.Why.MSSNew = optMSS(opts.mss), pol.MSSMax
	}
	if r.Kind == KindSYN {
		h := handshake{flow: r.Flow, pol: pol, dir: r.Dir, stripped: ch, synShift: shift}
		if opts.ts != nil {
			h.synTS, h.synHasTS = optTSval(opts.ts), true
		}
		n.hs.put(&h, hash)
	}
	if rec != nil && pol.Mode == Enforce && n.marks.ok {
		n.markFlow(&r, rec, &opts, shift, ch, m.Mark)
	}

	switch {
	case rec == nil && r.Kind == KindSYNACK:
		r.Why.Reason = ReasonNoRecord
	case pol.Mode == LogOnly:
		r.Why.Reason = ReasonLogOnly
	default:
		r.Why.Reason = ReasonApplied
	}
	if ch == 0 || pol.Mode == LogOnly {
		return r
	}
	if m.Truncated || !seg.complete {
		r.Why.Reason = ReasonTruncated
		return r
	}
	if pol.Evidence {
		r.Original = n.orig[:copy(n.orig[:], pkt)]
	}
	apply(&seg, &opts, pol, ch, m.CsumNotReady)
	r.Modified = true
	return r
}

// markFlow sets the mark fields of a SYN-ACK whose flow needs its later
// segments rewritten, and the remote's handshake TSval for repair.
func (n *Normalizer) markFlow(r *Result, rec *handshake, o *optionSummary, shift uint8, ch Change, mark uint32) {
	ts := o.ts != nil && rec.synHasTS && ch&ChTSStripped == 0
	f, ok := handshakeMark(r.Policy, r.Dir, rec.synShift, shift, ts)
	if !ok {
		return
	}
	r.SetMark = true
	r.Mark = mark&^n.marks.Saved() | n.marks.put(f)
	if f&fieldRepair != 0 {
		r.HasSeed = true
		r.Seed = rec.synTS
		if r.Dir == Outbound {
			r.Seed = optTSval(o.ts)
		}
	}
}

// lookup finds the policy for a handshake segment: the server as the remote
// peer of an outbound connection, else the client as the peer of an inbound
// one. The server port is the policy's port in both directions.
func lookup(t Table, f *Flow) (*Policy, Direction) {
	if t == nil {
		return nil, 0
	}
	if p := t.Lookup(f.Server, f.ServerPort, Outbound); p != nil {
		return p, Outbound
	}
	if p := t.Lookup(f.Client, f.ServerPort, Inbound); p != nil {
		return p, Inbound
	}
	return nil, 0
}

// synChanges decides what the policy changes in a SYN.
func synChanges(pol *Policy, o *optionSummary, shift uint8) Change {
	var ch Change
	if o.ws != nil {
		switch pol.WindowScale {
		case WSStrip:
			ch |= ChWSStripped
		case WSClamp:
			if shift > pol.WindowScaleMax {
				ch |= ChWSClamped
			}
		}
	}
	if o.ts != nil && pol.Timestamps == TSStrip {
		ch |= ChTSStripped
	}
	if o.sackok != nil && pol.StripSACKOK {
		ch |= ChSACKOKStripped
	}
	if o.unknown > 0 && pol.StripUnknown {
		ch |= ChUnknownStripped
	}
	return ch | mssChange(pol, o)
}

// synAckChanges decides what changes in a SYN-ACK: window scale, timestamps
// and SACK-permitted are stripped only where the SYN's were, so both ends
// agree on what was negotiated (RFC 7323 section 1.3).
func synAckChanges(pol *Policy, o *optionSummary, shift uint8, syn Change) Change {
	var ch Change
	if o.ws != nil {
		switch {
		case syn&ChWSStripped != 0:
			ch |= ChWSStripped
		case pol.WindowScale == WSClamp && shift > pol.WindowScaleMax:
			ch |= ChWSClamped
		}
	}
	if o.ts != nil && syn&ChTSStripped != 0 {
		ch |= ChTSStripped
	}
	if o.sackok != nil && syn&ChSACKOKStripped != 0 {
		ch |= ChSACKOKStripped
	}
	if o.unknown > 0 && pol.StripUnknown {
		ch |= ChUnknownStripped
	}
	return ch | mssChange(pol, o)
}

func mssChange(pol *Policy, o *optionSummary) Change {
	if o.mss != nil && pol.MSSMax != 0 && optMSS(o.mss) > pol.MSSMax {
		return ChMSSClamped
	}
	return 0
}

// apply rewrites the segment's header in place and fixes its checksum:
// incrementally over the header words (RFC 1624), or in full when the
// kernel left the checksum unfinished.
func apply(seg *segment, o *optionSummary, pol *Policy, ch Change, csumNotReady bool) {
	tcp := seg.tcp
	old := headerSum(seg, csumNotReady)
	if o.dup {
		applyEach(tcp.Options(), pol, ch)
		ch &^= ChWSStripped | ChWSClamped | ChTSStripped | ChSACKOKStripped | ChMSSClamped
	}
	if ch&ChWSStripped != 0 {
		nopFill(o.ws)
	}
	if ch&ChWSClamped != 0 {
		o.ws[2] = pol.WindowScaleMax
	}
	if ch&ChTSStripped != 0 {
		nopFill(o.ts)
	}
	if ch&ChSACKOKStripped != 0 {
		nopFill(o.sackok)
	}
	if ch&ChMSSClamped != 0 {
		setOptMSS(o.mss, pol.MSSMax)
	}
	if ch&ChUnknownStripped != 0 {
		stripUnknown(tcp.Options())
	}
	if ch&ChECNCleared != 0 {
		tcp.clearECN(true)
	}
	finishChecksum(seg, csumNotReady, old)
}

// applyEach applies ch's option changes to every occurrence of each kind,
// for a list where some kind appears more than once.
func applyEach(b []byte, pol *Policy, ch Change) {
	it := Options(b)
	for it.Next() {
		d := it.Option().Data
		switch d[0] {
		case OptWS:
			switch {
			case ch&ChWSStripped != 0:
				nopFill(d)
			case ch&ChWSClamped != 0 && d[2] > pol.WindowScaleMax:
				d[2] = pol.WindowScaleMax
			}
		case OptTS:
			if ch&ChTSStripped != 0 {
				nopFill(d)
			}
		case OptSACKOK:
			if ch&ChSACKOKStripped != 0 {
				nopFill(d)
			}
		case OptMSS:
			if ch&ChMSSClamped != 0 && optMSS(d) > pol.MSSMax {
				setOptMSS(d, pol.MSSMax)
			}
		}
	}
}

// editable is the part of the TCP header tcpnorm edits: data offset and
// flags, window, checksum, urgent pointer and the options. It starts on a
// 16-bit boundary, so its words are the segment's checksum words.
func editable(tcp TCP) []byte { return tcp[tcpDataOff:tcp.DataOffset()] }

// headerSum is the sum of the editable header before an edit, for
// finishChecksum (not needed when the checksum will be computed in full).
func headerSum(seg *segment, csumNotReady bool) uint16 {
	if csumNotReady {
		return 0
	}
	return seg.tcp.HeaderSum()
}

// finishChecksum fixes the checksum after edits inside the TCP header:
// incrementally over the header's words (RFC 1624), or in full when the
// kernel left the checksum unfinished.
func finishChecksum(seg *segment, csumNotReady bool, old uint16) {
	tcp := seg.tcp
	if csumNotReady {
		tcp.SetChecksum(fullTCPChecksum(seg.pseudoHeaderSum(), tcp))
		return
	}
	tcp.UpdateChecksum(old)
}
