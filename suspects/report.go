package suspects

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/textfmt"
)

// Caveat is said once in every report: why it names no fault and no policy.
const Caveat = "A log shows that message bodies stalled, not why: a window-scale fault, " +
	"a window-limit firewall, a timestamp scrambler and a path-MTU black hole all look alike here. " +
	"Run the command given for each suspect before choosing a policy."

// Direction says who sent the body that stalled.
type Direction uint8

const (
	Outbound Direction = iota // we sent it
	Inbound                   // a client sent it to us
)

func (d Direction) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// MarshalText makes a Direction a JSON string.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Report is the outcome of reading the logs.
type Report struct {
	Files    []string   `json:"files"`
	Counts   Counts     `json:"counts"`
	First    *time.Time `json:"first,omitempty"` // the oldest line read
	Last     *time.Time `json:"last,omitempty"`
	Since    *time.Time `json:"since,omitempty"` // lines before it were skipped
	Caveat   string     `json:"caveat"`
	Outbound []Suspect  `json:"outbound"`
	Inbound  []Suspect  `json:"inbound"`
}

// Suspect is a destination (outbound: a recipient domain, or an MX host
// when no recipient was logged) or a peer (inbound) whose bodies stalled.
type Suspect struct {
	Direction Direction `json:"direction"`
	Domain    string    `json:"domain,omitempty"` // outbound: the recipients' domain
	Peer      string    `json:"peer,omitempty"`   // inbound: the client's address, or its name if none was logged
	Names     []string  `json:"names,omitempty"`  // inbound: the names the client was logged with
	Hosts     []Host    `json:"hosts,omitempty"`  // outbound: the MX hosts tried
	Stalls    int       `json:"stalls"`
	// OK counts deliveries that worked to the domain (outbound), or
	// messages received from the peer (inbound).
	OK int `json:"ok"`
	// LargestOK is the largest message that passed, SmallestStalled the
	// smallest that stalled (inbound: the bytes received when the session
	// died, where the MTA logs them); -1 when unknown.
	LargestOK       int64 `json:"largest_ok"`
	SmallestStalled int64 `json:"smallest_stalled"`
	// SizeSplit: every stall was larger than every message that passed,
	// the tell-tale of a path that loses only large bodies.
	SizeSplit bool      `json:"size_split"`
	First     time.Time `json:"first,omitzero"`
	Last      time.Time `json:"last,omitzero"`
	Why       []Why     `json:"why"`
	Evidence  []string  `json:"evidence"`
	Next      []string  `json:"next"`
}

// Host is one MX host of an outbound suspect, with its own figures over
// every domain it serves.
type Host struct {
	Name            string `json:"name,omitempty"`
	Addr            string `json:"addr,omitempty"`
	Stalls          int    `json:"stalls"`
	OK              int    `json:"ok"`
	LargestOK       int64  `json:"largest_ok"`
	SmallestStalled int64  `json:"smallest_stalled"`
}

// Why is how often the MTA gave one reason.
type Why struct {
	Text  string `json:"text"`
	Count int    `json:"count"`
}

// Report finishes the reading: what still waited for a line (a recipient,
// a client's address) is counted as it is. Read no more lines after it.
func (a *Analyzer) Report() *Report {
	if !a.done {
		a.done = true
		ids := make([]string, 0, len(a.msgs))
		for id := range a.msgs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			a.flush(a.msgs[id])
		}
	}
	r := &Report{Files: a.files, Counts: a.counts, Caveat: Caveat, Outbound: []Suspect{}, Inbound: []Suspect{}}
	r.Counts.NotUnderstood = r.Counts.Lines - r.Counts.MailLines
	if !a.first.IsZero() {
		f, l := a.first, a.last
		r.First, r.Last = &f, &l
	}
	if !a.cutoff.IsZero() {
		c := a.cutoff
		r.Since = &c
	}

	covered := make(map[hostKey]bool)
	for domain, d := range a.domains {
		if d.Stalls == 0 {
			continue
		}
		s := suspect(Outbound, d)
		s.Domain = domain
		for hk := range d.Hosts {
			covered[hk] = true
			s.Hosts = append(s.Hosts, host(hk, a.hosts[hk]))
		}
		sortHosts(s.Hosts)
		s.Next = []string{"tcpnorm probe " + domain}
		r.Outbound = append(r.Outbound, s)
	}
	for hk, h := range a.hosts {
		if h.Stalls == 0 || covered[hk] {
			continue
		}
		// Stalls at an MX whose recipient was never logged.
		s := suspect(Outbound, h)
		s.Hosts = []Host{host(hk, h)}
		target := hk.name
		if hk.addr.IsValid() {
			target = hk.addr.String()
		}
		s.Next = []string{"tcpnorm probe " + target}
		r.Outbound = append(r.Outbound, s)
	}
	for addr, p := range a.peers {
		s := suspect(Inbound, p)
		s.Peer = addr.String()
		if ok := a.peerOK[addr]; ok != nil {
			s.OK, s.LargestOK = ok.n, ok.largest
			s.SizeSplit = sizeSplit(s.LargestOK, s.SmallestStalled)
		}
		s.Names = names(p.Names)
		s.Next = inboundNext(s.Peer, s.Names)
		r.Inbound = append(r.Inbound, s)
	}
	for name, p := range a.named {
		s := suspect(Inbound, p)
		s.Peer = name
		s.Names = names(p.Names)
		s.Next = inboundNext(name, []string{name})
		r.Inbound = append(r.Inbound, s)
	}
	rank(r.Outbound)
	rank(r.Inbound)
	return r
}

func suspect(d Direction, st *stats) Suspect {
	s := Suspect{
		Direction: d, Stalls: st.Stalls, OK: st.OK,
		LargestOK: st.LargestOK, SmallestStalled: st.SmallestBad,
		SizeSplit: sizeSplit(st.LargestOK, st.SmallestBad),
		First:     st.First, Last: st.Last,
	}
	for text, n := range st.Whys {
		s.Why = append(s.Why, Why{text, n})
	}
	sort.Slice(s.Why, func(i, j int) bool {
		if s.Why[i].Count != s.Why[j].Count {
			return s.Why[i].Count > s.Why[j].Count
		}
		return s.Why[i].Text < s.Why[j].Text
	})
	ev := append([]evidence(nil), st.Evidence...)
	sort.Slice(ev, func(i, j int) bool { return ev[i].seq < ev[j].seq })
	for _, e := range ev {
		s.Evidence = append(s.Evidence, e.text)
	}
	return s
}

func sizeSplit(largestOK, smallestBad int64) bool {
	return largestOK >= 0 && smallestBad > largestOK
}

func host(hk hostKey, h *stats) Host {
	out := Host{Name: hk.name, LargestOK: -1, SmallestStalled: -1}
	if hk.addr.IsValid() {
		out.Addr = hk.addr.String()
	}
	if h != nil {
		out.Stalls, out.OK, out.LargestOK, out.SmallestStalled = h.Stalls, h.OK, h.LargestOK, h.SmallestBad
	}
	return out
}

func sortHosts(hs []Host) {
	sort.Slice(hs, func(i, j int) bool {
		if hs[i].Stalls != hs[j].Stalls {
			return hs[i].Stalls > hs[j].Stalls
		}
		if hs[i].Name != hs[j].Name {
			return hs[i].Name < hs[j].Name
		}
		return hs[i].Addr < hs[j].Addr
	})
}

func names(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// rank puts the strongest evidence first: the size split (small mails
// pass, large ones stall), then the number of stalls, then deliveries
// that worked over the same path (the host is up; its path loses bodies).
func rank(ss []Suspect) {
	sort.Slice(ss, func(i, j int) bool {
		a, b := ss[i], ss[j]
		switch {
		case a.SizeSplit != b.SizeSplit:
			return a.SizeSplit
		case a.Stalls != b.Stalls:
			return a.Stalls > b.Stalls
		case a.OK != b.OK:
			return a.OK > b.OK
		}
		return a.key() < b.key()
	})
}

func (s *Suspect) key() string {
	switch {
	case s.Domain != "":
		return s.Domain
	case s.Peer != "":
		return s.Peer
	case len(s.Hosts) > 0:
		return s.Hosts[0].Name + s.Hosts[0].Addr
	}
	return ""
}

// inboundNext is the capture to take while the peer sends again, and the
// diagnose command for it.
func inboundNext(peer string, names []string) []string {
	file := "in-" + strings.NewReplacer(":", "_", "/", "_").Replace(peer) + ".pcap"
	next := []string{
		fmt.Sprintf("tcpdump -i any -s 0 -w %s 'host %s and tcp port 25'", file, peer),
		"tcpnorm diagnose " + file,
	}
	if _, err := netip.ParseAddr(peer); err != nil {
		return next
	}
	if len(names) > 0 {
		if d := parentDomain(names[0]); d != "" {
			next[1] = "tcpnorm diagnose --domain " + d + " " + file
		}
	}
	return next
}

// parentDomain guesses a client's mail domain from its host name
// (mail.example.net: example.net); "" when the name is too short to tell.
func parentDomain(name string) string {
	if strings.Count(name, ".") < 2 {
		return ""
	}
	return name[strings.IndexByte(name, '.')+1:]
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a person.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	c := r.Counts
	fmt.Fprintf(&b, "tcpnorm suspects: %d lines read, %d mail lines, %d not understood", c.Lines, c.MailLines, c.NotUnderstood)
	if len(c.ByMTA) > 0 {
		var parts []string
		for _, m := range []MTA{Postfix, Exim, Sendmail} {
			if n := c.ByMTA[m.String()]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", m, n))
			}
		}
		fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
	}
	b.WriteString("\n")
	if r.First != nil {
		fmt.Fprintf(&b, "  period      %s .. %s\n", stamp(*r.First), stamp(*r.Last))
	}
	if r.Since != nil {
		fmt.Fprintf(&b, "  since       %s: %d older mail lines skipped\n", stamp(*r.Since), c.BeforeSince)
	}
	if c.LongLines > 0 {
		fmt.Fprintf(&b, "  long lines  %d longer than %d bytes (not understood)\n", c.LongLines, MaxLine)
	}
	if c.Evicted > 0 || c.Untracked > 0 {
		fmt.Fprintf(&b, "  memory      %d messages' state dropped, %d hosts or peers not tracked (bounds reached)\n", c.Evicted, c.Untracked)
	}
	if c.MailLines == 0 {
		b.WriteString("\nNo Postfix, Exim or Sendmail lines: no suspects. Is this a mail log?\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	if len(r.Outbound) == 0 && len(r.Inbound) == 0 {
		b.WriteString("\nNo suspects: no message body stalled in these logs.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "\n%s", textfmt.Wrap("", "", Caveat, 78))
	if len(r.Outbound) == 0 {
		b.WriteString("\nOutbound: no suspects.\n")
	} else {
		b.WriteString("\nOutbound: deliveries whose body stalled, strongest evidence first.\n")
		for i, s := range r.Outbound {
			writeSuspect(&b, i+1, &s)
		}
	}
	if len(r.Inbound) == 0 {
		b.WriteString("\nInbound: no suspects.\n")
	} else {
		b.WriteString("\nInbound: clients whose sessions died while sending us a body, strongest evidence first.\n")
		for i, s := range r.Inbound {
			writeSuspect(&b, i+1, &s)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSuspect(b *strings.Builder, n int, s *Suspect) {
	b.WriteString("\n")
	ok := "delivered"
	if s.Direction == Inbound {
		ok = "received"
	}
	switch {
	case s.Domain != "":
		fmt.Fprintf(b, "%2d. %s: %d stalled, %d %s\n", n, s.Domain, s.Stalls, s.OK, ok)
	case s.Peer != "":
		name := ""
		if len(s.Names) > 0 && s.Names[0] != s.Peer {
			name = " (" + strings.Join(s.Names, ", ") + ")"
		}
		fmt.Fprintf(b, "%2d. %s%s: %s died in the body, %s %s\n", n, s.Peer, name, plural(s.Stalls, "session"), plural(s.OK, "message"), ok)
	default:
		fmt.Fprintf(b, "%2d. MX %s (no recipient logged): %d stalled, %d %s\n", n, hostText(s.Hosts[0]), s.Stalls, s.OK, ok)
	}
	stalled := "smallest stalled"
	if s.Direction == Inbound {
		stalled = "smallest stall"
	}
	sizes := fmt.Sprintf("largest %s %s, %s %s", ok, bytesText(s.LargestOK), stalled, bytesText(s.SmallestStalled))
	if s.SizeSplit {
		sizes += ": small messages pass, large ones stall"
	}
	fmt.Fprintf(b, "    sizes     %s\n", sizes)
	if !s.First.IsZero() {
		fmt.Fprintf(b, "    seen      %s .. %s\n", stamp(s.First), stamp(s.Last))
	}
	if s.Domain != "" {
		for _, h := range s.Hosts {
			fmt.Fprintf(b, "    MX        %s: %d stalled, %d delivered (all domains)\n", hostText(h), h.Stalls, h.OK)
		}
	}
	for _, w := range s.Why {
		fmt.Fprintf(b, "    why       %dx %s\n", w.Count, w.Text)
	}
	for _, e := range s.Evidence {
		fmt.Fprintf(b, "    log       %s\n", e)
	}
	for i, c := range s.Next {
		label := "next"
		if i > 0 {
			label = "then"
		}
		fmt.Fprintf(b, "    %-9s %s\n", label, c)
	}
}

func hostText(h Host) string {
	switch {
	case h.Name != "" && h.Addr != "":
		return h.Name + " [" + h.Addr + "]"
	case h.Addr != "":
		return "[" + h.Addr + "]"
	}
	return h.Name
}

func stamp(t time.Time) string { return t.Format(time.RFC3339) }

// bytesText writes a byte count for a person; "unknown" for -1.
func bytesText(n int64) string {
	if n < 0 {
		return "unknown"
	}
	return textfmt.Bytes(n)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
