package evidence

import (
	"net/netip"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// snapLen is how much of each packet a record keeps: all its headers.
const snapLen = normalize.OriginalMax

// Record is one handshake segment of an evidence policy: the bytes as
// received and, when they differ, as sent. It holds its bytes in fixed
// arrays, so filling one and queueing it copies without allocating.
type Record struct {
	Time   time.Time
	Queue  uint16
	Policy *normalize.Policy
	Kind   normalize.Kind
	Dir    normalize.Direction
	Flow   normalize.Flow
	Why    normalize.Why
	Drop   bool // dropped: nothing was sent
	// Rewritten: Sent differs from Received.
	Rewritten bool

	rxLen, txLen int // lengths on the wire
	rxN, txN     int // bytes kept
	rx, tx       [snapLen]byte
}

// Wanted reports whether r is a handshake segment whose policy keeps
// evidence. It is the one check on the packet path for every packet with a
// policy; it does not allocate.
func Wanted(r *normalize.Result) bool {
	return r.Policy != nil && r.Policy.Evidence && r.Kind != normalize.KindOther
}

// Fill sets rec from a result, the packet as received and as sent (after
// rewriting in place, so the same bytes when nothing changed).
func (rec *Record) Fill(now time.Time, queue uint16, r *normalize.Result, received, sent []byte) {
	rec.Time, rec.Queue = now, queue
	rec.Policy, rec.Kind, rec.Dir, rec.Flow, rec.Why = r.Policy, r.Kind, r.Dir, r.Flow, r.Why
	rec.Drop = r.Verdict == normalize.Drop
	rec.Rewritten = r.Modified && r.Original != nil
	if rec.Rewritten {
		received = r.Original
		rec.rxLen = len(sent) // rewrites never change the length
	} else {
		rec.rxLen = len(received)
	}
	rec.rxN = copy(rec.rx[:], received)
	rec.txN, rec.txLen = 0, 0
	if rec.Rewritten {
		rec.txN, rec.txLen = copy(rec.tx[:], sent), len(sent)
	}
}

// Received is the packet as tcpnorm received it (at most snapLen bytes)
// and its length on the wire.
func (rec *Record) Received() ([]byte, int) { return rec.rx[:rec.rxN], rec.rxLen }

// Sent is the packet as tcpnorm sent it, and its length; nil when it was
// sent unchanged, or not at all (dropped, or a log-only policy's).
func (rec *Record) Sent() ([]byte, int) {
	if !rec.Rewritten {
		return nil, 0
	}
	return rec.tx[:rec.txN], rec.txLen
}

// comments are the packet comments of the received and the sent copy (""
// when there is no sent copy): the policy, its ticket, the segment and what
// was done to it.
func (rec *Record) comments() (received, sent string) {
	var b strings.Builder
	b.WriteString("policy=")
	b.WriteString(rec.Policy.Name)
	if rec.Policy.Ticket != "" {
		b.WriteString(" ticket=")
		b.WriteString(rec.Policy.Ticket)
	}
	b.WriteString(" ")
	b.WriteString(rec.Kind.String())
	b.WriteString(" ")
	b.WriteString(rec.Dir.String())
	b.WriteString(" ")
	b.WriteString(netip.AddrPortFrom(rec.Flow.Client, rec.Flow.ClientPort).String())
	b.WriteString(" > ")
	b.WriteString(netip.AddrPortFrom(rec.Flow.Server, rec.Flow.ServerPort).String())
	head := b.String()
	why := rec.Why.String()
	switch {
	case rec.Drop:
		return head + " received; dropped: " + why, ""
	case rec.Why.Reason == normalize.ReasonLogOnly:
		return head + " received; log-only, not changed; would rewrite: " + rec.Why.Changes.String(), ""
	case rec.Rewritten:
		return head + " received", head + " sent: " + why
	}
	if rec.Why.Reason != normalize.ReasonApplied {
		return head + " received", head + " sent unchanged: " + why
	}
	return head + " received", head + " sent unchanged"
}
