package normalize

import (
	"net/netip"
	"strconv"
)

// Verdict is what the kernel is told to do with the packet.
type Verdict uint8

const (
	Accept Verdict = iota
	Drop
)

func (v Verdict) String() string {
	if v == Drop {
		return "drop"
	}
	return "accept"
}

// Meta is what the queue told us about the packet besides its bytes.
type Meta struct {
	// CsumNotReady: the kernel has not finished the TCP checksum
	// (NFQA_SKB_CSUMNOTREADY). A rewrite then needs a full checksum.
	CsumNotReady bool
	// Truncated: the copy is shorter than the packet (NFQA_CAP_LEN present).
	// Such a packet is never returned modified: the kernel would truncate it.
	Truncated bool
	// Mark is the packet mark as queued. Later segments of stateful flows
	// carry tcpnorm's bits in it (restored from the connmark).
	Mark uint32
	// Now is a monotonic clock reading in nanoseconds (timestamp repair).
	Now int64
}

// Reason says why a packet got the result it got. One per packet.
type Reason uint8

const (
	ReasonNoPolicy      Reason = iota // no policy matches: the fast path
	ReasonNotHandshake                // neither SYN nor SYN-ACK, no tcpnorm mark
	ReasonApplied                     // policy applied (Changes may be empty: nothing to do)
	ReasonLogOnly                     // log-only policy: Changes is what enforce would do
	ReasonNoRecord                    // SYN-ACK whose SYN was not seen: only MSS clamped
	ReasonAuthenticated               // TCP-MD5 or TCP-AO present: never modified
	ReasonMalformed                   // option list malformed: accepted unchanged
	ReasonMalformedDrop               // option list malformed, policy says drop
	ReasonFragment                    // IP fragment or non-first fragment: accepted unchanged
	ReasonTruncated                   // copy shorter than packet: accepted unchanged
	ReasonNotTCP                      // not TCP, or a header that does not parse
	numReasons
)

var reasonNames = [numReasons]string{
	"no-policy", "not-handshake", "applied", "log-only", "no-record",
	"authenticated", "malformed", "malformed-drop", "fragment", "truncated", "not-tcp",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Reasons lists every Reason, for metrics that want all label values up front.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Change is a set of the rewrites done (or, log-only, that would be done).
type Change uint16

const (
	ChWSStripped Change = 1 << iota
	ChWSClamped
	ChTSStripped
	ChSACKOKStripped
	ChMSSClamped
	ChUnknownStripped
	ChECNCleared
	ChWindowRewritten // stateful: local window field rewritten for a clamped flow
	ChTSRepaired      // stateful: remote TSval rewritten
	numChanges        = iota
)

var changeNames = [numChanges]string{
	"wscale-strip", "wscale-clamp", "ts-strip", "sackok-strip", "mss-clamp",
	"unknown-strip", "ecn-clear", "window-rewrite", "ts-repair",
}

// Changes lists every single-bit Change, for metrics label values.
func Changes() []Change {
	cs := make([]Change, numChanges)
	for i := range cs {
		cs[i] = 1 << i
	}
	return cs
}

func (c Change) String() string {
	if c == 0 {
		return "none"
	}
	var b []byte
	for i := 0; i < numChanges; i++ {
		if c&(1<<i) != 0 {
			if len(b) > 0 {
				b = append(b, ',')
			}
			b = append(b, changeNames[i]...)
		}
	}
	return string(b)
}

// Kind is the handshake role of a segment.
type Kind uint8

const (
	KindOther Kind = iota
	KindSYN
	KindSYNACK
)

func (k Kind) String() string {
	switch k {
	case KindSYN:
		return "syn"
	case KindSYNACK:
		return "syn-ack"
	}
	return "segment"
}

// Why is the compact, allocation-free account of a result.
type Why struct {
	Reason  Reason
	Changes Change
	WSOld   uint8 // shift before a clamp
	WSNew   uint8
	MSSOld  uint16 // MSS before a clamp
	MSSNew  uint16
	WinOld  uint16 // window field before a stateful rewrite
	WinNew  uint16
	TSOld   uint32 // TSval before a repair
	TSNew   uint32
}

// String renders the reason and changes for logs; it allocates, so it is
// for the logging path only.
func (w Why) String() string {
	b := []byte(w.Reason.String())
	if w.Changes != 0 {
		b = append(b, ' ')
		b = append(b, w.Changes.String()...)
	}
	if w.Changes&ChWSClamped != 0 {
		b = append(b, " wscale="...)
		b = strconv.AppendUint(b, uint64(w.WSOld), 10)
		b = append(b, "->"...)
		b = strconv.AppendUint(b, uint64(w.WSNew), 10)
	}
	if w.Changes&ChMSSClamped != 0 {
		b = append(b, " mss="...)
		b = strconv.AppendUint(b, uint64(w.MSSOld), 10)
		b = append(b, "->"...)
		b = strconv.AppendUint(b, uint64(w.MSSNew), 10)
	}
	if w.Changes&ChWindowRewritten != 0 {
		b = append(b, " win="...)
		b = strconv.AppendUint(b, uint64(w.WinOld), 10)
		b = append(b, "->"...)
		b = strconv.AppendUint(b, uint64(w.WinNew), 10)
	}
	if w.Changes&ChTSRepaired != 0 {
		b = append(b, " tsval="...)
		b = strconv.AppendUint(b, uint64(w.TSOld), 10)
		b = append(b, "->"...)
		b = strconv.AppendUint(b, uint64(w.TSNew), 10)
	}
	return string(b)
}

// Flow names a connection by its client (SYN sender) and server ends.
type Flow struct {
	Client, Server         netip.Addr
	ClientPort, ServerPort uint16
}

// Result is the outcome of Normalizer.Packet.
type Result struct {
	Verdict  Verdict
	Modified bool // packet bytes changed: return them with the verdict
	// SetMark: give the packet Mark with the verdict (the whole mark:
	// tcpnorm's bits merged into the original mark).
	SetMark bool
	Mark    uint32
	Kind    Kind
	Dir     Direction // with a policy: Outbound or Inbound
	Policy  *Policy   // the policy in force, or nil
	Flow    Flow      // filled for handshake segments that parsed
	Why     Why
	// HasSeed: the flow's timestamps are repaired from now on; Seed is the
	// remote's handshake TSval, for Normalizer.SeedRepair of the worker
	// that sees the flow's later segments.
	HasSeed bool
	Seed    uint32
	// Original is the packet as received, for a segment of an evidence
	// policy that was rewritten: at most OriginalMax bytes, in the
	// Normalizer's own buffer, valid until its next Packet call. Nil
	// otherwise (an unchanged packet is its own original).
	Original []byte
}

// OriginalMax is how much of a rewritten evidence packet Result.Original
// keeps: every IP and TCP header and the start of any SYN payload.
const OriginalMax = 256
