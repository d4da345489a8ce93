package config

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"sort"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Table is a compiled, immutable policy table: longest-prefix match per
// address family, then port and direction. Each family is flattened into
// sorted, non-overlapping address ranges; each range lists the policies of
// the prefixes covering it, longest prefix first. Lookup is a binary search
// over the range starts and allocates nothing.
type Table struct {
	v4start []uint32
	v4pols  [][]*normalize.Policy
	v6start []u128
	v6pols  [][]*normalize.Policy
	n       int
	// prefixes are the compiled prefixes, masked, IPv4 first: what the
	// kernel's address sets must hold so every handshake the table can
	// match reaches a queue.
	prefixes []netip.Prefix
}

// TableEntry is one prefix of one policy, for NewTable.
type TableEntry struct {
	Prefix netip.Prefix
	Policy *normalize.Policy
}

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

var emptyTable = &Table{}

// Len is the number of prefixes in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Prefixes lists every prefix in the table once, masked, IPv4 then IPv6,
// each family in address order. The slice is shared: callers must not modify it.
func (t *Table) Prefixes() []netip.Prefix {
	if t == nil {
		return nil
	}
	return t.prefixes
}

// Lookup returns the policy of the longest prefix containing addr that
// covers port and dir, or nil. It implements normalize.Table.
func (t *Table) Lookup(addr netip.Addr, port uint16, dir normalize.Direction) *normalize.Policy {
	if t == nil || t.n == 0 {
		return nil
	}
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	var pols []*normalize.Policy
	if addr.Is4() {
		s := t.v4start
		if len(s) == 0 {
			return nil
		}
		a4 := addr.As4()
		k := binary.BigEndian.Uint32(a4[:])
		lo, hi := 0, len(s) // invariant: s[lo] <= k (s[0] == 0), s[hi] > k
		for hi-lo > 1 {
			mid := int(uint(lo+hi) >> 1)
			if s[mid] <= k {
				lo = mid
			} else {
				hi = mid
			}
		}
		pols = t.v4pols[lo]
	} else if addr.Is6() {
		s := t.v6start
		if len(s) == 0 {
			return nil
		}
		k := toU128(addr)
		lo, hi := 0, len(s)
		for hi-lo > 1 {
			mid := int(uint(lo+hi) >> 1)
			if !k.less(s[mid]) {
				lo = mid
			} else {
				hi = mid
			}
		}
		pols = t.v6pols[lo]
	}
	for _, p := range pols {
		if p.Direction&dir != 0 && p.MatchPort(port) {
			return p
		}
	}
	return nil
}

func toU128(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// NewTable compiles entries into a table. Several policies may share a
// prefix if their directions or ports are disjoint (one peer, different
// options per direction); Lookup takes the one that fits the connection. A
// later entry for a prefix that overlaps an earlier one is ignored (callers
// resolve and report claims before compiling).
func NewTable(entries []TableEntry) *Table {
	var v4, v6 []TableEntry
	seen := map[netip.Prefix][]*normalize.Policy{}
	for _, e := range entries {
		p := e.Prefix.Masked()
		if !p.IsValid() || e.Policy == nil || slices.ContainsFunc(seen[p], func(q *normalize.Policy) bool { return overlap(q, e.Policy) }) {
			continue
		}
		seen[p] = append(seen[p], e.Policy)
		if p.Addr().Is4() {
			v4 = append(v4, TableEntry{p, e.Policy})
		} else {
			v6 = append(v6, TableEntry{p, e.Policy})
		}
	}
	if len(v4)+len(v6) == 0 {
		return emptyTable
	}
	t := &Table{n: len(v4) + len(v6)}
	t.prefixes = make([]netip.Prefix, 0, t.n)
	for _, e := range append(slices.Clone(v4), v6...) {
		t.prefixes = append(t.prefixes, e.Prefix)
	}
	// A prefix several policies share (on different ports or directions)
	// is listed once.
	t.prefixes = uniqPrefixes(t.prefixes)
	for _, r := range flatten(v4) {
		a4 := r.start.As4()
		t.v4start = append(t.v4start, binary.BigEndian.Uint32(a4[:]))
		t.v4pols = append(t.v4pols, r.pols)
	}
	for _, r := range flatten(v6) {
		t.v6start = append(t.v6start, toU128(r.start))
		t.v6pols = append(t.v6pols, r.pols)
	}
	return t
}

type span struct {
	start netip.Addr
	pols  []*normalize.Policy // longest prefix first
}

// flatten turns laminar prefixes (any two are nested or disjoint) of one
// family into the ranges between their boundaries, starting at the family's
// zero address.
func flatten(es []TableEntry) []span {
	if len(es) == 0 {
		return nil
	}
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Prefix, es[j].Prefix
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	var out []span
	var stack []TableEntry
	zero := netip.IPv4Unspecified()
	if es[0].Prefix.Addr().Is6() {
		zero = netip.IPv6Unspecified()
	}
	cur, done := zero, false
	emit := func(start netip.Addr) {
		pols := make([]*normalize.Policy, len(stack))
		for i := range stack {
			pols[i] = stack[len(stack)-1-i].Policy
		}
		if n := len(out); n > 0 && samePols(out[n-1].pols, pols) {
			return
		}
		out = append(out, span{start, pols})
	}
	// closeTop ends the innermost open prefix: the range up to its last
	// address carries the stack as it is; then it is popped.
	closeTop := func() {
		top := stack[len(stack)-1]
		last := lastAddr(top.Prefix)
		if last.Less(cur) { // an inner prefix ended at the same address
			stack = stack[:len(stack)-1]
			return
		}
		emit(cur)
		stack = stack[:len(stack)-1]
		next := last.Next()
		if !next.IsValid() {
			done = true
			return
		}
		cur = next
	}
	for _, e := range es {
		start := e.Prefix.Addr()
		for len(stack) > 0 && lastAddr(stack[len(stack)-1].Prefix).Less(start) && !done {
			closeTop()
		}
		if cur.Less(start) {
			emit(cur)
			cur = start
		}
		stack = append(stack, e)
	}
	for len(stack) > 0 && !done {
		closeTop()
	}
	if !done {
		emit(cur)
	}
	return out
}

func samePols(a, b []*normalize.Policy) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	bits := p.Bits()
	if p.Addr().Is4() {
		a := p.Addr().As4()
		v := binary.BigEndian.Uint32(a[:])
		if bits < 32 {
			v |= 1<<(32-bits) - 1
		}
		binary.BigEndian.PutUint32(a[:], v)
		return netip.AddrFrom4(a)
	}
	a := p.Addr().As16()
	for i := bits; i < 128; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(a)
}
