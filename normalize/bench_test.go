package normalize

import (
	"net/netip"
	"testing"
)

// BenchmarkStripSYN: parse and apply of a typical Linux SYN under a policy
// stripping window scale and timestamps (the copy of the fixture is included).
func BenchmarkStripSYN(b *testing.B) {
	syn := unhex(b, linuxSYN)
	fixCsum(b, syn)
	tab := table(&Policy{Direction: Both, WindowScale: WSStrip, Timestamps: TSStrip}, remote)
	n := New(Config{})
	buf := make([]byte, len(syn))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, syn)
		if r := n.Packet(buf, tab, Meta{}); !r.Modified {
			b.Fatal("not modified")
		}
	}
}

// BenchmarkNoMatch: a SYN to a peer no policy names, against a table with
// one policy elsewhere.
func BenchmarkNoMatch(b *testing.B) {
	syn := unhex(b, linuxSYN)
	tab := table(stripAll(), netip.MustParsePrefix("198.19.0.0/16"))
	n := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		if r := n.Packet(syn, tab, Meta{}); r.Why.Reason != ReasonNoPolicy {
			b.Fatal(r.Why)
		}
	}
}

// BenchmarkDataSegment: the cost of a non-handshake segment that reached the
// queue anyway.
func BenchmarkDataSegment(b *testing.B) {
	pkt := build(b, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, ack: true,
		options: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}, payload: make([]byte, 1400)})
	tab := table(stripAll(), remote)
	n := New(Config{})
	b.ReportAllocs()
	for b.Loop() {
		n.Packet(pkt, tab, Meta{})
	}
}
