package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// FormatPolicy writes pf as a policy file that Load reads back to the same
// policy (Policy.Name comes from the file name, so it is not written). It is
// the one writer of the policy-file syntax: diagnose proposes, and the lab
// and the benchmarks install, what it prints. Keys at their defaults are
// left out, except direction and mode, which an operator reading the file
// should not have to look up. header lines are written first as comments.
func FormatPolicy(pf *PolicyFile, header ...string) string {
	var b strings.Builder
	for _, h := range header {
		for _, l := range strings.Split(strings.TrimRight(h, "\n"), "\n") {
			b.WriteString(strings.TrimRight("# "+l, " ") + "\n")
		}
	}
	p := pf.Policy
	if p == nil {
		p = &normalize.Policy{Direction: normalize.Both}
	}
	if pf.Domain != "" {
		fmt.Fprintf(&b, "domain = %s\n", tomlString(pf.Domain))
	}
	if pf.MX {
		b.WriteString("mx = true\n")
	}
	if pf.SPF {
		b.WriteString("spf = true\n")
	}
	if len(pf.CIDRs) > 0 {
		q := make([]string, len(pf.CIDRs))
		for i, c := range pf.CIDRs {
			q[i] = tomlString(c.String())
		}
		fmt.Fprintf(&b, "cidrs = [%s]\n", strings.Join(q, ", "))
	}
	if len(p.Ports) > 0 {
		q := make([]string, len(p.Ports))
		for i, port := range p.Ports {
			q[i] = fmt.Sprint(port)
		}
		fmt.Fprintf(&b, "ports = [%s]\n", strings.Join(q, ", "))
	}
	dir := p.Direction
	if dir == 0 {
		dir = normalize.Both
	}
	fmt.Fprintf(&b, "direction = %s\n", tomlString(dir.String()))
	fmt.Fprintf(&b, "mode = %s\n", tomlString(p.Mode.String()))
	if !p.Expires.IsZero() {
		fmt.Fprintf(&b, "expires = %s\n", p.Expires.UTC().Format(time.RFC3339))
	}
	if p.Reason != "" {
		fmt.Fprintf(&b, "reason = %s\n", tomlString(p.Reason))
	}
	if p.Ticket != "" {
		fmt.Fprintf(&b, "ticket = %s\n", tomlString(p.Ticket))
	}
	if p.Evidence {
		b.WriteString("evidence = true\n")
	}
	if pf.Probe != 0 {
		fmt.Fprintf(&b, "probe = %s\n", tomlString(FormatDuration(pf.Probe)))
	}
	b.WriteString("\n[options]\n")
	b.WriteString(FormatOptions(p))
	return b.String()
}

// FormatDuration is d as time.ParseDuration reads it, without zero units:
// "12h", "1h30m", "5s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatOptions writes the [options] body of p: one line per option that
// is not at its default.
func FormatOptions(p *normalize.Policy) string {
	var b strings.Builder
	if p.WindowScale != normalize.WSKeep {
		fmt.Fprintf(&b, "window_scale = %s\n", tomlString(p.WindowScale.String()))
		if p.WindowScale == normalize.WSClamp {
			fmt.Fprintf(&b, "window_scale_max = %d\n", p.WindowScaleMax)
		}
	}
	if p.Timestamps != normalize.TSKeep {
		fmt.Fprintf(&b, "timestamps = %s\n", tomlString(p.Timestamps.String()))
	}
	if p.StripSACKOK {
		b.WriteString("sack_permitted = \"strip\"\n")
	}
	if p.MSSMax != 0 {
		fmt.Fprintf(&b, "mss_max = %d\n", p.MSSMax)
	}
	if p.StripUnknown {
		b.WriteString("unknown = \"strip\"\n")
	}
	if p.DropMalformed {
		b.WriteString("malformed = \"drop\"\n")
	}
	if p.ClearECN {
		b.WriteString("ecn = \"clear\"\n")
	}
	return b.String()
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
