package normalize_test

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// The benchmarks run against config's compiled table, the one the daemon
// uses: 100 policies' prefixes in both families.

// Linux 6.18 SYN with a finished checksum:
// IP 198.18.7.1.51836 > 198.18.7.2.25: Flags [S], seq 1712211467, win 64240,
// options [mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10], length 0
const benchSYN = `4500 003c 3174 4000 4006 6f20 c612 0701
	c612 0702 ca7c 0019 660e 460b 0000 0000
	a002 faf0 8e30 0000 0204 05b4 0402 080a
	7013 a710 0000 0000 0103 030a`

func benchTable(b *testing.B, match bool, pol *normalize.Policy) normalize.Table {
	var es []config.TableEntry
	for i := 0; i < 100; i++ {
		es = append(es,
			config.TableEntry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i), 0}), 24), Policy: pol},
			config.TableEntry{Prefix: netip.MustParsePrefix("2001:2:1:" + strings.Repeat("f", 1+i%4) + "::/64"), Policy: pol})
	}
	if match {
		es = append(es, config.TableEntry{Prefix: netip.MustParsePrefix("198.18.7.2/32"), Policy: pol})
	}
	return config.NewTable(es)
}

func benchPacket(b *testing.B) []byte {
	p, err := hex.DecodeString(strings.Join(strings.Fields(benchSYN), ""))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkStripSYN: parse and apply of a typical Linux SYN under a policy
// stripping window scale and timestamps (the copy of the fixture is included).
func BenchmarkStripSYN(b *testing.B) {
	syn := benchPacket(b)
	tab := benchTable(b, true, &normalize.Policy{Direction: normalize.Both, WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip})
	n := normalize.New(normalize.Config{})
	buf := make([]byte, len(syn))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, syn)
		if r := n.Packet(buf, tab, normalize.Meta{}); !r.Modified {
			b.Fatal("not modified")
		}
	}
}

// BenchmarkNoMatch: a SYN to a peer no policy names.
func BenchmarkNoMatch(b *testing.B) {
	syn := benchPacket(b)
	tab := benchTable(b, false, &normalize.Policy{Direction: normalize.Both, WindowScale: normalize.WSStrip})
	n := normalize.New(normalize.Config{})
	b.ReportAllocs()
	for b.Loop() {
		if r := n.Packet(syn, tab, normalize.Meta{}); r.Why.Reason != normalize.ReasonNoPolicy {
			b.Fatal(r.Why)
		}
	}
}

// BenchmarkWindowRewrite: a later segment of a clamped flow (stateful queue).
func BenchmarkWindowRewrite(b *testing.B) {
	pkt := benchPacket(b)
	pkt[33] = 0x10 // ACK instead of SYN
	mb, _ := normalize.NewMarkBits(0xff000000)
	n := normalize.New(normalize.Config{MarkMask: 0xff000000})
	mark := mb.Original() | 0x25000000 // local client, shift delta 5
	b.ReportAllocs()
	for b.Loop() {
		pkt[34], pkt[35] = 0, 100
		if r := n.Packet(pkt, nil, normalize.Meta{Mark: mark}); !r.Modified {
			b.Fatal(r.Why)
		}
	}
}
