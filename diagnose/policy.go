package diagnose

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// policy is the policy file's direction for d; an unknown direction is
// both.
func (d Direction) policy() normalize.Direction {
	switch d {
	case Outbound:
		return normalize.Outbound
	case Inbound:
		return normalize.Inbound
	}
	return normalize.Both
}

// Fix is the [options] a policy needs, in normalize's terms; fields at
// their zero value (keep) stay at the policy's defaults and are left out
// of the JSON.
type Fix struct {
	WindowScale    normalize.WindowScaleAction `json:"window_scale,omitempty"`
	WindowScaleMax *int                        `json:"window_scale_max,omitempty"`
	Timestamps     normalize.TimestampsAction  `json:"timestamps,omitempty"`
	SACKPermitted  Strip                       `json:"sack_permitted,omitempty"`
	MSSMax         int                         `json:"mss_max,omitempty"`
	Unknown        Strip                       `json:"unknown,omitempty"`
}

// Strip is the fix for an option a policy can only keep or strip
// (sack_permitted, unknown; normalize.Policy's StripSACKOK and
// StripUnknown): true is "strip" in JSON, as in the policy file.
type Strip bool

func (f Fix) empty() bool { return f == Fix{} }

// merge combines two fixes for one peer: strip beats clamp, the smaller
// MSS wins.
func (f Fix) merge(g Fix) Fix {
	if g.WindowScale == normalize.WSStrip || f.WindowScale == normalize.WSKeep {
		if g.WindowScale != normalize.WSKeep {
			f.WindowScale, f.WindowScaleMax = g.WindowScale, g.WindowScaleMax
		}
	}
	if g.Timestamps == normalize.TSStrip || f.Timestamps == normalize.TSKeep && g.Timestamps != normalize.TSKeep {
		f.Timestamps = g.Timestamps
	}
	f.SACKPermitted = f.SACKPermitted || g.SACKPermitted
	f.Unknown = f.Unknown || g.Unknown
	if g.MSSMax > 0 && (f.MSSMax == 0 || g.MSSMax < f.MSSMax) {
		f.MSSMax = g.MSSMax
	}
	return f
}

// policy writes the policy file and the ticket paragraph for one peer and
// direction, with config's formatter.
func (a *analyzer) policy(p *Policy) {
	var fix Fix
	var fs []*Finding
	for i := range a.rep.Findings {
		f := &a.rep.Findings[i]
		if f.Fix != nil && f.Peer == p.Peer && f.Direction == p.Direction {
			fix = fix.merge(*f.Fix)
			fs = append(fs, f)
		}
	}
	first := fs[0]
	names := make([]string, len(p.Classes))
	for i, c := range p.Classes {
		names[i] = string(c)
	}
	header := []string{fmt.Sprintf("Proposed by tcpnorm diagnose: %s (peer %s).", strings.Join(names, ", "), p.Peer)}
	pf := &config.PolicyFile{}
	pol := &normalize.Policy{Direction: normalize.Both, Mode: normalize.Enforce}
	pf.Policy = pol
	base := strings.ReplaceAll(p.Peer, ":", "-")
	if a.opt.Domain != "" {
		base = a.opt.Domain
		pf.Domain = a.opt.Domain
		if first.Direction == Inbound {
			pf.SPF = true // the domain's sending hosts (inbound mail)
		} else {
			pf.MX = true // the domain's MX hosts (outbound mail)
		}
		header = append(header, "The capture showed the peer at "+p.Peer+".")
	} else {
		bits := 32
		if first.peer.Is6() {
			bits = 128
		}
		pf.CIDRs = []netip.Prefix{netip.PrefixFrom(first.peer, bits)}
	}
	p.File = base + ".toml"
	if a.twoDirections(p.Peer) {
		p.File = base + "-" + p.Direction.String() + ".toml"
		header = append(header, "One of two files for this peer: the other direction needs a different fix.")
	}
	if first.serverPort != 0 {
		pol.Ports = []uint16{first.serverPort}
	}
	pol.Direction = first.Direction.policy()
	pol.Expires = a.opt.Now.UTC().Add(90 * 24 * time.Hour).Truncate(24 * time.Hour)
	header = append(header, "A workaround, not a fix: it expires; escalate upstream.")
	pol.Reason = reasonFor(first)
	fix.apply(pol)
	p.Text = config.FormatPolicy(pf, header...)
	var ex []string
	for _, f := range fs {
		ex = append(ex, explain(f))
	}
	p.Explanation = strings.Join(ex, "\n\n")
}

// twoDirections reports whether peer has policies for both directions.
func (a *analyzer) twoDirections(peer string) bool {
	var in, out bool
	for _, p := range a.rep.Policies {
		if p.Peer == peer {
			in = in || p.Direction == Inbound
			out = out || p.Direction != Inbound
		}
	}
	return in && out
}

// apply sets the fix's options on p.
func (f Fix) apply(p *normalize.Policy) {
	p.WindowScale = f.WindowScale
	if f.WindowScaleMax != nil {
		p.WindowScaleMax = uint8(*f.WindowScaleMax)
	}
	p.Timestamps = f.Timestamps
	p.StripSACKOK = bool(f.SACKPermitted)
	p.MSSMax = uint16(f.MSSMax)
	p.StripUnknown = bool(f.Unknown)
}

// windowLimitFix is the fix for a window-limit box, by who sends the data.
// Clamping rewrites the windows the local host sends so that field << K is
// its real window: it helps when the local host receives. As the sender,
// the local host is bounded by what the box computes for the remote's
// windows, remote window >> (S - K), which no rewriting of its own windows
// raises; stripping scaling makes both ends' windows plain 16-bit values
// the box reads right (up to 64 KiB).
func windowLimitFix(rf *rawFinding, local int) Fix {
	if int(rf.sender) == local {
		return Fix{WindowScale: normalize.WSStrip, MSSMax: rf.mss}
	}
	k := rf.capLo
	return Fix{WindowScale: normalize.WSClamp, WindowScaleMax: &k, MSSMax: rf.mss}
}

func reasonFor(f *Finding) string {
	switch f.Class {
	case ClassWindowScale:
		return "window-scale mismatch on the path (diagnosed from a capture)"
	case ClassPAWS:
		return "timestamps rewritten on the path: PAWS discards valid segments"
	case ClassSYNOption:
		return "SYNs carrying " + maskString(f.raw.opts) + " are dropped on the path"
	case ClassPMTU:
		return "path-MTU black hole: large segments vanish, ICMP too-big filtered"
	case ClassSACK:
		return "SACK blocks broken by sequence rewriting on the path"
	case ClassWindowLimit:
		return fmt.Sprintf("a box on the path tracks windows with window-scale shift %d at most and drops data beyond them", f.raw.capHi)
	}
	return string(f.Class)
}
