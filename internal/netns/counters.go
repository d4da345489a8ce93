//go:build linux

package netns

import (
	"errors"
	"fmt"
	"strings"
)

// ConntrackInvalid sums conntrack's per-CPU invalid counter in namespace ns.
func ConntrackInvalid(ns string) (uint64, error) {
	text, err := ReadNetFile(ns, "stat/nf_conntrack")
	if err != nil {
		return 0, err
	}
	return parseCTStat(text, "invalid")
}

// parseCTStat sums column col of /proc/net/stat/nf_conntrack (hex, one line
// per CPU under a header line).
func parseCTStat(text, col string) (uint64, error) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) < 2 {
		return 0, errors.New("nf_conntrack stat: no data")
	}
	idx := -1
	for i, h := range strings.Fields(lines[0]) {
		if h == col {
			idx = i
		}
	}
	if idx < 0 {
		return 0, fmt.Errorf("nf_conntrack stat: no column %q", col)
	}
	var sum uint64
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if idx >= len(f) {
			return 0, fmt.Errorf("nf_conntrack stat: short line %q", l)
		}
		var v uint64
		if _, err := fmt.Sscanf(f[idx], "%x", &v); err != nil {
			return 0, fmt.Errorf("nf_conntrack stat: %q: %w", f[idx], err)
		}
		sum += v
	}
	return sum, nil
}

// TCPInCsumErrors reads the Tcp InCsumErrors counter of namespace ns
// (/proc/net/snmp; it counts IPv4 and IPv6 segments).
func TCPInCsumErrors(ns string) (uint64, error) {
	text, err := ReadNetFile(ns, "snmp")
	if err != nil {
		return 0, err
	}
	return ParseSNMP(text, "Tcp", "InCsumErrors")
}

// ParseSNMP finds counter col of protocol proto in /proc/net/snmp text: a
// header line and a value line per protocol, both starting "proto:".
func ParseSNMP(text, proto, col string) (uint64, error) {
	var hdr []string
	for _, ln := range strings.Split(text, "\n") {
		f := strings.Fields(ln)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if hdr == nil {
			hdr = f
			continue
		}
		for i, h := range hdr {
			if h == col && i < len(f) {
				var v uint64
				if _, err := fmt.Sscan(f[i], &v); err != nil {
					return 0, fmt.Errorf("snmp %s %s: %q: %w", proto, col, f[i], err)
				}
				return v, nil
			}
		}
		return 0, fmt.Errorf("snmp: no %s %s", proto, col)
	}
	return 0, fmt.Errorf("snmp: no %s values", proto)
}
