package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// WriteCheck prints the resolved policy table the way `tcpnorm check` does.
func WriteCheck(w io.Writer, st []PolicyStatus, now time.Time) {
	if len(st) == 0 {
		fmt.Fprintln(w, "no policies")
		return
	}
	for i, s := range st {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "policy %s (%s)\n", s.Name, s.File)
		row := func(k, v string) { fmt.Fprintf(w, "  %-10s %s\n", k, v) }
		if s.Domain != "" {
			var with []string
			if s.MX {
				with = append(with, "mx")
			}
			if s.SPF {
				with = append(with, "spf")
			}
			d := s.Domain
			if len(with) > 0 {
				d += " (" + strings.Join(with, ", ") + ")"
			}
			row("domain", d)
		}
		row("mode", s.Mode)
		row("direction", s.Direction)
		if len(s.Ports) == 0 {
			row("ports", "all")
		} else {
			ps := make([]string, len(s.Ports))
			for j, p := range s.Ports {
				ps[j] = strconv.Itoa(int(p))
			}
			row("ports", strings.Join(ps, ", "))
		}
		row("actions", s.Actions)
		if len(s.Addresses) == 0 {
			row("addresses", "none")
		}
		for j, a := range s.Addresses {
			k := ""
			if j == 0 {
				k = "addresses"
			}
			row(k, a.String())
		}
		row("expires", expiryString(s.Expires, now))
		if s.ProbeEvery != 0 {
			row("probe", ProbeSummary(s.ProbeEvery, s.Probe, now))
		}
		if s.Reason != "" {
			row("reason", s.Reason)
		}
		if s.Ticket != "" {
			row("ticket", s.Ticket)
		}
		if s.Evidence {
			row("evidence", "on: handshakes kept in [evidence] dir/"+s.Name+".pcapng")
		}
		if s.DNSError != "" {
			row("dns error", s.DNSError)
		}
		for j, n := range s.Notes {
			k := ""
			if j == 0 {
				k = "notes"
			}
			row(k, n)
		}
	}
}

func expiryString(e, now time.Time) string {
	switch {
	case e.IsZero():
		return "never"
	case !now.Before(e):
		return "expired (" + e.UTC().Format(time.RFC3339) + ")"
	}
	return "in " + FormatLeft(e.Sub(now)) + " (" + e.UTC().Format(time.RFC3339) + ")"
}

// FormatLeft renders a remaining time coarsely (check, status, report): "3d4h", "5h12m", "42m", "30s".
func FormatLeft(d time.Duration) string {
	if d < time.Minute {
		return strconv.Itoa(int(d.Seconds())) + "s"
	}
	days := int(d / (24 * time.Hour))
	hours := int(d % (24 * time.Hour) / time.Hour)
	mins := int(d % time.Hour / time.Minute)
	switch {
	case days > 0:
		return fmt.Sprintf("%dd%dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh%dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}
