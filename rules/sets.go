//go:build linux

package rules

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// SetTool is the command that edits the kernel's address sets (ipset).
const SetTool = "ipset"

// SetMaxElem bounds each address set. Every set is created with the same
// parameters, so `create -exist` accepts a set an earlier run left behind
// and a swap always finds a compatible partner; the hash grows on demand,
// so the bound costs nothing until it is used.
const SetMaxElem = 1 << 20

// setToken stands for the family's set name in a rule until Script writes
// the rule for one family.
const setToken = "{set}"

// SetName is the address set of family f that the handshake rules match
// remote addresses against: tcpnorm4-qFIRST and tcpnorm6-qFIRST. The first
// queue number is in the name because it is unique to a daemon (two daemons
// cannot bind one queue), so daemons with different queue ranges in one
// network namespace keep apart sets.
func (s Spec) SetName(f Family) string {
	n := "4"
	if f == IPv6 {
		n = "6"
	}
	return "tcpnorm" + n + "-q" + strconv.Itoa(int(s.First))
}

// setTemp is the set an update fills before swapping it with the live one.
func (s Spec) setTemp(f Family) string { return s.SetName(f) + "-new" }

func (f Family) setFamily() string {
	if f == IPv6 {
		return "inet6"
	}
	return "inet"
}

func createLine(name string, f Family) string {
	return "create " + name + " hash:net family " + f.setFamily() + " maxelem " + strconv.Itoa(SetMaxElem) + " -exist\n"
}

// SetsScript is the `ipset restore` input that creates both families'
// sets, empty, if they do not exist yet.
func (s Spec) SetsScript() string {
	var b strings.Builder
	for _, f := range Families {
		b.WriteString(createLine(s.SetName(f), f))
	}
	return b.String()
}

// UpdateScript is the `ipset restore` input that makes both sets hold
// exactly prefixes: each family's new contents fill a temporary set, which
// is then swapped with the live one in one step, so an address in both the
// old and the new contents never misses a match. The live sets are created
// first if missing, and a temporary set an interrupted update left behind
// is flushed and reused.
//
// hash:net cannot hold a /0: it becomes its two /1 halves. Prefixes are
// masked; IPv4-mapped IPv6 prefixes go to the IPv6 set, as the table keeps
// them.
func (s Spec) UpdateScript(prefixes []netip.Prefix) string {
	var b strings.Builder
	for _, f := range Families {
		live, tmp := s.SetName(f), s.setTemp(f)
		b.WriteString(createLine(live, f))
		b.WriteString(createLine(tmp, f))
		b.WriteString("flush " + tmp + "\n")
		for _, p := range prefixes {
			if !p.IsValid() || p.Addr().Is4() != (f == IPv4) {
				continue
			}
			for _, e := range setEntries(p.Masked()) {
				b.WriteString("add " + tmp + " " + e.String() + " -exist\n")
			}
		}
		b.WriteString("swap " + tmp + " " + live + "\n")
		b.WriteString("destroy " + tmp + "\n")
	}
	return b.String()
}

// setEntries is what hash:net stores for p: p itself, or both halves of a
// /0, which hash:net refuses.
func setEntries(p netip.Prefix) []netip.Prefix {
	if p.Bits() != 0 {
		return []netip.Prefix{p}
	}
	hi := p.Addr().AsSlice()
	hi[0] = 0x80
	h, _ := netip.AddrFromSlice(hi)
	return []netip.Prefix{netip.PrefixFrom(p.Addr(), 1), netip.PrefixFrom(h, 1)}
}

// CreateSets creates both sets, empty, unless they exist.
func CreateSets(ctx context.Context, r Runner, s Spec) error {
	_, err := r.Run(ctx, s.SetsScript(), SetTool, "restore")
	return opErr(err, "create sets")
}

// UpdateSets makes both sets hold exactly prefixes (see UpdateScript). On
// failure the live sets keep what they held.
func UpdateSets(ctx context.Context, r Runner, s Spec, prefixes []netip.Prefix) error {
	_, err := r.Run(ctx, s.UpdateScript(prefixes), SetTool, "restore")
	return opErr(err, "update sets")
}

// RemoveSets destroys tcpnorm's sets of s that exist (the temporary ones
// too). A set still referenced by a rule cannot be destroyed: remove the
// rules first.
func RemoveSets(ctx context.Context, r Runner, s Spec) error {
	out, err := r.Run(ctx, "", SetTool, "list", "-n")
	if err != nil {
		return opErr(err, "list sets")
	}
	present := map[string]bool{}
	for _, n := range strings.Fields(out) {
		present[n] = true
	}
	var errs []error
	for _, f := range Families {
		for _, n := range []string{s.setTemp(f), s.SetName(f)} {
			if !present[n] {
				continue
			}
			if _, err := r.Run(ctx, "", SetTool, "destroy", n); err != nil {
				errs = append(errs, opErr(err, "destroy set"))
			}
		}
	}
	return errors.Join(errs...)
}
