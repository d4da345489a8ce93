package normalize

import (
	"encoding/hex"
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// seg describes a segment for the test builder.
type seg struct {
	src, dst  string // IP addresses; IPv6 if they contain ':'
	sport     uint16
	dport     uint16
	syn, ack  bool
	ece, cwr  bool
	ns        bool // AE
	window    uint16
	seq       uint32
	options   []byte // raw option bytes, padded to 4 by the builder with EOL
	payload   []byte
	ipv6ext   []byte // raw IPv6 extension headers, each starting with its next header
	ipv6extNH layers.IPProtocol
	v4options []layers.IPv4Option
	badCsum   bool
}

// build serializes the segment with gopacket, computing lengths and
// checksums independently of this package.
func build(t testing.TB, s seg) []byte {
	t.Helper()
	opts := append([]byte(nil), s.options...)
	for len(opts)%4 != 0 {
		opts = append(opts, OptEOL)
	}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport),
		SYN: s.syn, ACK: s.ack, ECE: s.ece, CWR: s.cwr, NS: s.ns,
		Window: s.window, Seq: s.seq,
	}
	if s.ack {
		tcp.Ack = 1
	}
	// gopacket re-encodes parsed options; raw bytes go in as one opaque
	// option-shaped blob by abusing the padding field, which it copies.
	tcp.Padding = opts
	tcp.DataOffset = uint8((20 + len(opts)) / 4)
	buf := gopacket.NewSerializeBuffer()
	so := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	var ls []gopacket.SerializableLayer
	if strings.Contains(s.src, ":") {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP(s.src), DstIP: net.ParseIP(s.dst)}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
		if s.ipv6ext != nil {
			ip.NextHeader = s.ipv6extNH
			ls = append(ls, gopacket.Payload(s.ipv6ext))
		}
	} else {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
			SrcIP: net.ParseIP(s.src).To4(), DstIP: net.ParseIP(s.dst).To4(), Options: s.v4options}
		tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, ip)
	}
	ls = append(ls, tcp, gopacket.Payload(s.payload))
	if err := gopacket.SerializeLayers(buf, so, ls...); err != nil {
		t.Fatalf("build: %v", err)
	}
	b := buf.Bytes()
	if s.badCsum {
		tc := tcpOf(t, b)
		tc.SetChecksum(tc.Checksum() ^ 0x5a5a)
	}
	return b
}

// tcpOf finds the TCP header of a packet built above.
func tcpOf(t testing.TB, pkt []byte) TCP {
	t.Helper()
	var s segment
	r := parse(pkt, &s)
	if r != ReasonNoPolicy {
		t.Fatalf("parse: %v", r)
	}
	return s.tcp
}

// verifies is the slow reference checksum check: sum everything, including
// the checksum field, over a freshly built pseudo-header.
func verifies(t testing.TB, pkt []byte) bool {
	t.Helper()
	var s segment
	r := parse(pkt, &s)
	if r != ReasonNoPolicy {
		t.Fatalf("parse: %v", r)
	}
	var ph []byte
	if pkt[0]>>4 == 4 {
		ph = append(ph, pkt[12:20]...)
	} else {
		ph = append(ph, pkt[8:40]...)
	}
	n := len(s.tcp)
	ph = append(ph, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n), 0, 0, 0, protoTCP)
	var sum uint32
	add := func(b []byte) {
		for i := 0; i < len(b); i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < len(b) {
				w |= uint32(b[i+1])
			}
			sum += w
		}
	}
	add(ph)
	add(s.tcp)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func fixCsum(t testing.TB, pkt []byte) {
	var s segment
	parse(pkt, &s)
	s.tcp.SetChecksum(fullTCPChecksum(s.pseudoHeaderSum(), s.tcp))
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.Join(strings.Fields(s), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex fixture: %v", err)
	}
	return b
}

// optString renders an option list the way tcpdump does, for test diffs:
// the value of an option not decoded in full in hex; a malformed length
// ends the list with "bad".
func optString(b []byte) string {
	var out []byte
	for i := 0; i < len(b); {
		if len(out) > 0 {
			out = append(out, ',')
		}
		k := b[i]
		if k == OptEOL || k == OptNOP {
			out = AppendOption(out, k, nil, OptionBytes)
			if k == OptEOL {
				break
			}
			i++
			continue
		}
		if i+1 >= len(b) || b[i+1] < 2 || i+int(b[i+1]) > len(b) {
			out = append(out, "bad"...)
			break
		}
		n := int(b[i+1])
		out = AppendOption(out, k, b[i+2:i+n], OptionBytes)
		i += n
	}
	return string(out)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
