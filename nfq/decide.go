//go:build linux

package nfq

import (
	nfqueue "github.com/florianl/go-nfqueue/v2"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// NFQA_SKB_INFO bits (include/uapi/linux/netfilter/nfnetlink_queue.h).
const (
	skbCsumNotReady = 1 << 0 // the checksum is not complete (CHECKSUM_PARTIAL)
	skbGSO          = 1 << 1 // not a real packet: GSO, to be segmented later
)

// action is the verdict message for one packet.
type action struct {
	verdict int  // nfqueue.NfAccept or nfqueue.NfDrop
	packet  bool // send the (modified) packet bytes with the verdict
	setMark bool
	mark    uint32
}

// metricVerdict is the verdict label the packet is counted under.
func (a action) metricVerdict() metrics.Verdict {
	switch {
	case a.verdict == nfqueue.NfDrop:
		return metrics.Drop
	case a.packet:
		return metrics.Modify
	}
	return metrics.Accept
}

// acceptUnchanged is the answer for anything tcpnorm cannot handle.
var acceptUnchanged = action{verdict: nfqueue.NfAccept}

// decide maps a normalizer result to the verdict message. A truncated copy
// is never returned: the kernel would cut the packet to the copy's length.
func decide(r normalize.Result, m normalize.Meta) action {
	a := action{verdict: nfqueue.NfAccept}
	if r.Verdict == normalize.Drop {
		a.verdict = nfqueue.NfDrop
		return a
	}
	a.packet = r.Modified && !m.Truncated
	if r.SetMark {
		a.setMark = true
		a.mark = r.Mark
	}
	return a
}

// metaOf is what the queue message says about the packet besides its bytes.
func metaOf(q *queued) normalize.Meta {
	return normalize.Meta{
		CsumNotReady: q.skbInfo&skbCsumNotReady != 0,
		Truncated:    q.truncated,
		Mark:         q.mark,
	}
}
