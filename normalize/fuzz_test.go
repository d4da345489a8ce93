package normalize

import (
	"bytes"
	"testing"
)

// fuzzPolicies are the policies the fuzzer picks from by a byte.
var fuzzPolicies = []*Policy{
	stripAll(),
	{Direction: Both, WindowScale: WSClamp, WindowScaleMax: 3, MSSMax: 1200, DropMalformed: true},
	{Direction: Both, Mode: LogOnly, WindowScale: WSStrip, Timestamps: TSStrip, StripUnknown: true},
	{Direction: Inbound, Timestamps: TSStrip, StripSACKOK: true, ClearECN: true},
}

func fuzzSeeds(f *testing.F) {
	for _, h := range []string{linuxSYN, linuxSYNACK, windowsSYN} {
		f.Add(unhex(f, h), uint8(0), uint8(0))
	}
	for i, s := range []seg{
		{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true, ece: true, cwr: true,
			options: []byte{2, 4, 5, 0xb4, 1, 3, 3, 6, 1, 1, 8, 10, 0x42, 0x65, 0x8e, 0x95, 0, 0, 0, 0, 4, 2, 0}},
		{src: "2001:2::1", dst: "2001:2::2", sport: 1, dport: 25, syn: true, ack: true,
			options: []byte{OptTFO, 2, OptMPTCP, 4, 0, 0x81, 1, 3, 3, 14}},
		{src: "2001:2::1", dst: "2001:2::2", sport: 1, dport: 25, syn: true, options: []byte{1, 3, 3, 7},
			ipv6extNH: 0, ipv6ext: []byte{6, 0, 1, 4, 0, 0, 0, 0}},
		{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true, options: []byte{254, 9, 0, 0}},
		{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true, options: []byte{19, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{src: "198.18.7.1", dst: "198.18.7.2", sport: 1, dport: 25, syn: true, options: []byte{3, 3, 255}, payload: []byte("data")},
	} {
		f.Add(build(f, s), uint8(i), uint8(i))
	}
}

// FuzzPacket checks Packet's invariants on any input: no panic, length
// unchanged, bytes outside the TCP header untouched, the checksum verifies
// after a rewrite iff it did before (always, after a full recompute),
// stripped options are gone, and a second pass changes nothing.
func FuzzPacket(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, pkt []byte, policy, flags uint8) {
		pol := fuzzPolicies[int(policy)%len(fuzzPolicies)]
		tab := table(pol, lab4, lab6, remote)
		meta := Meta{CsumNotReady: flags&1 != 0, Truncated: flags&2 != 0, Mark: uint32(flags>>2) << 24}
		orig := append([]byte(nil), pkt...)
		var seg segment
		why := parse(orig, &seg)
		before := why == ReasonNoPolicy && seg.complete && verifies(t, orig)

		n := New(Config{MarkMask: testMask, FlowSlots: 64})
		r := n.Packet(pkt, tab, meta)
		if len(pkt) != len(orig) {
			t.Fatalf("length changed")
		}
		if !r.Modified {
			if !bytes.Equal(pkt, orig) {
				t.Fatalf("bytes changed without Modified")
			}
			return
		}
		if meta.Truncated || pol.Mode == LogOnly && r.Kind != KindOther {
			t.Fatalf("modified a truncated or log-only packet")
		}
		hdrStart := cap(orig) - cap(seg.tcp) // the TCP header's offset in orig
		hdrEnd := hdrStart + seg.tcp.DataOffset()
		if !bytes.Equal(pkt[:hdrStart], orig[:hdrStart]) || !bytes.Equal(pkt[hdrEnd:], orig[hdrEnd:]) {
			t.Fatalf("bytes outside the TCP header changed")
		}
		after := verifies(t, pkt)
		if meta.CsumNotReady && !after {
			t.Fatalf("full checksum does not verify")
		}
		if !meta.CsumNotReady && after != before {
			t.Fatalf("checksum verified %v before, %v after", before, after)
		}
		var o optionSummary
		summarize(tcpOf(t, pkt).Options(), &o)
		if r.Why.Changes&ChWSStripped != 0 && o.ws != nil ||
			r.Why.Changes&ChTSStripped != 0 && o.ts != nil ||
			r.Why.Changes&ChSACKOKStripped != 0 && o.sackok != nil ||
			r.Why.Changes&ChUnknownStripped != 0 && o.unknown != 0 {
			t.Fatalf("stripped option still present: %v", r.Why)
		}
		if r.Why.Changes&(ChWindowRewritten|ChTSRepaired) != 0 {
			return // stateful rewrites apply per segment, not idempotently
		}
		once := append([]byte(nil), pkt...)
		if r2 := n.Packet(pkt, tab, meta); r2.Modified || !bytes.Equal(once, pkt) {
			t.Fatalf("second pass changed %v", r2.Why)
		}
	})
}

// FuzzOptions checks the walker: it terminates, stays in bounds, every
// option it yields is a sub-slice with a consistent length, and the known
// kinds have their exact lengths.
func FuzzOptions(f *testing.F) {
	f.Add([]byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7})
	f.Add([]byte{254, 0})
	f.Add([]byte{1, 1, 1, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		it := Options(b)
		steps := 0
		for it.Next() {
			o := it.Option()
			steps++
			if steps > len(b) {
				t.Fatalf("no progress")
			}
			if len(o.Data) < 2 || int(o.Data[1]) != len(o.Data) {
				t.Fatalf("option %d has length byte %d, slice %d", o.Kind, o.Data[1], len(o.Data))
			}
			if x := exactLen[o.Kind]; x != 0 && len(o.Data) != int(x) {
				t.Fatalf("kind %d length %d", o.Kind, len(o.Data))
			}
		}
	})
}
