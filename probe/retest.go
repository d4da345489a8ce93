//go:build linux

package probe

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Retest is the re-test of a policy's path, one address: the SYN as sent,
// and the policy's own options as the control.
type Retest struct {
	Addr    netip.Addr    `json:"address"`
	AsSent  VariantResult `json:"as_sent"`
	Control VariantResult `json:"control"`
	Need    config.Need   `json:"need"`
	Why     string        `json:"why"`
}

// Retest probes addr as sent and with pol's options, every trial of each:
// the policy is no longer needed when the SYN as sent delivers the body in
// every trial; still needed when it fails in every trial and the policy's
// options deliver in every trial. Anything else (disagreeing trials, both
// failing, an unreachable or refusing peer) says nothing either way.
func (p *Prober) Retest(ctx context.Context, addr netip.Addr, pol *normalize.Policy) Retest {
	if p.rec != nil {
		if err := p.rec.Watch(addr); err != nil {
			p.opt.Log.Warn("probe: the capture misses this address", "addr", addr, "err", err)
		}
	}
	ctl := *pol
	ctl.Name, ctl.Mode, ctl.Direction, ctl.Ports, ctl.Evidence = "policy", normalize.Enforce, normalize.Outbound, nil, false
	r := Retest{Addr: addr}
	r.AsSent = p.variant(ctx, addr, Variants()[0], false)
	r.Control = p.variant(ctx, addr, Variant{Name: "policy", Policy: ctl}, false)
	as, asAgreed := r.AsSent.Agreed()
	ctlOut, ctlAgreed := r.Control.Agreed()
	switch {
	case ctx.Err() != nil:
		r.Why = "cancelled"
	case asAgreed && as == Completed:
		r.Need, r.Why = config.NeedNo, "the SYN as sent delivered the body in every trial"
	case r.AsSent.allFailed() && ctlAgreed && ctlOut == Completed:
		r.Need, r.Why = config.NeedStill, fmt.Sprintf("the SYN as sent %s in every trial, the policy's options delivered", outcomeVerb(r.AsSent.Trials[0].Outcome))
	case r.AsSent.allFailed() && r.Control.allFailed():
		r.Why = "the SYN as sent and the policy's options both failed: the path has another fault"
	default:
		r.Why = fmt.Sprintf("no agreement: as sent %s; the policy's options %s", outcomes(r.AsSent), outcomes(r.Control))
	}
	return r
}

// PolicyNeed combines the re-tests of a policy's addresses: still needed if
// any address still needs it, no longer needed if none does and every one
// works as sent.
func PolicyNeed(rs []Retest) (config.Need, string) {
	if len(rs) == 0 {
		return config.NeedUnknown, "no address to probe"
	}
	var parts []string
	still, no := 0, 0
	for _, r := range rs {
		parts = append(parts, r.Addr.String()+" "+r.Need.String()+" ("+r.Why+")")
		switch r.Need {
		case config.NeedStill:
			still++
		case config.NeedNo:
			no++
		}
	}
	detail := strings.Join(parts, "; ")
	switch {
	case still > 0:
		return config.NeedStill, detail
	case no == len(rs):
		return config.NeedNo, detail
	}
	return config.NeedUnknown, detail
}
