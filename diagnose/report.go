package diagnose

import (
	"fmt"
	"net/netip"
	"sort"
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
