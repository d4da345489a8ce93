package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/internal/textfmt"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Verdict is the outcome of a whole capture.
type Verdict uint8

const (
	VerdictHealthy       Verdict = iota
	VerdictOptionFault           // at least one finding a policy fixes
	VerdictNoOptionFault         // trouble, but not one a policy fixes
	// VerdictSuspected: an option fault is suspected, but the evidence is
	// too weak to propose a policy; the findings say what would settle it.
	VerdictSuspected
)

// Vantage is whose view of a finding the capture shows: the sender or
// receiver of the data, or the client or server for handshake findings.
type Vantage uint8

const (
	VantageSender Vantage = iota
	VantageReceiver
	VantageClient
	VantageServer
)

// Direction is who opened a finding's connections, seen from the capturing
// host: Outbound, it sent the SYN. DirectionUnknown: the handshake is not in
// the capture.
type Direction uint8

const (
	DirectionUnknown Direction = iota
	Outbound
	Inbound
)

// policy is the policy file's direction for d; an unknown direction is
// both.
func (d Direction) policy() normalize.Direction {
	switch d {
	case Outbound:
		return normalize.Outbound
	case Inbound:
		return normalize.Inbound
	}
	return normalize.Both
}

// Report is the outcome of Diagnose.
type Report struct {
	Format           string    `json:"format"`
	Packets          uint64    `json:"packets"`
	TCPSegments      uint64    `json:"tcp_segments"`
	Connections      uint64    `json:"connections"`
	Evicted          uint64    `json:"evicted"`           // finished early to bound memory
	Snapped          uint64    `json:"snapped"`           // packets cut by the snap length
	TruncatedHeaders uint64    `json:"truncated_headers"` // TCP headers cut off: not analysed
	BadLength        uint64    `json:"bad_length"`        // IP length beyond the frame's: skipped
	Duplicates       uint64    `json:"duplicates"`        // the same packet captured twice
	NonTCP           uint64    `json:"non_tcp"`
	ICMPTooBig       uint64    `json:"icmp_too_big"`
	Unlisted         uint64    `json:"unlisted_findings,omitempty"`
	Verdict          Verdict   `json:"verdict"`
	Findings         []Finding `json:"findings"`
	Policies         []Policy  `json:"policies"`
	Notes            []string  `json:"notes,omitempty"`
	Warnings         []string  `json:"warnings,omitempty"`
}

// Finding is one failure class seen on the connections to one peer.
type Finding struct {
	Class          Class      `json:"class"`
	Fixable        bool       `json:"fixable"`
	Confidence     Confidence `json:"confidence"`
	Summary        string     `json:"summary"`
	Client         string     `json:"client,omitempty"` // the SYN sender, when the handshake was seen
	Server         string     `json:"server,omitempty"`
	Local          string     `json:"local"` // the capturing host's end
	Peer           string     `json:"peer"`
	Direction      Direction  `json:"direction"` // who opened the connection
	Vantage        Vantage    `json:"vantage"`
	VantageWhy     []string   `json:"vantage_evidence"`
	VantageAssumed bool       `json:"vantage_assumed"`
	Connections    int        `json:"connections"`
	Evidence       []Evidence `json:"evidence"`
	Fix            *Fix       `json:"fix,omitempty"`

	peer       netip.Addr
	serverPort uint16
	raw        *rawFinding
	local      int
}

// Evidence is one packet of the capture that shows the fault. Packet numbers
// count from 1 as Wireshark's do; sequence numbers are absolute (tcpdump -S).
type Evidence struct {
	Packet uint64 `json:"packet"`
	From   string `json:"from"`
	To     string `json:"to"`
	Seq    uint32 `json:"seq"`
	Ack    uint32 `json:"ack,omitempty"`
	Win    uint16 `json:"win,omitempty"`
	Len    int    `json:"len,omitempty"`
	Note   string `json:"note"`
}

// Fix is the [options] a policy needs, in normalize's terms; fields at
// their zero value (keep) stay at the policy's defaults and are left out
// of the JSON.
type Fix struct {
	WindowScale    normalize.WindowScaleAction `json:"window_scale,omitempty"`
	WindowScaleMax *int                        `json:"window_scale_max,omitempty"`
	Timestamps     normalize.TimestampsAction  `json:"timestamps,omitempty"`
	SACKPermitted  Strip                       `json:"sack_permitted,omitempty"`
	MSSMax         int                         `json:"mss_max,omitempty"`
	Unknown        Strip                       `json:"unknown,omitempty"`
}

// Strip is the fix for an option a policy can only keep or strip
// (sack_permitted, unknown; normalize.Policy's StripSACKOK and
// StripUnknown): true is "strip" in JSON, as in the policy file.
type Strip bool

func (f Fix) empty() bool { return f == Fix{} }

// merge combines two fixes for one peer: strip beats clamp, the smaller
// MSS wins.
func (f Fix) merge(g Fix) Fix {
	if g.WindowScale == normalize.WSStrip || f.WindowScale == normalize.WSKeep {
		if g.WindowScale != normalize.WSKeep {
			f.WindowScale, f.WindowScaleMax = g.WindowScale, g.WindowScaleMax
		}
	}
	if g.Timestamps == normalize.TSStrip || f.Timestamps == normalize.TSKeep && g.Timestamps != normalize.TSKeep {
		f.Timestamps = g.Timestamps
	}
	f.SACKPermitted = f.SACKPermitted || g.SACKPermitted
	f.Unknown = f.Unknown || g.Unknown
	if g.MSSMax > 0 && (f.MSSMax == 0 || g.MSSMax < f.MSSMax) {
		f.MSSMax = g.MSSMax
	}
	return f
}

// Policy is a ready policy file for one peer.
type Policy struct {
	Peer        string    `json:"peer"`
	Direction   Direction `json:"direction,omitempty"` // whose connections it covers
	File        string    `json:"file"`                // suggested name in policy_dir
	Classes     []Class   `json:"classes"`
	Text        string    `json:"text"`
	Explanation string    `json:"explanation"` // for the upstream ticket
}

// report settles the vantage point of every finding, groups the fixes per
// peer and decides the verdict.
func (a *analyzer) report() *Report {
	a.synFindings()
	rep := a.rep
	for _, rf := range a.aggOrder {
		rep.Findings = append(rep.Findings, a.finding(rf))
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		fi, fj := rep.Findings[i], rep.Findings[j]
		if fi.Fixable != fj.Fixable {
			return fi.Fixable
		}
		return rank(fi.Confidence) < rank(fj.Confidence)
	})
	// One policy per peer and direction: a peer whose uploads and
	// downloads need different fixes gets two files with disjoint
	// directions.
	type peerDir struct {
		peer netip.Addr
		dir  Direction
	}
	byPeer := map[peerDir]int{}
	for i := range rep.Findings {
		f := &rep.Findings[i]
		if !f.Fixable || f.Fix == nil {
			continue
		}
		k := peerDir{f.peer, f.Direction}
		j, ok := byPeer[k]
		if !ok {
			j = len(rep.Policies)
			byPeer[k] = j
			rep.Policies = append(rep.Policies, Policy{Peer: f.peer.String(), Direction: f.Direction})
		}
		p := &rep.Policies[j]
		p.Classes = append(p.Classes, f.Class)
	}
	for i := range rep.Policies {
		a.policy(&rep.Policies[i])
	}
	suspected := false
	for _, f := range rep.Findings {
		suspected = suspected || f.Fixable && f.Confidence == Suspected
	}
	switch {
	case len(rep.Policies) > 0:
		rep.Verdict = VerdictOptionFault
	case suspected:
		rep.Verdict = VerdictSuspected
	case len(rep.Findings) > 0:
		rep.Verdict = VerdictNoOptionFault
	default:
		rep.Verdict = VerdictHealthy
	}
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	if rep.Policies == nil {
		rep.Policies = []Policy{}
	}
	if rep.Snapped > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d packets were cut by the capture's snap length: lengths come from the IP headers, checksums of those packets were not checked", rep.Snapped))
	}
	if rep.TruncatedHeaders > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d packets had their TCP header cut off by the snap length and were skipped: capture with -s 0 or at least -s 128", rep.TruncatedHeaders))
	}
	if rep.BadLength > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d packets claim an IP length beyond the length of their frame on the wire (corrupt or fuzzed) and were skipped", rep.BadLength))
	}
	if rep.Evicted > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d connections were still open when the table of %d connections filled up: each was analysed up to that point", rep.Evicted, a.opt.MaxConns))
	}
	if rep.Unlisted > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d further findings were not listed", rep.Unlisted))
	}
	return rep
}

func rank(conf Confidence) int {
	switch conf {
	case High:
		return 0
	case Medium:
		return 1
	}
	return 2
}

// finding settles the vantage point of a raw finding.
func (a *analyzer) finding(rf *rawFinding) Finding {
	ci := rf.ci
	local := -1
	why := ci.why
	assumed := false
	switch {
	case ci.score > 0:
		local = 0
	case ci.score < 0:
		local = 1
	}
	if local < 0 {
		v0, v1 := a.votes[ci.addr[0]], a.votes[ci.addr[1]]
		switch {
		case v0 > v1:
			local = 0
			why = append(why, fmt.Sprintf("%s is the capturing host in %d other connections", ci.addr[0], v0))
		case v1 > v0:
			local = 1
			why = append(why, fmt.Sprintf("%s is the capturing host in %d other connections", ci.addr[1], v1))
		}
	}
	if local < 0 {
		assumed = true
		local = 0
		if ci.client >= 0 {
			local = int(ci.client)
			why = append(why, "no TTL, checksum-offload or timing evidence: assumed the capture was taken on the client (outbound mail)")
		} else {
			why = append(why, "no handshake and no TTL, checksum-offload or timing evidence: assumed the first address seen is the capturing host")
		}
	}
	f := Finding{
		Class: rf.class, Fixable: rf.class.Fixable(), Confidence: rf.conf, Summary: rf.summary,
		Local: ci.addr[local].String(), Peer: ci.addr[1-local].String(),
		VantageWhy: why, VantageAssumed: assumed, Connections: rf.count,
		peer: ci.addr[1-local], raw: rf, local: local,
	}
	if f.VantageWhy == nil {
		f.VantageWhy = []string{}
	}
	if ci.client >= 0 {
		f.Client, f.Server = ci.endpoint(int(ci.client)), ci.endpoint(1-int(ci.client))
		f.serverPort = ci.port[1-ci.client]
		if local == int(ci.client) {
			f.Direction = Outbound
		} else {
			f.Direction = Inbound
		}
	}
	switch {
	case rf.sender < 0 && local == int(ci.client):
		f.Vantage = VantageClient
	case rf.sender < 0:
		f.Vantage = VantageServer
	case int(rf.sender) == local:
		f.Vantage = VantageSender
	default:
		f.Vantage = VantageReceiver
	}
	for _, e := range rf.ev {
		f.Evidence = append(f.Evidence, Evidence{Packet: e.pkt, From: ci.endpoint(int(e.side)), To: ci.endpoint(1 - int(e.side)),
			Seq: e.seq, Ack: e.ack, Win: e.win, Len: e.length, Note: e.note})
	}
	sort.SliceStable(f.Evidence, func(i, j int) bool { return f.Evidence[i].Packet < f.Evidence[j].Packet })
	if f.Evidence == nil {
		f.Evidence = []Evidence{}
	}
	if rf.class == ClassWindowLimit {
		rf.fix = windowLimitFix(rf, local)
	}
	if f.Fixable && !rf.fix.empty() && rf.conf != Suspected {
		fx := rf.fix
		f.Fix = &fx
	}
	return f
}

// policy writes the policy file and the ticket paragraph for one peer and
// direction, with config's formatter.
func (a *analyzer) policy(p *Policy) {
	var fix Fix
	var fs []*Finding
	for i := range a.rep.Findings {
		f := &a.rep.Findings[i]
		if f.Fix != nil && f.Peer == p.Peer && f.Direction == p.Direction {
			fix = fix.merge(*f.Fix)
			fs = append(fs, f)
		}
	}
	first := fs[0]
	names := make([]string, len(p.Classes))
	for i, c := range p.Classes {
		names[i] = string(c)
	}
	header := []string{fmt.Sprintf("Proposed by tcpnorm diagnose: %s (peer %s).", strings.Join(names, ", "), p.Peer)}
	pf := &config.PolicyFile{}
	pol := &normalize.Policy{Direction: normalize.Both, Mode: normalize.Enforce}
	pf.Policy = pol
	base := strings.ReplaceAll(p.Peer, ":", "-")
	if a.opt.Domain != "" {
		base = a.opt.Domain
		pf.Domain = a.opt.Domain
		if first.Direction == Inbound {
			pf.SPF = true // the domain's sending hosts (inbound mail)
		} else {
			pf.MX = true // the domain's MX hosts (outbound mail)
		}
		header = append(header, "The capture showed the peer at "+p.Peer+".")
	} else {
		bits := 32
		if first.peer.Is6() {
			bits = 128
		}
		pf.CIDRs = []netip.Prefix{netip.PrefixFrom(first.peer, bits)}
	}
	p.File = base + ".toml"
	if a.twoDirections(p.Peer) {
		p.File = base + "-" + p.Direction.String() + ".toml"
		header = append(header, "One of two files for this peer: the other direction needs a different fix.")
	}
	if first.serverPort != 0 {
		pol.Ports = []uint16{first.serverPort}
	}
	pol.Direction = first.Direction.policy()
	pol.Expires = a.opt.Now.UTC().Add(90 * 24 * time.Hour).Truncate(24 * time.Hour)
	header = append(header, "A workaround, not a fix: it expires; escalate upstream.")
	pol.Reason = reasonFor(first)
	fix.apply(pol)
	p.Text = config.FormatPolicy(pf, header...)
	var ex []string
	for _, f := range fs {
		ex = append(ex, explain(f))
	}
	p.Explanation = strings.Join(ex, "\n\n")
}

// twoDirections reports whether peer has policies for both directions.
func (a *analyzer) twoDirections(peer string) bool {
	var in, out bool
	for _, p := range a.rep.Policies {
		if p.Peer == peer {
			in = in || p.Direction == Inbound
			out = out || p.Direction != Inbound
		}
	}
	return in && out
}

// apply sets the fix's options on p.
func (f Fix) apply(p *normalize.Policy) {
	p.WindowScale = f.WindowScale
	if f.WindowScaleMax != nil {
		p.WindowScaleMax = uint8(*f.WindowScaleMax)
	}
	p.Timestamps = f.Timestamps
	p.StripSACKOK = bool(f.SACKPermitted)
	p.MSSMax = uint16(f.MSSMax)
	p.StripUnknown = bool(f.Unknown)
}

// windowLimitFix is the fix for a window-limit box, by who sends the data.
// Clamping rewrites the windows the local host sends so that field << K is
// its real window: it helps when the local host receives. As the sender,
// the local host is bounded by what the box computes for the remote's
// windows, remote window >> (S - K), which no rewriting of its own windows
// raises; stripping scaling makes both ends' windows plain 16-bit values
// the box reads right (up to 64 KiB).
func windowLimitFix(rf *rawFinding, local int) Fix {
	if int(rf.sender) == local {
		return Fix{WindowScale: normalize.WSStrip, MSSMax: rf.mss}
	}
	k := rf.capLo
	return Fix{WindowScale: normalize.WSClamp, WindowScaleMax: &k, MSSMax: rf.mss}
}

func reasonFor(f *Finding) string {
	switch f.Class {
	case ClassWindowScale:
		return "window-scale mismatch on the path (diagnosed from a capture)"
	case ClassPAWS:
		return "timestamps rewritten on the path: PAWS discards valid segments"
	case ClassSYNOption:
		return "SYNs carrying " + maskString(f.raw.opts) + " are dropped on the path"
	case ClassPMTU:
		return "path-MTU black hole: large segments vanish, ICMP too-big filtered"
	case ClassSACK:
		return "SACK blocks broken by sequence rewriting on the path"
	case ClassWindowLimit:
		return fmt.Sprintf("a box on the path tracks windows with window-scale shift %d at most and drops data beyond them", f.raw.capHi)
	}
	return string(f.Class)
}

// explain is the paragraph for the upstream ticket.
func explain(f *Finding) string {
	rf := f.raw
	ci := rf.ci
	local, peer := ci.addr[f.local], ci.addr[1-f.local]
	sender, receiver := local, peer
	if rf.sender >= 0 {
		sender, receiver = ci.addr[rf.sender], ci.addr[1-rf.sender]
	}
	cite := ""
	if len(f.Evidence) > 0 {
		cite = fmt.Sprintf(" (see packet %d of our capture, taken on %s)", f.Evidence[0].Packet, local)
	}
	switch f.Class {
	case ClassPAWS:
		return fmt.Sprintf("Data segments from %s reach %s carrying TCP timestamp values (TSval) older than values already received on the same connection%s. "+
			"The PAWS check of RFC 7323 section 5 makes the receiver discard such segments silently, so the sender retransmits them, they are discarded again and the transfer stalls; "+
			"the receiver keeps acknowledging an old sequence number although the segment is visible in the capture. "+
			"A device on the path between us rewrites TSval (for example a firewall or load balancer that randomizes timestamps per packet or per direction); "+
			"it must leave the option alone or rewrite it consistently for the whole connection. "+
			"Until this is fixed we disable TCP timestamps on connections with %s.", sender, receiver, cite, peer)
	case ClassWindowScale:
		return fmt.Sprintf("The window-scale option (RFC 7323 section 2) is not delivered intact between %s and %s: %s%s. "+
			"With the two ends disagreeing on the shift, one side reads every advertised window wrongly, sends beyond what the other accepts, and segments are dropped and retransmitted until the connection stalls. "+
			"A device on the path rewrites or strips the window-scale option in the SYN or SYN-ACK; it must pass it unchanged. "+
			"Until this is fixed we disable window scaling on connections with %s (windows are then limited to 64 KB: slower on long paths, but correct).",
			local, peer, rf.summary, cite, peer)
	case ClassSYNOption:
		return fmt.Sprintf("SYNs from %s to %s that carry the TCP option(s) %s are dropped silently on the path: no SYN-ACK, no RST and no ICMP error comes back%s. "+
			"These options are standard (RFC 7323, RFC 2018) and RFC 9293 requires hosts and middleboxes to pass options they do not implement. "+
			"A firewall between us filters SYNs by their TCP options; please remove that rule. "+
			"Until this is fixed we remove %s from the SYNs of connections with %s.", local, peer, maskString(rf.opts), cite, maskString(rf.opts), peer)
	case ClassPMTU:
		return fmt.Sprintf("Full-size packets from %s to %s are lost every time while smaller ones arrive, and no ICMP fragmentation-needed (IPv4) or packet-too-big (IPv6) message reaches the sender%s. "+
			"A link on the path has a smaller MTU and the ICMP errors that path-MTU discovery relies on (RFC 1191, RFC 8201) are filtered, which makes a black hole (RFC 2923 section 2.1). "+
			"Please let these ICMP messages through (RFC 4890) or clamp the MSS where the MTU shrinks. "+
			"Until this is fixed we lower the MSS announced on connections with %s to %d.", sender, receiver, cite, peer, rf.fix.MSSMax)
	case ClassWindowLimit:
		fix := fmt.Sprintf("Until this is fixed we clamp the window-scale shift on connections with %s to %d and rewrite the windows %s advertises so that the device's computation (field << %d) gives the real window; "+
			"this keeps window scaling for the data %s receives (stripping the option instead would cap it at 64 KB).", peer, rf.capLo, local, rf.capLo, local)
		if rf.capLo == 0 {
			fix = fmt.Sprintf("Until this is fixed we clamp the window-scale shift on connections with %s to 0 and rewrite the windows %s advertises as plain 16-bit values, which the device reads correctly (up to 64 KB).", peer, local)
		}
		if rf.fix.WindowScale == normalize.WSStrip {
			fix = fmt.Sprintf("Until this is fixed we disable window scaling on connections with %s: both ends then send plain 16-bit windows, which the device reads correctly (up to 64 KB). "+
				"Clamping would not help here: %s sends the data, and the device holds it to %s's window field << %d, about %d bytes, whatever %s advertises itself.",
				peer, local, peer, rf.capHi, rf.capWin, local)
		}
		return fmt.Sprintf("Data from %s to %s is dropped on the path once it goes beyond the receiver's acknowledgment plus its window field shifted by %d, although the receiver announced window-scale shift %d (RFC 7323 section 2) and its window had room for it: %s%s. "+
			"A stateful firewall or load balancer between us tracks TCP windows but ignores or caps the window-scale shift; it must apply the shift both ends announced (or stop enforcing windows). %s",
			sender, receiver, rf.capHi, rf.shiftSeen, rf.summary, cite, fix)
	case ClassSACK:
		return fmt.Sprintf("SACK blocks sent by %s refer to sequence numbers %s never sent%s. "+
			"A device on the path rewrites TCP sequence numbers (sequence randomization) without rewriting the SACK option (RFC 2018) accordingly, so the sender's loss recovery acts on nonsense and the connection stalls. "+
			"Please disable sequence randomization for this traffic or let the device translate SACK blocks. "+
			"Until this is fixed we disable SACK on connections with %s.", receiver, sender, cite, peer)
	}
	return rf.summary
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer, name string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tcpnorm diagnose: %s (%s, %d packets, %d TCP segments, %d connections)\n", name, r.Format, r.Packets, r.TCPSegments, r.Connections)
	switch r.Verdict {
	case VerdictHealthy:
		b.WriteString("verdict: healthy: no stall, retransmission or option fault found\n")
	case VerdictOptionFault:
		var cls []string
		seen := map[Class]bool{}
		for _, f := range r.Findings {
			if f.Fixable && !seen[f.Class] {
				seen[f.Class] = true
				cls = append(cls, string(f.Class))
			}
		}
		fmt.Fprintf(&b, "verdict: FAULT: %s: a path fault tcpnorm can work around (policy below)\n", strings.Join(cls, ", "))
	case VerdictSuspected:
		b.WriteString("verdict: suspected option fault, but the evidence is too weak for a policy (findings below)\n")
	default:
		b.WriteString("verdict: trouble, but no option fault: no tcpnorm policy helps (findings below)\n")
	}
	for i, f := range r.Findings {
		fmt.Fprintf(&b, "\nfinding %d: %s (confidence %s", i+1, f.Class, f.Confidence)
		switch {
		case !f.Fixable:
			b.WriteString("; not an option fault, no policy fixes it")
		case f.Confidence == Suspected:
			b.WriteString("; suspected only: no policy proposed")
		}
		b.WriteString(")\n")
		if f.Client != "" {
			fmt.Fprintf(&b, "  connection: %s -> %s (%s", f.Client, f.Server, f.Direction)
		} else {
			fmt.Fprintf(&b, "  connection: %s <-> %s (handshake not captured", f.Local, f.Peer)
		}
		if f.Connections > 1 {
			fmt.Fprintf(&b, "; %d connections like it", f.Connections)
		}
		b.WriteString(")\n")
		fmt.Fprintf(&b, "  vantage:    %s\n", vantageLine(&f))
		for _, w := range f.VantageWhy {
			fmt.Fprintf(&b, "              - %s\n", w)
		}
		b.WriteString(textfmt.Wrap("  what:       ", "              ", f.Summary, 100))
		if len(f.Evidence) > 0 {
			b.WriteString("  evidence (packet numbers as in Wireshark, absolute sequence numbers as tcpdump -S prints them):\n")
			for _, e := range f.Evidence {
				fmt.Fprintf(&b, "    #%-7d %s > %s seq %d", e.Packet, e.From, e.To, e.Seq)
				if e.Ack != 0 {
					fmt.Fprintf(&b, " ack %d", e.Ack)
				}
				if e.Win != 0 {
					fmt.Fprintf(&b, " win %d", e.Win)
				}
				if e.Len != 0 {
					fmt.Fprintf(&b, " len %d", e.Len)
				}
				fmt.Fprintf(&b, ": %s\n", e.Note)
			}
		}
	}
	for _, p := range r.Policies {
		dir := ""
		if p.Direction != DirectionUnknown {
			dir = ", " + p.Direction.String() + " connections"
		}
		fmt.Fprintf(&b, "\npolicy for %s%s (save as policy_dir/%s, then `tcpnorm check` and reload):\n\n", p.Peer, dir, p.File)
		for _, l := range strings.Split(strings.TrimRight(p.Text, "\n"), "\n") {
			fmt.Fprintf(&b, "    %s\n", l)
		}
		b.WriteString("\nfor the upstream ticket:\n\n")
		for _, para := range strings.Split(p.Explanation, "\n\n") {
			b.WriteString(textfmt.Wrap("    ", "    ", para, 78))
			b.WriteString("\n")
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range r.Notes {
			b.WriteString(textfmt.Wrap("  - ", "    ", n, 100))
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("\nwarnings:\n")
		for _, n := range r.Warnings {
			b.WriteString(textfmt.Wrap("  - ", "    ", n, 100))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func vantageLine(f *Finding) string {
	s := ""
	switch f.Vantage {
	case VantageSender:
		s = fmt.Sprintf("the sender's view: captured on %s, which sent the data", f.Local)
	case VantageReceiver:
		s = fmt.Sprintf("the receiver's view: captured on %s, which received the data", f.Local)
	case VantageClient:
		s = fmt.Sprintf("the client's view: captured on %s, which sent the SYNs", f.Local)
	default:
		s = fmt.Sprintf("the server's view: captured on %s, which received the SYNs", f.Local)
	}
	if f.VantageAssumed {
		s += " (assumed)"
	}
	return s
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
