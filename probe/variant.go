//go:build linux

package probe

import (
	"net/netip"
	"strconv"
	"sync/atomic"

	"github.com/tcpnorm/tcpnorm/diagnose"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Variant is one way the probe's SYN is sent: a policy its own normalizer
// applies to the SYN (and, as in the daemon, to the SYN-ACK and the later
// segments that follow from it).
type Variant struct {
	Name string
	// Class is the fault a variant that works where the SYN as sent
	// does not points to.
	Class  diagnose.Class
	Policy normalize.Policy
}

// Clamps are the window_scale_max values tried: enough to tell apart the
// window-limit firewalls seen in practice (which track shifts up to some K)
// and keep as much window as the path allows.
var Clamps = []uint8{6, 4, 2, 0}

// MSSClamp is the MSS the path-MTU variant advertises: segments fit a
// 1280-byte path (IPv6's minimum MTU) with room for a tunnel.
const MSSClamp = 1200

// Variants are the variants tried, least invasive first: the order in
// which a working variant is proposed as the fix.
func Variants() []Variant {
	pol := func(f func(*normalize.Policy)) normalize.Policy {
		p := normalize.Policy{Name: "probe", Mode: normalize.Enforce, Direction: normalize.Outbound}
		if f != nil {
			f(&p)
		}
		return p
	}
	vs := []Variant{{Name: "as-sent", Policy: pol(nil)}}
	for _, k := range Clamps {
		vs = append(vs, Variant{Name: "wscale-clamp-" + strconv.Itoa(int(k)), Class: diagnose.ClassWindowLimit, Policy: pol(func(p *normalize.Policy) {
			p.WindowScale, p.WindowScaleMax = normalize.WSClamp, k
		})})
	}
	vs = append(vs,
		Variant{Name: "mss-" + strconv.Itoa(MSSClamp), Class: diagnose.ClassPMTU, Policy: pol(func(p *normalize.Policy) { p.MSSMax = MSSClamp })},
		Variant{Name: "sack-strip", Class: diagnose.ClassSACK, Policy: pol(func(p *normalize.Policy) { p.StripSACKOK = true })},
		Variant{Name: "ts-strip", Class: diagnose.ClassPAWS, Policy: pol(func(p *normalize.Policy) { p.Timestamps = normalize.TSStrip })},
		Variant{Name: "wscale-strip", Class: diagnose.ClassWindowScale, Policy: pol(func(p *normalize.Policy) { p.WindowScale = normalize.WSStrip })},
		Variant{Name: "wscale-ts-strip", Class: diagnose.ClassWindowScale, Policy: pol(func(p *normalize.Policy) {
			p.WindowScale, p.Timestamps = normalize.WSStrip, normalize.TSStrip
		})},
		// The barest SYN: tried first when the SYN as sent is never
		// answered, to tell a SYN-option black hole from a dead address
		// at the cost of one trial.
		Variant{Name: SYNMinimal, Class: diagnose.ClassSYNOption, Policy: pol(func(p *normalize.Policy) {
			p.WindowScale, p.Timestamps, p.StripSACKOK = normalize.WSStrip, normalize.TSStrip, true
		})},
	)
	return vs
}

// SYNMinimal is the variant without window scale, timestamps and
// SACK-permitted.
const SYNMinimal = "syn-minimal"

// table is the probe's policy table: every outbound handshake it sees (its
// own sockets' only) gets the variant of the trial in progress.
type table struct {
	p atomic.Pointer[normalize.Policy]
}

func (t *table) Lookup(_ netip.Addr, _ uint16, dir normalize.Direction) *normalize.Policy {
	if dir != normalize.Outbound {
		return nil
	}
	return t.p.Load()
}
