package status

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
)

// Write prints d for people: a line about the daemon, a block per policy,
// a table of the queues.
func Write(w io.Writer, d *Document) {
	now := d.Now
	state := "not ready"
	if d.Ready {
		state = "ready"
	}
	fmt.Fprintf(w, "tcpnorm %s, %s, up %s (since %s)\n", d.Version, state, Ago(now, d.Started), d.Started.Format(time.RFC3339))
	if p := d.Privileges; p != nil {
		for i, l := range p.Lines() {
			if i == 0 {
				fmt.Fprintf(w, "privileges: %s\n", l)
			} else {
				fmt.Fprintf(w, "            %s\n", l)
			}
		}
	}
	if d.Evidence.Dropped > 0 || d.Evidence.Errors > 0 {
		fmt.Fprintf(w, "WARNING: evidence lost: %d segments dropped (writer behind), %d file errors (see the log: msg=\"evidence not written\")\n",
			d.Evidence.Dropped, d.Evidence.Errors)
	}
	for _, p := range d.Policies {
		fmt.Fprintf(w, "\npolicy %s\n", p.Name)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		row := func(k, f string, a ...any) { fmt.Fprintf(tw, "  %s\t%s\n", k, fmt.Sprintf(f, a...)) }
		row("mode", "%s, %s, ports %s", p.Mode, p.Direction, Ports(p.Ports))
		row("actions", "%s", p.Actions)
		if p.Ticket != "" {
			row("ticket", "%s", p.Ticket)
		}
		if p.Reason != "" {
			row("reason", "%s", p.Reason)
		}
		addrs := fmt.Sprintf("%d", len(p.Addresses))
		if len(p.Addresses) > 0 {
			shown := p.Addresses[:min(4, len(p.Addresses))]
			addrs += " (" + strings.Join(shown, ", ")
			if len(p.Addresses) > len(shown) {
				addrs += ", ..."
			}
			addrs += ")"
		}
		switch {
		case p.Domain == "":
			addrs += "; cidrs only"
		case p.Refreshed != nil:
			addrs += "; resolved " + Ago(now, *p.Refreshed) + " ago"
			if p.Next != nil {
				addrs += ", next in " + Ago(*p.Next, now)
			}
		default:
			addrs += "; not resolved yet"
		}
		if p.DNSError != "" {
			addrs += "; DNS error: " + p.DNSError
		}
		row("addresses", "%s", addrs)
		last := "never"
		if p.LastMatch != nil {
			last = Ago(now, *p.LastMatch) + " ago (" + p.LastMatch.Format(time.RFC3339) + ")"
		}
		row("matched", "%d connections, last %s", p.Connections, last)
		row("rewrites", "%s", rewriteList(p.Rewrites))
		if p.Mode == "log-only" || len(p.WouldRewrite) > 0 {
			row("would", "%s", rewriteList(p.WouldRewrite))
		}
		row("expires", "%s", Expiry(p.Expires, p.ExpiresIn, p.Expired))
		if p.Probe != nil {
			every, st := p.Probe.State()
			row("probe", "%s", config.ProbeSummary(every, st, now))
		}
		if p.Evidence {
			row("evidence", "%s (%d packet copies written)", p.EvidenceFile, p.EvidencePackets)
		} else {
			row("evidence", "off")
		}
		tw.Flush()
	}
	if len(d.Policies) == 0 {
		fmt.Fprintln(w, "\nno policies")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\trange\tbound\tpackets\tmodified\tdropped\tlatency p50\tp99\tkernel waiting\tkernel drops\tsocket drops\t")
	for _, q := range d.Queues.PerQueue {
		bound := "no"
		if q.Bound {
			bound = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t\n", q.Queue, q.Range, bound, q.Packets, q.Modified, q.Dropped,
			latency(q.LatencyP50, q.LatencySamples), latency(q.LatencyP99, q.LatencySamples), q.KernelWaiting, q.KernelDropped, q.KernelUserDrop)
	}
	tw.Flush()
}

// Expiry says when a policy expires, and loudly if it has, or never will.
func Expiry(expires string, in *float64, expired bool) string {
	switch {
	case expires == "":
		return "never: WARNING: no expires; a workaround should end (set expires)"
	case expired:
		return "EXPIRED at " + expires + ": it no longer applies; remove the policy or extend it"
	case in != nil:
		left := time.Duration(*in) * time.Second
		s := "in " + config.FormatLeft(left) + " (" + expires + ")"
		if left <= 7*24*time.Hour {
			s += ": WARNING: within 7 days"
		}
		return s
	}
	return expires
}

func rewriteList(rs []Rewrite) string {
	if len(rs) == 0 {
		return "none"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%s %s %d", r.Option, r.Action, r.Count)
	}
	return strings.Join(parts, ", ")
}

// Ports lists a policy's ports, "all" for none.
func Ports(ps []uint16) string {
	if len(ps) == 0 {
		return "all"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ",")
}

func latency(sec float64, samples uint64) string {
	if samples == 0 {
		return "-"
	}
	d := time.Duration(sec * 1e9)
	if d < time.Millisecond {
		return fmt.Sprintf("%dus", d.Microseconds())
	}
	return d.Round(10 * time.Microsecond).String()
}

// Ago is the time from then to now, rounded for reading.
func Ago(now, then time.Time) string { return config.FormatLeft(max(now.Sub(then), 0)) }
