//go:build linux

package rules

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Modes of [rules] mode.
const (
	ModeGateway = "gateway" // hook FORWARD: tcpnorm on a router in front of the hosts
	ModeHost    = "host"    // hook OUTPUT and INPUT: tcpnorm on the host itself
)

// Spec is what the rules are built from: [queue] and [rules] of the config.
type Spec struct {
	Mode  string // ModeGateway or ModeHost
	First uint16 // first queue number
	Count int    // queues First .. First+Count-1
	// Mark is the mark/connmark mask tcpnorm may use. The stateful rules of
	// clamp and repair (see stateful) match and save bits in it; 0 (or a
	// mask normalize.NewMarkBits refuses) leaves them out.
	Mark uint32
}

// Stateful reports whether the stateful queues and rules of clamp and
// repair are on: Mark is a mask normalize.NewMarkBits accepts (config
// refuses the others). The daemon binds those queues, and Build writes
// their rules, on this one answer.
func (s Spec) Stateful() bool {
	_, err := normalize.NewMarkBits(s.Mark)
	return err == nil
}

// StatefulFirst is the first queue of the stateful range: the later
// segments of clamped and repaired flows go to queues
// StatefulFirst .. StatefulFirst+Count-1, right after the handshake range.
func (s Spec) StatefulFirst() uint16 { return s.First + uint16(s.Count) }

// Family is an address family, each with its own rule tools.
type Family uint8

const (
	IPv4 Family = iota
	IPv6
)

// Families lists both families in the order rules are installed.
var Families = []Family{IPv4, IPv6}

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// Tool is the command that edits single rules of the family.
func (f Family) Tool() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// RestoreTool applies a whole script of the family atomically.
func (f Family) RestoreTool() string { return f.Tool() + "-restore" }

// SaveTool prints the family's rules.
func (f Family) SaveTool() string { return f.Tool() + "-save" }

// Jump is the rule in a built-in chain that sends packets to one of
// tcpnorm's chains. It is the only rule tcpnorm puts outside its own chains.
type Jump struct {
	Table string // e.g. "mangle"
	From  string // built-in chain, e.g. "FORWARD"
	To    string // tcpnorm's chain, e.g. "TCPNORM-FWD"
}

// Rule is the jump's text without the leading -A/-I/-D and chain.
func (j Jump) Rule() string { return "-j " + j.To }

// Table is tcpnorm's part of one iptables table.
type Table struct {
	Name   string
	Chains []string // tcpnorm's own chains, declared (and so flushed) on restore
	Rules  []string // complete "-A CHAIN ..." lines for those chains
	Jumps  []Jump
}

// Ruleset is every rule tcpnorm installs for a Spec.
type Ruleset struct {
	Spec   Spec
	Tables []Table
}

// Known lists every jump tcpnorm has ever installed in any mode, so that
// Remove cleans up after a crashed run even if the mode has changed since.
var Known = []Jump{
	{Table: "mangle", From: "FORWARD", To: "TCPNORM-FWD"},
	{Table: "mangle", From: "OUTPUT", To: "TCPNORM-OUT"},
	{Table: "mangle", From: "INPUT", To: "TCPNORM-IN"},
	{Table: "filter", From: "FORWARD", To: chainSave},
	{Table: "filter", From: "OUTPUT", To: chainSave},
	{Table: "filter", From: "INPUT", To: chainSave},
}

// Chains of tcpnorm's that no built-in chain jumps to.
const (
	chainFlow = "TCPNORM-FLOW" // mangle: restore the connmark, queue later segments
	chainSave = "TCPNORM-SAVE" // filter: save the handshake verdict's mark
)

// innerChains lists, per table, tcpnorm's chains reached only from its own.
var innerChains = map[string][]string{"mangle": {chainFlow}}

// owner is one set of chains and jumps with its own life: the daemon's, or
// a probe's (probe.go). Removing one never touches the other's.
type owner struct {
	known []Jump              // every jump it has ever installed
	inner map[string][]string // per table, chains reached only from its own
	flow  string              // mangle: restore the connmark, queue later segments
	save  string              // filter: save the handshake verdict's mark
}

var daemon = owner{known: Known, inner: innerChains, flow: chainFlow, save: chainSave}

// Build returns the rules for s or an error if s is invalid.
func Build(s Spec) (*Ruleset, error) {
	if s.Count < 1 {
		return nil, fmt.Errorf("rules: queue count %d: must be at least 1", s.Count)
	}
	if int(s.First)+2*s.Count-1 > 65535 {
		return nil, fmt.Errorf("rules: queues %d..%d (handshakes, then later segments of stateful flows): queue numbers end at 65535",
			s.First, int(s.First)+2*s.Count-1)
	}
	var jumps []Jump
	switch s.Mode {
	case ModeGateway:
		jumps = []Jump{Known[0]}
	case ModeHost:
		jumps = []Jump{Known[1], Known[2]}
	default:
		return nil, fmt.Errorf("rules: mode %q: want %q or %q", s.Mode, ModeGateway, ModeHost)
	}
	mangle := Table{Name: "mangle", Jumps: jumps}
	for _, j := range jumps {
		mangle.Chains = append(mangle.Chains, j.To)
		// A probe's connections are the probe's alone (probe.go).
		if skip, ok := probeSkip[j.To]; ok {
			mangle.Rules = append(mangle.Rules, "-A "+j.To+" "+skip+" -j RETURN")
		}
		for _, dir := range remoteMatch[j.To] {
			mangle.Rules = append(mangle.Rules, handshakeRule(j.To, dir, s))
		}
	}
	rs := &Ruleset{Spec: s, Tables: []Table{mangle}}
	if s.Stateful() {
		mb, _ := normalize.NewMarkBits(s.Mark)
		stateful(rs, mb, daemon, "")
	}
	return rs, nil
}

// remoteMatch says, per handshake chain, where the remote address is: a
// gateway forwards both ways, so the remote is the source or the
// destination; on a host it is the destination of what leaves and the
// source of what arrives.
var remoteMatch = map[string][]string{
	"TCPNORM-FWD": {"src", "dst"},
	"TCPNORM-OUT": {"dst"},
	"TCPNORM-IN":  {"src"},
}

// handshakeRule queues the segments with SYN set (SYN and SYN-ACK) whose
// address on side dir ("src" or "dst") is in the family's address set:
// every address a policy names, so a connection to any other peer never
// leaves the kernel. The balance hash covers addresses only, so both
// directions of a connection reach the same worker; no cpu fanout, which
// would split them.
func handshakeRule(chain, dir string, s Spec) string {
	return "-A " + chain + " -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set " + setToken + " " + dir +
		" -j NFQUEUE " + queueTarget(s.First, s.Count) + " --queue-bypass"
}

func queueTarget(first uint16, count int) string {
	if count == 1 {
		return "--queue-num " + strconv.Itoa(int(first))
	}
	return "--queue-balance " + strconv.Itoa(int(first)) + ":" + strconv.Itoa(int(first)+count-1)
}

// stateful adds the rules for flows whose later segments tcpnorm rewrites
// (window_scale = "clamp", timestamps = "repair"):
//
//   - filter (runs after mangle): a handshake segment whose verdict set
//     tcpnorm's fields in the mark has them saved to the connmark;
//   - mangle: later segments of connections with fields in the connmark get
//     them restored to the mark, plus the ORIGINAL-direction bit, and only
//     the direction that needs rewriting is queued, on the second queue
//     range, whose queues the daemon binds with fail-open off. While no
//     daemon is bound, a clamped flow's segments bypass the queue (slower,
//     never wrong); a repaired flow's wait for the daemon to come back,
//     since a scrambled TSval that bypassed tcpnorm would poison the local
//     host's PAWS state (see normalize.Selector.Bypass).
//
// The fields live in the connmark, so clamping survives a restart.
//
// own names the chains; saveMatch, if not "", narrows the save rule to the
// owner's packets.
func stateful(rs *Ruleset, mb normalize.MarkBits, own owner, saveMatch string) {
	s := rs.Spec
	saved, orig := hex(mb.Saved()), hex(mb.Original())
	mangle := &rs.Tables[0]
	for _, j := range mangle.Jumps {
		mangle.Rules = append(mangle.Rules, "-A "+j.To+" -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/"+saved+" -j "+own.flow)
	}
	mangle.Chains = append(mangle.Chains, own.flow)
	mangle.Rules = append(mangle.Rules,
		"-A "+own.flow+" -j CONNMARK --restore-mark --nfmask "+saved+" --ctmask "+saved,
		"-A "+own.flow+" -m conntrack --ctdir ORIGINAL -j MARK --set-xmark "+orig+"/"+orig)
	for _, sel := range mb.Selectors() {
		bypass := ""
		if sel.Bypass {
			bypass = " --queue-bypass"
		}
		mangle.Rules = append(mangle.Rules, "-A "+own.flow+" -m mark --mark "+hex(sel.Value)+"/"+hex(sel.Mask)+
			" -m mark ! --mark 0x0/"+hex(sel.NonZero)+" -j NFQUEUE "+queueTarget(s.StatefulFirst(), s.Count)+bypass)
	}
	if saveMatch != "" {
		saveMatch = " " + saveMatch
	}
	filter := Table{Name: "filter", Chains: []string{own.save},
		Rules: []string{"-A " + own.save + " -p tcp -m tcp --tcp-flags SYN SYN" + saveMatch + " -m mark ! --mark 0x0/" + saved +
			" -j CONNMARK --save-mark --nfmask " + saved + " --ctmask " + saved}}
	for _, j := range mangle.Jumps {
		filter.Jumps = append(filter.Jumps, Jump{Table: "filter", From: j.From, To: own.save})
	}
	rs.Tables = append(rs.Tables, filter)
}

func hex(v uint32) string { return "0x" + strconv.FormatUint(uint64(v), 16) }

// Script is the input for `RestoreTool --noflush` of family f. Declaring a
// chain in a --noflush restore flushes it, so a stale chain is replaced.
func (rs *Ruleset) Script(f Family) string {
	var b strings.Builder
	for _, t := range rs.Tables {
		b.WriteString("*" + t.Name + "\n")
		for _, c := range t.Chains {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		rs.writeRules(&b, f, t)
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// writeRules writes t's rules, for family f, and its jumps.
func (rs *Ruleset) writeRules(b *strings.Builder, f Family, t Table) {
	for _, r := range t.Rules {
		b.WriteString(strings.ReplaceAll(r, setToken, rs.Spec.SetName(f)) + "\n")
	}
	for _, j := range t.Jumps {
		// First in the built-in chain: an operator's earlier ACCEPT in
		// mangle must not hide handshakes from tcpnorm.
		b.WriteString("-I " + j.From + " 1 " + j.Rule() + "\n")
	}
}

// String prints what Install applies, in order, with the command that
// applies each part: the address sets, then each family's rules.
func (rs *Ruleset) String() string {
	var b strings.Builder
	b.WriteString("# " + SetTool + " restore\n")
	b.WriteString(rs.Spec.SetsScript())
	for _, f := range Families {
		b.WriteString("# " + f.RestoreTool() + " --noflush\n")
		b.WriteString(rs.Script(f))
	}
	return b.String()
}

// knownChains lists every chain of the owner's in table that Remove deletes.
func (own owner) knownChains(table string) []string {
	var cs []string
	add := func(c string) {
		for _, x := range cs {
			if x == c {
				return
			}
		}
		cs = append(cs, c)
	}
	for _, j := range own.known {
		if j.Table == table {
			add(j.To)
		}
	}
	for _, c := range own.inner[table] {
		add(c)
	}
	return cs
}

func (own owner) knownTables() []string {
	var ts []string
	for _, j := range own.known {
		found := false
		for _, t := range ts {
			found = found || t == j.Table
		}
		if !found {
			ts = append(ts, j.Table)
		}
	}
	return ts
}
