package normalize

import "testing"

// ipv6With returns an IPv6 header whose next header is first, followed by
// ext (extension headers) and a 20-byte TCP header.
func ipv6With(first uint8, ext ...byte) IPv6 {
	b := make([]byte, IPv6MinimumSize, IPv6MinimumSize+len(ext)+TCPMinimumSize)
	b[0] = 0x60
	b[ipv6NextHeader] = first
	b = append(b, ext...)
	return append(b, make([]byte, TCPMinimumSize)...)
}

func TestIPv6Transport(t *testing.T) {
	hopByHop := []byte{ipv6Fragment, 0, 1, 4, 0, 0, 0, 0}
	firstFrag := []byte{protoTCP, 0, 0x00, 0x01, 0, 0, 0, 1} // offset 0, M set
	laterFrag := []byte{protoTCP, 0, 0x05, 0x00, 0, 0, 0, 1} // offset 160
	destOpts := []byte{protoTCP, 0, 1, 4, 0, 0, 0, 0}
	tests := []struct {
		name string
		b    IPv6
		// Transport
		off   int
		proto uint8
		frag  bool
		ok    bool
		// FirstFragmentTransport
		firstOff int
		firstOK  bool
	}{
		{name: "TCP right after the fixed header", b: ipv6With(protoTCP),
			off: 40, proto: protoTCP, ok: true, firstOff: 40, firstOK: true},
		{name: "destination options", b: ipv6With(ipv6DestOpts, destOpts...),
			off: 48, proto: protoTCP, ok: true, firstOff: 48, firstOK: true},
		{name: "first fragment", b: ipv6With(ipv6Fragment, firstFrag...),
			off: 40, proto: ipv6Fragment, frag: true, ok: true, firstOff: 48, firstOK: true},
		{name: "hop-by-hop, then a first fragment", b: ipv6With(ipv6HopByHop, append(hopByHop, firstFrag...)...),
			off: 48, proto: ipv6Fragment, frag: true, ok: true, firstOff: 56, firstOK: true},
		{name: "later fragment", b: ipv6With(ipv6Fragment, laterFrag...),
			off: 40, proto: ipv6Fragment, frag: true, ok: true},
		{name: "extension header cut off", b: ipv6With(ipv6DestOpts)[:IPv6MinimumSize+4]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, proto, frag, ok := tt.b.Transport()
			if off != tt.off || proto != tt.proto || frag != tt.frag || ok != tt.ok {
				t.Errorf("Transport() = %d, %d, %v, %v, want %d, %d, %v, %v", off, proto, frag, ok, tt.off, tt.proto, tt.frag, tt.ok)
			}
			off, proto, ok = tt.b.FirstFragmentTransport()
			wantProto := uint8(0)
			if tt.firstOK {
				wantProto = protoTCP
			}
			if off != tt.firstOff || proto != wantProto || ok != tt.firstOK {
				t.Errorf("FirstFragmentTransport() = %d, %d, %v, want %d, %d, %v", off, proto, ok, tt.firstOff, wantProto, tt.firstOK)
			}
		})
	}
}
