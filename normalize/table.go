package normalize

import "net/netip"

// ListTable is a Table kept as a plain list, for tests and tools: Lookup
// scans it for the longest matching prefix. config compiles the real one.
type ListTable []ListEntry

// ListEntry binds a prefix to a policy.
type ListEntry struct {
	Prefix netip.Prefix
	Policy *Policy
}

// Lookup implements Table.
func (t ListTable) Lookup(addr netip.Addr, port uint16, dir Direction) *Policy {
	var best *Policy
	bits := -1
	for _, e := range t {
		if e.Prefix.Bits() > bits && e.Prefix.Contains(addr) &&
			e.Policy.Direction&dir != 0 && e.Policy.MatchPort(port) {
			best, bits = e.Policy, e.Prefix.Bits()
		}
	}
	return best
}
