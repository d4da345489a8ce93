//go:build linux

package probe

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tcpnorm/tcpnorm/diagnose"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Verdict is what the probe concludes about one address or domain.
type Verdict uint8

const (
	// VerdictHealthy: every trial of the SYN as sent delivered the whole body.
	VerdictHealthy Verdict = iota
	// VerdictOptionFault: the SYN as sent fails every trial and a variant
	// succeeds in every trial: that option is the fault, the least
	// invasive such variant the fix.
	VerdictOptionFault
	// VerdictNotFixable: the SYN as sent fails and so does every variant: a
	// fault no option policy works around.
	VerdictNotFixable
	// VerdictTransient: the trials of the SYN as sent disagree (one lost packet,
	// one lucky run): no verdict on options either way.
	VerdictTransient
	// VerdictUnreachable: no variant got a connection (no SYN-ACK, no route).
	VerdictUnreachable
	// VerdictRefused: the port refused the connection.
	VerdictRefused
	// VerdictInconclusive: the SMTP session never reached the body (refused
	// recipient, 554 banner): the path was not tested.
	VerdictInconclusive
	// VerdictSkipped: probed less than 10 minutes ago; not probed again.
	VerdictSkipped
	numVerdicts
)

var verdictNames = [numVerdicts]string{"healthy", "option-fault", "not-fixable", "transient", "unreachable", "refused", "inconclusive", "skipped"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", v)
}

func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// Worse reports whether a needs more attention than b: a domain's verdict
// is its worst address's.
func Worse(a, b Verdict) bool { return severity[a] > severity[b] }

// severity orders verdicts, the one that needs attention most last.
var severity = [numVerdicts]int{VerdictHealthy: 0, VerdictSkipped: 1, VerdictTransient: 2, VerdictInconclusive: 3, VerdictRefused: 4, VerdictUnreachable: 5, VerdictNotFixable: 6, VerdictOptionFault: 7}

// AddressResult is the probe of one address.
type AddressResult struct {
	Addr     netip.Addr      `json:"address"`
	Variants []VariantResult `json:"variants"`
	Verdict  Verdict         `json:"verdict"`
	// Fix is the least invasive variant that works where the SYN as sent
	// fails (VerdictOptionFault only); Working lists every such variant.
	Fix     *Variant `json:"fix,omitempty"`
	Working []string `json:"working,omitempty"`
	// Class is the fault Fix points to; syn-option-black-hole when the
	// SYN as sent got no answer at all.
	Class diagnose.Class `json:"class,omitempty"`
	Why   string         `json:"why"`
}

// maxShift is the largest window-scale shift (RFC 7323 section 2.3).
const maxShift = 14

// peerShift is the peer's window-scale shift its SYN-ACKs showed in v's
// trials (-1: none with window scaling).
func peerShift(v VariantResult) int {
	for _, t := range v.Trials {
		if t.WindowScaling {
			return int(t.SndWscale)
		}
	}
	return -1
}

// allFailed reports whether every trial of v failed.
func (v VariantResult) allFailed() bool {
	for _, t := range v.Trials {
		if !failed(t.Outcome) {
			return false
		}
	}
	return len(v.Trials) > 0
}

// failed: the trial reached the peer's port (or tried to) and the body did
// not get through, or only with heavy loss, or the SYN was never answered.
func failed(o Outcome) bool { return o == Stalled || o == Degraded || o == Unreachable }

// judge sets the verdict from the trials, PATHspider's rule: a variant
// counts only if its trials agree.
func (r *AddressResult) judge() {
	if len(r.Variants) == 0 {
		r.Verdict, r.Why = VerdictTransient, "no trial ran (cancelled)"
		return
	}
	asSent := r.Variants[0]
	o, agreed := asSent.Agreed()
	if !agreed && asSent.allFailed() {
		// Stalled in one trial, degraded in another: failures alike.
		o, agreed = asSent.Trials[0].Outcome, true
	}
	switch {
	case !agreed:
		r.Verdict, r.Why = VerdictTransient, "the trials of the SYN as sent disagree ("+outcomes(asSent)+"): run the probe again later"
		return
	case o == Completed:
		r.Verdict, r.Why = VerdictHealthy, "every trial of the SYN as sent delivered the whole body"
		return
	case o == Refused:
		r.Verdict, r.Why = VerdictRefused, "the port refused the connection: nothing tested"
		return
	case o == Inconclusive:
		r.Verdict, r.Why = VerdictInconclusive, "the session never reached the body ("+asSent.Trials[0].Detail+"): the path was not tested"
		return
	case o == Failed:
		r.Verdict, r.Why = VerdictTransient, "the probe failed locally: "+asSent.Trials[0].Detail
		return
	}
	// The SYN as sent stalled or was never answered, in every trial.
	anyConnected := false
	fixRank := -1
	for _, v := range r.Variants[1:] {
		vo, ok := v.Agreed()
		for _, t := range v.Trials {
			anyConnected = anyConnected || t.Outcome != Unreachable
		}
		if ok && vo == Completed {
			r.Working = append(r.Working, v.Variant.Name)
			if r.Fix == nil || v.rank < fixRank {
				fx := v.Variant
				r.Fix, fixRank = &fx, v.rank
			}
		}
	}
	switch {
	case r.Fix != nil:
		r.Verdict, r.Class = VerdictOptionFault, r.Fix.Class
		switch {
		case o == Unreachable:
			r.Class = diagnose.ClassSYNOption
		case r.Fix.Policy.WindowScale != normalize.WSKeep && peerShift(asSent) == maxShift:
			// A shift of 14 needs a 1 GiB window: no mail server offers
			// one, a box rewriting the option does.
			r.Class = diagnose.ClassWindowScale
		}
		r.Why = fmt.Sprintf("the SYN as sent %s in every trial; %s delivered the body in every trial", outcomeVerb(o), strings.Join(r.Working, ", "))
	case o == Unreachable && !anyConnected:
		r.Verdict, r.Why = VerdictUnreachable, "no SYN was answered, whatever its options: nothing tested"
	default:
		r.Verdict, r.Why = VerdictNotFixable, fmt.Sprintf("the SYN as sent %s in every trial, and no variant delivered the body in every trial: no option policy helps", outcomeVerb(o))
	}
}

func outcomeVerb(o Outcome) string {
	switch o {
	case Unreachable:
		return "was never answered"
	case Degraded:
		return "lost many of its segments"
	}
	return "stalled"
}

func outcomes(v VariantResult) string {
	var s []string
	for _, t := range v.Trials {
		s = append(s, t.Outcome.String())
	}
	return strings.Join(s, ", ")
}

// MarshalJSON gives the variant by name and what it changes.
func (v Variant) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name  string         `json:"name"`
		Class diagnose.Class `json:"class,omitempty"`
	}{v.Name, v.Class})
}
