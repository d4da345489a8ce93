package diagnose

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/textfmt"
)

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
