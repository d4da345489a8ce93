package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// PolicyStatus is one policy as /status and check show it.
type PolicyStatus struct {
	Name      string
	File      string
	Domain    string
	Mode      string
	Direction string
	Ports     []uint16
	Actions   string // e.g. "window_scale=strip timestamps=strip mss_max=1360"
	Addresses []netip.Prefix
	Expires   time.Time // zero: never
	Expired   bool
	DNSError  string // last resolution error, "" if fine

	MX     bool
	SPF    bool
	Reason string
	Ticket string
	Notes  []string // DNS answers worth knowing: NXDOMAIN, ignored SPF terms, conflicts

	Evidence  bool
	Loaded    time.Time // when the running process first loaded a policy of this name
	Refreshed time.Time // the last DNS answer for its names; zero: none yet (or no names)
	Next      time.Time // the next resolution of its names, if it has any

	ProbeEvery time.Duration // policy key probe; 0: off
	Probe      *ProbeState   // the daemon's re-tests, if any yet

	Policy *normalize.Policy // the compiled policy
}

// Status lists every policy with its current addresses.
func (m *Manager) Status() []PolicyStatus { return m.status(nil) }

// Probed is Status of the policies with a probe interval only: what the
// daemon's re-test scheduler reads every second, at no cost for the
// policies it does not probe.
func (m *Manager) Probed() []PolicyStatus {
	return m.status(func(pf *PolicyFile) bool { return pf.Probe != 0 })
}

// status lists the policies keep accepts (nil: all).
func (m *Manager) status(keep func(*PolicyFile) bool) []PolicyStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	var out []PolicyStatus
	if keep == nil {
		out = make([]PolicyStatus, 0, len(m.states))
	}
	for _, s := range m.states {
		if keep != nil && !keep(s.pf) {
			continue
		}
		p := s.pf.Policy
		addrs := append(slices.Clone(s.pf.CIDRs), s.addrs...)
		addrs = uniqPrefixes(addrs)
		if lost := m.lost[p.Name]; len(lost) > 0 {
			addrs = slices.DeleteFunc(addrs, func(a netip.Prefix) bool { return slices.Contains(lost, a) })
		}
		var notes []string
		notes = append(notes, s.notes...)
		notes = append(notes, m.conflictNotes[p.Name]...)
		notes = append(notes, actionNotes(p)...)
		slices.Sort(notes)
		dnsErr := s.lastErr
		if s.needsDNS() && !s.done && dnsErr == "" && !m.isExpired(s.pf, now) {
			dnsErr = "not resolved yet"
		}
		ps := Describe(s.pf)
		ps.Addresses = addrs
		ps.Expired = m.isExpired(s.pf, now)
		ps.DNSError = dnsErr
		ps.Notes = notes
		ps.Loaded, ps.Refreshed, ps.Next = s.loaded, s.answered, s.next
		out = append(out, ps)
	}
	return out
}

// Describe is what a policy file says, without a running manager's
// addresses, DNS state and times: the one description check, status and
// report print.
func Describe(pf *PolicyFile) PolicyStatus {
	p := pf.Policy
	return PolicyStatus{
		Name:       p.Name,
		File:       pf.File,
		Domain:     pf.Domain,
		Mode:       p.Mode.String(),
		Direction:  p.Direction.String(),
		Ports:      slices.Clone(p.Ports),
		Actions:    actionsString(p),
		Addresses:  slices.Clone(pf.CIDRs),
		Expires:    p.Expires,
		MX:         pf.MX,
		SPF:        pf.SPF,
		Reason:     p.Reason,
		Ticket:     p.Ticket,
		Notes:      actionNotes(p),
		Evidence:   p.Evidence,
		ProbeEvery: pf.Probe,
		Policy:     p,
	}
}

// actionsString lists the options a policy changes, in policy-file syntax.
func actionsString(p *normalize.Policy) string {
	var a []string
	switch p.WindowScale {
	case normalize.WSKeep:
	case normalize.WSClamp:
		a = append(a, fmt.Sprintf("window_scale=clamp window_scale_max=%d", p.WindowScaleMax))
	default:
		a = append(a, "window_scale="+p.WindowScale.String())
	}
	if p.Timestamps != normalize.TSKeep {
		a = append(a, "timestamps="+p.Timestamps.String())
	}
	if p.StripSACKOK {
		a = append(a, "sack_permitted=strip")
	}
	if p.MSSMax != 0 {
		a = append(a, fmt.Sprintf("mss_max=%d", p.MSSMax))
	}
	if p.StripUnknown {
		a = append(a, "unknown=strip")
	}
	if p.DropMalformed {
		a = append(a, "malformed=drop")
	}
	if p.ClearECN {
		a = append(a, "ecn=clear")
	}
	if len(a) == 0 {
		return "none"
	}
	return strings.Join(a, " ")
}

// actionNotes says what an operator must know about a policy's actions.
func actionNotes(p *normalize.Policy) []string {
	var n []string
	if p.WindowScale == normalize.WSClamp {
		n = append(n, fmt.Sprintf("window_scale clamp fixes a path that honours shifts only up to %d; "+
			"a path that raises shifts needs strip", p.WindowScaleMax))
	}
	if p.Timestamps == normalize.TSRepair {
		n = append(n, "timestamps repair fixes TSvals scrambled toward us only; scrambling toward the peer needs strip")
	}
	return n
}
