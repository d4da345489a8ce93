package config

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// recompileLocked builds the table from every unexpired policy and swaps it
// in. cidrs claim first, in file order, then resolved addresses in file
// order: a resolved prefix another policy already claims at equal length
// stays with the earlier claim, and the conflict is logged once.
func (m *Manager) recompileLocked(now time.Time, logChanges bool) {
	claims := map[netip.Prefix][]*normalize.Policy{}
	// claimedBy is the policy already holding prefix c that p overlaps.
	claimedBy := func(c netip.Prefix, p *normalize.Policy) (string, bool) {
		for _, q := range claims[c] {
			if q == p {
				return "", true
			}
			if overlap(q, p) {
				return q.Name, true
			}
		}
		return "", false
	}
	var entries []TableEntry
	expired := map[string]bool{}
	conflicts := map[string]bool{}
	lost := map[string][]netip.Prefix{}
	notes := map[string][]string{}
	for _, s := range m.states {
		p := s.pf.Policy
		if m.isExpired(s.pf, now) {
			expired[p.Name] = true
			continue
		}
		for _, c := range s.pf.CIDRs {
			if by, ok := claimedBy(c, p); ok {
				if by != "" {
					msg := fmt.Sprintf("%s: claimed by %s and %s; %s keeps it", c, by, p.Name, by)
					conflicts[msg] = true
					notes[p.Name] = append(notes[p.Name], msg)
					notes[by] = append(notes[by], msg)
					lost[p.Name] = append(lost[p.Name], c)
				}
				continue
			}
			claims[c] = append(claims[c], p)
			entries = append(entries, TableEntry{c, p})
		}
	}
	for _, s := range m.states {
		p := s.pf.Policy
		if expired[p.Name] {
			continue
		}
		for _, a := range s.addrs {
			if by, ok := claimedBy(a, p); ok {
				if by != "" {
					msg := fmt.Sprintf("%s: resolved for %s but claimed by %s; %s keeps it", a, p.Name, by, by)
					conflicts[msg] = true
					notes[p.Name] = append(notes[p.Name], msg)
					notes[by] = append(notes[by], msg)
					lost[p.Name] = append(lost[p.Name], a)
				}
				continue
			}
			claims[a] = append(claims[a], p)
			entries = append(entries, TableEntry{a, p})
		}
	}
	m.table.Store(NewTable(entries))
	select {
	case m.changed <- struct{}{}:
	default:
	}
	if logChanges {
		for _, s := range m.states {
			n := s.pf.Policy.Name
			if expired[n] && !m.expired[n] {
				m.log.Warn("policy expired", "policy", n, "file", s.pf.File,
					"expired", s.pf.Policy.Expires.UTC().Format(time.RFC3339))
			}
		}
	}
	for c := range conflicts {
		if !m.conflicts[c] {
			m.log.Error("address claimed by two policies", "conflict", c)
		}
	}
	m.expired, m.conflicts, m.lost, m.conflictNotes = expired, conflicts, lost, notes
}
