package rules

import (
	"fmt"
	"strconv"
	"strings"
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
	// clamp and repair (see stateful) will match and save these bits.
	Mark uint32
}

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
}

// Build returns the rules for s or an error if s is invalid.
func Build(s Spec) (*Ruleset, error) {
	if s.Count < 1 {
		return nil, fmt.Errorf("rules: queue count %d: must be at least 1", s.Count)
	}
	if int(s.First)+s.Count-1 > 65535 {
		return nil, fmt.Errorf("rules: queues %d..%d: queue numbers end at 65535", s.First, int(s.First)+s.Count-1)
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
		mangle.Rules = append(mangle.Rules, handshakeRule(j.To, s))
	}
	rs := &Ruleset{Spec: s, Tables: []Table{mangle}}
	rs.Tables = append(rs.Tables, stateful(s)...)
	return rs, nil
}

// handshakeRule queues every segment with SYN set: SYN and SYN-ACK. The
// balance hash covers addresses only, so both directions of a connection
// reach the same worker; no cpu fanout, which would split them.
func handshakeRule(chain string, s Spec) string {
	return "-A " + chain + " -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE " + queueTarget(s.First, s.Count) + " --queue-bypass"
}

func queueTarget(first uint16, count int) string {
	if count == 1 {
		return "--queue-num " + strconv.Itoa(int(first))
	}
	return "--queue-balance " + strconv.Itoa(int(first)) + ":" + strconv.Itoa(int(first)+count-1)
}

// stateful returns the rules for flows whose later segments tcpnorm rewrites
// (window_scale = "clamp", timestamps = "repair"). None yet. They will be:
//
//   - filter (runs after mangle), FORWARD or OUTPUT+INPUT: for packets whose
//     mark has bits in s.Mark, CONNMARK --save-mark --nfmask M --ctmask M, so
//     the handshake verdict's bits reach the connmark;
//   - mangle, before the handshake rule: CONNMARK --restore-mark --nfmask M
//     --ctmask M for connections whose connmark has bits in M, then
//     -m conntrack --ctdir (the direction that needs rewriting) -j NFQUEUE on
//     a second queue range, without --queue-bypass and with fail-open off on
//     those queues, since a repaired segment that bypasses tcpnorm poisons
//     the local PAWS state.
//
// They get chains of their own (added to Known) so Remove finds them.
func stateful(s Spec) []Table { return nil }

// Script is the input for `RestoreTool --noflush` of family f. Declaring a
// chain in a --noflush restore flushes it, so a stale chain is replaced.
func (rs *Ruleset) Script(f Family) string {
	var b strings.Builder
	for _, t := range rs.Tables {
		b.WriteString("*" + t.Name + "\n")
		for _, c := range t.Chains {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, r := range t.Rules {
			b.WriteString(r + "\n")
		}
		for _, j := range t.Jumps {
			// First in the built-in chain: an operator's earlier ACCEPT in
			// mangle must not hide handshakes from tcpnorm.
			b.WriteString("-I " + j.From + " 1 " + j.Rule() + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String()
}

// String prints what Install applies, family by family, with the command
// that applies each part.
func (rs *Ruleset) String() string {
	var b strings.Builder
	for _, f := range Families {
		b.WriteString("# " + f.RestoreTool() + " --noflush\n")
		b.WriteString(rs.Script(f))
	}
	return b.String()
}

// knownChains lists every chain of tcpnorm's in table that Remove deletes.
func knownChains(table string) []string {
	var cs []string
	for _, j := range Known {
		if j.Table == table {
			cs = append(cs, j.To)
		}
	}
	return cs
}

func knownTables() []string {
	var ts []string
	for _, j := range Known {
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
