package config

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/normalize"
)

func pol(name string, dir normalize.Direction, ports ...uint16) *normalize.Policy {
	return &normalize.Policy{Name: name, Direction: dir, Ports: ports}
}

func TestTableLookup(t *testing.T) {
	wide := pol("wide", normalize.Both)
	narrow := pol("narrow", normalize.Outbound, 25)
	host := pol("host", normalize.Inbound)
	v6 := pol("v6", normalize.Both)
	v6host := pol("v6host", normalize.Both, 443)
	all4 := pol("all4", normalize.Outbound, 9)
	edge := pol("edge", normalize.Both)
	// One peer, different options per direction, and a third file's
	// overlapping claim on the same prefix, which is ignored.
	peerOut := pol("peer-out", normalize.Outbound)
	peerIn := pol("peer-in", normalize.Inbound, 25)
	peerIn587 := pol("peer-in-587", normalize.Inbound, 587)
	peerBoth := pol("peer-both", normalize.Both, 25)
	tab := NewTable([]TableEntry{
		{netip.MustParsePrefix("198.18.0.0/15"), wide},
		{netip.MustParsePrefix("198.18.1.0/24"), narrow},
		{netip.MustParsePrefix("198.18.1.7/32"), host},
		{netip.MustParsePrefix("198.19.255.0/24"), edge}, // ends where wide ends
		{netip.MustParsePrefix("2001:2::/48"), v6},
		{netip.MustParsePrefix("2001:2::1/128"), v6host},
		{netip.MustParsePrefix("0.0.0.0/0"), all4},
		{netip.MustParsePrefix("198.18.1.0/24"), wide}, // duplicate: ignored
		{netip.MustParsePrefix("198.18.9.9/32"), peerOut},
		{netip.MustParsePrefix("198.18.9.9/32"), peerIn},
		{netip.MustParsePrefix("198.18.9.9/32"), peerIn587},
		{netip.MustParsePrefix("198.18.9.9/32"), peerBoth}, // overlaps both: ignored
	})
	tests := []struct {
		name string
		addr string
		port uint16
		dir  normalize.Direction
		want *normalize.Policy
	}{
		{name: "miss v4 falls to /0 only on its port", addr: "192.0.2.1", port: 25, dir: normalize.Outbound, want: nil},
		{name: "v4 /0", addr: "192.0.2.1", port: 9, dir: normalize.Outbound, want: all4},
		{name: "wide", addr: "198.18.200.1", port: 80, dir: normalize.Inbound, want: wide},
		{name: "narrow on its port", addr: "198.18.1.1", port: 25, dir: normalize.Outbound, want: narrow},
		{name: "narrow off its port falls back to wide", addr: "198.18.1.1", port: 80, dir: normalize.Outbound, want: wide},
		{name: "narrow wrong direction", addr: "198.18.1.1", port: 25, dir: normalize.Inbound, want: wide},
		{name: "host", addr: "198.18.1.7", port: 25, dir: normalize.Inbound, want: host},
		{name: "host outbound falls to narrow", addr: "198.18.1.7", port: 25, dir: normalize.Outbound, want: narrow},
		{name: "just after narrow", addr: "198.18.2.0", port: 25, dir: normalize.Outbound, want: wide},
		{name: "last address of wide and edge", addr: "198.19.255.255", port: 1, dir: normalize.Inbound, want: edge},
		{name: "first after wide", addr: "198.20.0.0", port: 1, dir: normalize.Inbound, want: nil},
		{name: "4-in-6 is unmapped", addr: "::ffff:198.18.1.7", port: 1, dir: normalize.Inbound, want: host},
		{name: "v6", addr: "2001:2::5", port: 1, dir: normalize.Inbound, want: v6},
		{name: "v6 host on port", addr: "2001:2::1", port: 443, dir: normalize.Outbound, want: v6host},
		{name: "v6 host off port", addr: "2001:2::1", port: 80, dir: normalize.Outbound, want: v6},
		{name: "v6 miss", addr: "2001:3::1", port: 443, dir: normalize.Outbound, want: nil},
		{name: "v6 zero", addr: "::", port: 443, dir: normalize.Outbound, want: nil},
		{name: "v6 max", addr: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", port: 443, dir: normalize.Outbound, want: nil},
		{name: "invalid addr", addr: "", port: 9, dir: normalize.Outbound, want: nil},
		{name: "one peer outbound", addr: "198.18.9.9", port: 25, dir: normalize.Outbound, want: peerOut},
		{name: "one peer inbound on 25", addr: "198.18.9.9", port: 25, dir: normalize.Inbound, want: peerIn},
		{name: "one peer inbound on 587", addr: "198.18.9.9", port: 587, dir: normalize.Inbound, want: peerIn587},
		{name: "one peer inbound elsewhere falls to wide", addr: "198.18.9.9", port: 80, dir: normalize.Inbound, want: wide},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a netip.Addr
			if tc.addr != "" {
				a = netip.MustParseAddr(tc.addr)
			}
			got := tab.Lookup(a, tc.port, tc.dir)
			if got != tc.want {
				t.Errorf("Lookup(%s, %d, %d) = %v, want %v", tc.addr, tc.port, tc.dir, name(got), name(tc.want))
			}
		})
	}
	if n := tab.Len(); n != 10 {
		t.Errorf("Len = %d, want 10", n)
	}
	var want []netip.Prefix
	for _, p := range []string{"0.0.0.0/0", "198.18.0.0/15", "198.18.1.0/24", "198.18.1.7/32", "198.18.9.9/32", "198.19.255.0/24", "2001:2::/48", "2001:2::1/128"} {
		want = append(want, netip.MustParsePrefix(p))
	}
	if diff := cmp.Diff(want, tab.Prefixes(), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Prefixes (-want +got):\n%s", diff)
	}
	if got := (&Table{}).Prefixes(); len(got) != 0 {
		t.Errorf("empty table: Prefixes = %v", got)
	}
}

func name(p *normalize.Policy) string {
	if p == nil {
		return "<nil>"
	}
	return p.Name
}

// TestTableMatchesLinear compares the flattened table with a linear
// longest-prefix scan over random laminar prefix sets.
func TestTableMatchesLinear(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var es []TableEntry
		seen := map[netip.Prefix]bool{}
		for i := 0; i < 40; i++ {
			var a netip.Addr
			bits := 0
			if r.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))})
				bits = 16 + r.IntN(17)
			} else {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, byte(r.IntN(4)), 15: byte(r.IntN(256))})
				bits = 40 + r.IntN(89)
			}
			p, _ := a.Prefix(bits)
			if seen[p] {
				continue
			}
			seen[p] = true
			es = append(es, TableEntry{p, pol(fmt.Sprint(p), normalize.Direction(1+r.IntN(3)), uint16(r.IntN(3)))})
		}
		tab := NewTable(es)
		for i := 0; i < 2000; i++ {
			var a netip.Addr
			if r.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(5)), byte(r.IntN(256))})
			} else {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, byte(r.IntN(5)), 15: byte(r.IntN(256))})
			}
			port := uint16(r.IntN(3))
			dir := normalize.Direction(1 + r.IntN(2))
			var want *normalize.Policy
			bestBits := -1
			for _, e := range es {
				if e.Prefix.Contains(a) && e.Prefix.Bits() > bestBits && e.Policy.Direction&dir != 0 && e.Policy.MatchPort(port) {
					want, bestBits = e.Policy, e.Prefix.Bits()
				}
			}
			if got := tab.Lookup(a, port, dir); got != want {
				t.Fatalf("round %d: Lookup(%s, %d, %d) = %s, want %s", round, a, port, dir, name(got), name(want))
			}
		}
	}
}

func TestTableLookupAllocs(t *testing.T) {
	tab := benchTable()
	hit := netip.MustParseAddr("198.18.3.1")
	miss := netip.MustParseAddr("2001:db8::1")
	var empty *Table = NewTable(nil)
	allocs := testing.AllocsPerRun(1000, func() {
		tab.Lookup(hit, 25, normalize.Outbound)
		tab.Lookup(miss, 25, normalize.Outbound)
		empty.Lookup(hit, 25, normalize.Outbound)
		var tb normalize.Table = tab
		tb.Lookup(hit, 25, normalize.Inbound)
	})
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per run, want 0", allocs)
	}
}

// benchTable has ~100 prefixes of mixed lengths and families.
func benchTable() *Table {
	var es []TableEntry
	for i := 0; i < 50; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24)
		es = append(es, TableEntry{p, pol(fmt.Sprint(i), normalize.Both, 25, 465, 587)})
		h := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 7}), 32)
		es = append(es, TableEntry{h, pol(fmt.Sprint(i), normalize.Outbound)})
	}
	for i := 0; i < 10; i++ {
		p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, byte(i)}), 64)
		es = append(es, TableEntry{p, pol(fmt.Sprint(i), normalize.Both)})
	}
	return NewTable(es)
}

func BenchmarkLookup(b *testing.B) {
	tab := benchTable()
	var empty normalize.Table = NewTable(nil)
	var tb normalize.Table = tab
	cases := []struct {
		name string
		t    normalize.Table
		addr netip.Addr
	}{
		{"miss4", tb, netip.MustParseAddr("203.0.113.9")},
		{"hit4", tb, netip.MustParseAddr("198.18.20.7")},
		{"miss6", tb, netip.MustParseAddr("2001:db8::1")},
		{"hit6", tb, netip.MustParseAddr("2001:2:0:5::1")},
		{"empty", empty, netip.MustParseAddr("203.0.113.9")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c.t.Lookup(c.addr, 25, normalize.Outbound)
			}
		})
	}
}
