//go:build linux

package lab

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// capSeg is one segment through the wscale-cap box.
type capSeg struct {
	fromClient bool
	syn, ack   bool
	wscale     int // -1: no option
	seq, acked uint32
	window     uint16
	payload    int
	want       bool // forwarded
}

func buildCapSeg(t *testing.T, s capSeg) []byte {
	t.Helper()
	src, dst := net.ParseIP(ClientV4.String()).To4(), net.ParseIP(ServerV4.String()).To4()
	sport, dport := layers.TCPPort(40000), layers.TCPPort(25)
	if !s.fromClient {
		src, dst, sport, dport = dst, src, dport, sport
	}
	tcp := &layers.TCP{SrcPort: sport, DstPort: dport, Seq: s.seq, Ack: s.acked, SYN: s.syn, ACK: s.ack, Window: s.window}
	if s.wscale >= 0 {
		tcp.Options = []layers.TCPOption{
			{OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.wscale)}},
		}
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src, DstIP: dst}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, tcp, gopacket.Payload(make([]byte, s.payload))); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func TestWindowCap(t *testing.T) {
	// Client ISN 1000, server ISN 5000; the box honours shifts up to 2.
	handshake := func(cs, ss int) []capSeg {
		return []capSeg{
			{fromClient: true, syn: true, wscale: cs, seq: 1000, window: 64240, want: true},
			{syn: true, ack: true, wscale: ss, seq: 5000, acked: 1001, window: 65160, want: true},
		}
	}
	tests := []struct {
		name string
		segs []capSeg
	}{
		{
			name: "server data within the client's window computed with shift 2",
			segs: append(handshake(7, 7),
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 1001, acked: 5001, window: 512, want: true},
				// 512 << 2 = 2048 bytes from 5001: up to 7049.
				capSeg{ack: true, wscale: -1, seq: 5001, acked: 1001, window: 509, payload: 1448, want: true},
				capSeg{ack: true, wscale: -1, seq: 6449, acked: 1001, window: 509, payload: 600, want: true},
				capSeg{ack: true, wscale: -1, seq: 7049, acked: 1001, window: 509, payload: 1, want: false},
			),
		},
		{
			name: "client data within the server's window as the SYN-ACK gave it",
			segs: append(handshake(7, 7),
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 1001, acked: 5001, window: 512, payload: 65160, want: true},
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 66161, acked: 5001, window: 512, payload: 1, want: false},
			),
		},
		{
			name: "shifts at or below the cap are honoured",
			segs: append(handshake(2, 1),
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 1001, acked: 5001, window: 1000, want: true},
				capSeg{ack: true, wscale: -1, seq: 5001, acked: 1001, window: 10, payload: 4000, want: true},
				capSeg{ack: true, wscale: -1, seq: 9001, acked: 1001, window: 10, payload: 1, want: false},
				// The server's window: 10 << 1.
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 1001, acked: 9001, window: 1000, payload: 20, want: true},
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 1021, acked: 9001, window: 1000, payload: 1, want: false},
			),
		},
		{
			name: "no scaling unless both ends announce it",
			segs: append(handshake(7, -1),
				capSeg{fromClient: true, ack: true, wscale: -1, seq: 1001, acked: 5001, window: 3000, want: true},
				capSeg{ack: true, wscale: -1, seq: 5001, acked: 1001, window: 509, payload: 3000, want: true},
				capSeg{ack: true, wscale: -1, seq: 8001, acked: 1001, window: 509, payload: 1, want: false},
			),
		},
		{
			name: "unknown connection and pure acks pass",
			segs: []capSeg{
				{ack: true, wscale: -1, seq: 5001, acked: 1001, window: 0, payload: 1448, want: true},
				{fromClient: true, ack: true, wscale: -1, seq: 1001, acked: 5001, window: 0, want: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newWindowCap(2)
			for i, s := range tt.segs {
				if got := c.forward(buildCapSeg(t, s)); got != s.want {
					t.Errorf("segment %d (%+v): forward = %v, want %v", i, s, got, s.want)
				}
			}
		})
	}
}

func TestWindowCapSurvivesGarbage(t *testing.T) {
	c := newWindowCap(2)
	good := buildCapSeg(t, capSeg{fromClient: true, syn: true, wscale: 7, seq: 1, window: 100})
	for n := 0; n <= len(good); n++ {
		if !c.forward(append([]byte(nil), good[:n]...)) {
			t.Errorf("truncated SYN (%d bytes) dropped", n)
		}
	}
}

func TestScrambleBothWays(t *testing.T) {
	var back, ahead int
	for seq := uint32(0); seq < 1<<16; seq += 1448 {
		b, a := tsScramblePick(seq), tsScrambleAheadPick(seq)
		if a && b {
			t.Fatalf("seq %d picked both ways", seq)
		}
		if b {
			back++
		}
		if a {
			ahead++
		}
	}
	if back == 0 || ahead == 0 {
		t.Errorf("picked %d back and %d ahead; want some of each", back, ahead)
	}
	pkt := buildTCP(t, false, false, true, 1000, 7, 5000, 100)
	want := buildTCP(t, false, false, true, 1000, 7, 5000+tsScrambleAhead, 100)
	if !scrambleTSval(pkt, ^uint32(tsScrambleAhead)+1, func(uint32) bool { return true }) {
		t.Fatal("scrambleTSval into the future: not changed")
	}
	if string(pkt) != string(want) {
		t.Errorf("TSval moved into the future: got %x, want %x", pkt, want)
	}
}
