//go:build linux

package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/diagnose"
	"github.com/tcpnorm/tcpnorm/internal/textfmt"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Result is the probe of one target: a domain's mail hosts or one address.
type Result struct {
	Target  string          `json:"target"`
	Domain  string          `json:"domain,omitempty"`
	MX      bool            `json:"mx,omitempty"` // the addresses came from MX records
	Addrs   []AddressResult `json:"addresses"`
	Verdict Verdict         `json:"verdict"`
	// Fix is the variant the policy applies: of the addresses with an
	// option fault, the most invasive fix any of them needs.
	Fix        *Variant       `json:"fix,omitempty"`
	Class      diagnose.Class `json:"class,omitempty"`
	PolicyFile string         `json:"policy_file,omitempty"`
	Policy     string         `json:"policy,omitempty"`
	Ticket     string         `json:"ticket,omitempty"`
	Notes      []string       `json:"notes,omitempty"` // DNS notes and failures
	// Capture is diagnose's reading of the probe's own capture (--pcap).
	Capture *CaptureCheck `json:"capture,omitempty"`
}

// CaptureCheck compares the probe's verdicts with what diagnose finds in
// the capture of the same connections: two readings of one event, one
// from the kernel's counters, one from the packets.
type CaptureCheck struct {
	File     string           `json:"file"`
	Recorded RecordStats      `json:"recorded"`
	Verdict  diagnose.Verdict `json:"diagnose_verdict"`
	// Agrees is false if diagnose contradicts the probe on any address
	// (addresses without an option verdict are not compared).
	Agrees bool     `json:"agrees"`
	Lines  []string `json:"lines"` // one per address
}

// CheckCapture sets r.Capture from diagnose's report on the capture file.
func (r *Result) CheckCapture(file string, st RecordStats, rep *diagnose.Report) {
	c := &CaptureCheck{File: file, Recorded: st, Verdict: rep.Verdict, Agrees: true}
	for _, a := range r.Addrs {
		var fixable, other []string
		for _, f := range rep.Findings {
			if findingPeer(f.Peer) != a.Addr {
				continue
			}
			if f.Fixable {
				fixable = append(fixable, string(f.Class))
			} else {
				other = append(other, string(f.Class))
			}
		}
		found := "no finding"
		if all := append(fixable, other...); len(all) > 0 {
			found = strings.Join(all, ", ")
		}
		also := ""
		if len(other) > 0 {
			also = "; diagnose also sees " + strings.Join(other, ", ")
		}
		var line string
		switch a.Verdict {
		case VerdictOptionFault:
			switch {
			case slices.Contains(fixable, string(a.Class)):
				line = "agrees: " + found
			case len(fixable) > 0:
				line = "disagrees: both find an option fault, the probe " + string(a.Class) + ", diagnose " + found
			default:
				line = "disagrees: the probe found an option fault (" + string(a.Class) + "), diagnose " + found
			}
		case VerdictHealthy:
			if len(fixable) == 0 {
				line = "agrees: no option fault" + also
			} else {
				line = "disagrees: the probe found the path healthy, diagnose an option fault (" + found + ")"
			}
		case VerdictNotFixable:
			if len(fixable) == 0 {
				line = "agrees: no option fault" + also
			} else {
				line = "disagrees: the probe found no option that helps, diagnose an option fault (" + found + ")"
			}
		default:
			line = "not compared (" + a.Verdict.String() + "); diagnose: " + found
		}
		c.Agrees = c.Agrees && !strings.HasPrefix(line, "disagrees")
		c.Lines = append(c.Lines, a.Addr.String()+": "+line)
	}
	r.Capture = c
}

// findingPeer is the address of a finding's peer ("addr" or "addr:port").
func findingPeer(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(s)
	return a.Unmap()
}

// Summarize sets the target's verdict, fix and policy from its addresses'.
// now dates the policy's expiry; port is the probed port.
func (r *Result) Summarize(now time.Time, port uint16, variants []Variant) {
	r.Verdict = VerdictHealthy
	if len(r.Addrs) == 0 {
		r.Verdict = VerdictUnreachable
	}
	fixIndex := -1
	for _, a := range r.Addrs {
		if severity[a.Verdict] > severity[r.Verdict] {
			r.Verdict = a.Verdict
		}
		if a.Fix != nil {
			for i, v := range variants {
				if v.Name == a.Fix.Name && i > fixIndex {
					fixIndex = i
					r.Class = a.Class
				}
			}
		}
	}
	if r.Verdict != VerdictOptionFault || fixIndex < 0 {
		return
	}
	fx := variants[fixIndex]
	r.Fix = &fx
	pol := fx.Policy
	pol.Name, pol.Mode, pol.Direction = "", normalize.Enforce, normalize.Outbound
	pol.Ports = []uint16{port}
	pol.Expires = now.UTC().Add(90 * 24 * time.Hour).Truncate(24 * time.Hour)
	var faulty []string
	for _, a := range r.Addrs {
		if a.Verdict == VerdictOptionFault {
			faulty = append(faulty, a.Addr.String())
		}
	}
	pol.Reason = fmt.Sprintf("tcpnorm probe: message bodies stall with the SYN as sent (%s); %s delivers them", r.Class, fx.Name)
	pf := &config.PolicyFile{Policy: &pol}
	base := r.Domain
	if r.Domain != "" {
		pf.Domain, pf.MX = r.Domain, r.MX
	} else {
		a := r.Addrs[0].Addr
		pf.CIDRs = []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}
		base = strings.ReplaceAll(a.String(), ":", "-")
	}
	r.PolicyFile = base + ".toml"
	r.Policy = config.FormatPolicy(pf,
		fmt.Sprintf("Proposed by tcpnorm probe on %s: %s (%s).", now.UTC().Format(time.RFC3339), r.Class, strings.Join(faulty, ", ")),
		"A workaround, not a fix: it expires; escalate upstream.")
	r.Ticket = r.ticket(now, port)
}

// ticket is the paragraph for the owner of the path.
func (r *Result) ticket(now time.Time, port uint16) string {
	var b strings.Builder
	fmt.Fprintf(&b, "On %s, test connections from this host to %s port %d were made with the TCP SYN as this host sends it and with single options changed. ",
		now.UTC().Format("2006-01-02 15:04 MST"), r.Target, port)
	for _, a := range r.Addrs {
		if a.Verdict != VerdictOptionFault {
			continue
		}
		fmt.Fprintf(&b, "To %s: %s. ", a.Addr, a.Why)
	}
	fmt.Fprintf(&b, "This points to a device on the path that mishandles %s (%s). ", optionWords(r.Class), r.Class)
	b.WriteString("Until it is fixed, the connections are sent with " + r.Fix.Name + " by tcpnorm, which costs throughput; please check the path's firewalls, load balancers and routers for TCP option handling.")
	return b.String()
}

func optionWords(c diagnose.Class) string {
	switch c {
	case diagnose.ClassWindowLimit:
		return "large scaled windows (it tracks a smaller window scale than negotiated)"
	case diagnose.ClassWindowScale:
		return "the window-scale option"
	case diagnose.ClassPAWS:
		return "TCP timestamps"
	case diagnose.ClassSACK:
		return "SACK"
	case diagnose.ClassPMTU:
		return "large packets (a path-MTU black hole: ICMP too-big not delivered)"
	case diagnose.ClassSYNOption:
		return "SYNs carrying some TCP options"
	}
	return "a TCP option"
}

// WriteText prints the result: per address the variants' figures and the
// verdict, then the policy and the ticket paragraph.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tcpnorm probe %s", r.Target)
	if r.Domain != "" {
		src := "A/AAAA (no MX)"
		if r.MX {
			src = "MX hosts"
		}
		fmt.Fprintf(&b, ": %d addresses (%s)", len(r.Addrs), src)
	}
	b.WriteString("\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	for _, a := range r.Addrs {
		fmt.Fprintf(&b, "\n%s: %s", a.Addr, a.Verdict)
		if a.Class != "" {
			fmt.Fprintf(&b, " (%s)", a.Class)
		}
		fmt.Fprintf(&b, "\n  %s\n", a.Why)
		if len(a.Variants) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  variant\ttrial\toutcome\tbody\tacked\tretrans\tshifts\tts\tsack\tmss\trtt\trwnd-limited\ttime\t")
		for _, v := range a.Variants {
			for i, t := range v.Trials {
				fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n",
					v.Variant.Name, i+1, t.Outcome, body(t), acked(t), t.Retrans, shifts(t), yesNo(t.Timestamps), yesNo(t.SACK), t.SndMSS,
					t.RTT.Round(10*time.Microsecond), t.RwndLimited.Round(time.Millisecond), t.Duration.Round(10*time.Millisecond))
			}
		}
		tw.Flush()
		for _, v := range a.Variants {
			for i, t := range v.Trials {
				if t.Detail != "" && t.Outcome != Completed {
					fmt.Fprintf(&b, "  %s %d: %s\n", v.Variant.Name, i+1, t.Detail)
				}
			}
		}
	}
	fmt.Fprintf(&b, "\nverdict: %s", r.Verdict)
	if r.Fix != nil {
		fmt.Fprintf(&b, " (%s): %s fixes it", r.Class, r.Fix.Name)
	}
	b.WriteString("\n")
	if c := r.Capture; c != nil {
		fmt.Fprintf(&b, "\ncapture %s: %d packets", c.File, c.Recorded.Packets)
		if c.Recorded.Dropped > 0 {
			fmt.Fprintf(&b, " (%d more lost by the packet socket)", c.Recorded.Dropped)
		}
		fmt.Fprintf(&b, "; tcpnorm diagnose on it: %s\n", c.Verdict)
		for _, l := range c.Lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
		if !c.Agrees {
			b.WriteString("  The probe and diagnose disagree: read the capture before acting on either.\n")
		}
	}
	if r.Policy != "" {
		fmt.Fprintf(&b, "\npolicy file %s:\n\n%s\nfor the upstream ticket:\n\n%s", r.PolicyFile, r.Policy, textfmt.Wrap("", "", r.Ticket, 78))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// acked is what the peer's TCP acknowledged (at the stall, for a stalled
// trial): the dialogue and the body.
func acked(t Trial) string {
	n := t.BytesAcked
	if t.Outcome == Stalled && t.AckedAtStall != 0 {
		n = t.AckedAtStall
	}
	return textfmt.Bytes(int64(n))
}

func body(t Trial) string {
	if t.BodyBytes == 0 {
		return "-"
	}
	return textfmt.Bytes(t.BodyBytes)
}

func shifts(t Trial) string {
	if !t.WindowScaling {
		return "-"
	}
	return fmt.Sprintf("%d/%d", t.RcvWscale, t.SndWscale)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// WriteJSON prints the result as JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
