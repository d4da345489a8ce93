package diagnose

import (
	"fmt"

	"github.com/tcpnorm/tcpnorm/normalize"
)

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
