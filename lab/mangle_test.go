//go:build linux

package lab

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// buildTCP serializes an IPv4 or IPv6 TCP packet with gopacket, checksums
// computed by gopacket: the reference the injector's rewrites must match.
func buildTCP(t *testing.T, v6, syn, ack bool, seq uint32, wscale byte, tsval uint32, payload int) []byte {
	t.Helper()
	tcp := &layers.TCP{
		SrcPort: 25, DstPort: 40000, Seq: seq, Ack: 7, SYN: syn, ACK: ack, Window: 512,
		Options: []layers.TCPOption{
			{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
			{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, tsval), 99)},
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{wscale}},
		},
	}
	var ip gopacket.SerializableLayer
	if v6 {
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP(ServerV6.String()), DstIP: net.ParseIP(ClientV6.String())}
		tcp.SetNetworkLayerForChecksum(l)
		ip = l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: net.ParseIP(ServerV4.String()).To4(), DstIP: net.ParseIP(ClientV4.String()).To4()}
		tcp.SetNetworkLayerForChecksum(l)
		ip = l
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, tcp, gopacket.Payload(make([]byte, payload)))
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func TestRaiseWScale(t *testing.T) {
	tests := []struct {
		name        string
		v6, syn     bool
		ack         bool
		shift       byte
		wantChanged bool
		wantShift   byte
	}{
		{name: "ipv4 syn-ack raised", syn: true, ack: true, shift: 7, wantChanged: true, wantShift: 14},
		{name: "ipv6 syn-ack raised", v6: true, syn: true, ack: true, shift: 0, wantChanged: true, wantShift: 14},
		{name: "syn untouched", syn: true, shift: 7, wantShift: 7},
		{name: "data segment untouched", ack: true, shift: 7, wantShift: 7},
		{name: "already 14", syn: true, ack: true, shift: 14, wantShift: 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := buildTCP(t, tt.v6, tt.syn, tt.ack, 1000, tt.shift, 5000, 0)
			want := buildTCP(t, tt.v6, tt.syn, tt.ack, 1000, tt.wantShift, 5000, 0)
			if got := raiseWScale(pkt, 14); got != tt.wantChanged {
				t.Errorf("raiseWScale() = %v, want %v", got, tt.wantChanged)
			}
			if diff := cmp.Diff(want, pkt); diff != "" {
				t.Errorf("packet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScrambleTSval(t *testing.T) {
	all := func(uint32) bool { return true }
	none := func(uint32) bool { return false }
	tests := []struct {
		name        string
		v6          bool
		syn         bool
		payload     int
		pick        func(uint32) bool
		wantChanged bool
		wantTS      uint32
	}{
		{name: "ipv4 data moved back", payload: 100, pick: all, wantChanged: true, wantTS: 5000 - 1000},
		{name: "ipv6 data moved back", v6: true, payload: 1, pick: all, wantChanged: true, wantTS: 5000 - 1000},
		{name: "not picked", payload: 100, pick: none, wantTS: 5000},
		{name: "pure ack untouched", pick: all, wantTS: 5000},
		{name: "syn untouched", syn: true, payload: 10, pick: all, wantTS: 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pkt := buildTCP(t, tt.v6, tt.syn, true, 1000, 7, 5000, tt.payload)
			want := buildTCP(t, tt.v6, tt.syn, true, 1000, 7, tt.wantTS, tt.payload)
			if got := scrambleTSval(pkt, 1000, tt.pick); got != tt.wantChanged {
				t.Errorf("scrambleTSval() = %v, want %v", got, tt.wantChanged)
			}
			if diff := cmp.Diff(want, pkt); diff != "" {
				t.Errorf("packet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestManglersSurviveGarbage(t *testing.T) {
	good := buildTCP(t, false, true, true, 1, 7, 5000, 20)
	for n := 0; n <= len(good); n++ {
		pkt := append([]byte(nil), good[:n]...)
		raiseWScale(pkt, 14)
		scrambleTSval(pkt, 1, func(uint32) bool { return true })
	}
	bad := append([]byte(nil), good...)
	bad[20+20+1] = 0 // first option's length byte
	if raiseWScale(bad, 14) {
		t.Errorf("raiseWScale changed a packet with a malformed option list")
	}
}

func TestSegments(t *testing.T) {
	ipv4 := buildTCP(t, false, true, true, 1000, 7, 5000, 0)
	eth := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, ipv4...)
	segs := Segments([]netns.Frame{{Data: eth, OrigLen: len(eth)}, {Data: []byte{1, 2, 3}}})
	if len(segs) != 1 {
		t.Fatalf("Segments: got %d segments, want 1", len(segs))
	}
	s := segs[0]
	if s.Flags != "S." || s.MSS != 1460 || s.WScale != 7 || !s.TS || s.TSval != 5000 || !s.SACKOK {
		t.Errorf("segment = %+v", s)
	}
	if want := "mss 1460,sackOK,TS val 5000 ecr 99,nop,wscale 7"; s.Options != want {
		t.Errorf("Options = %q, want %q", s.Options, want)
	}
}
