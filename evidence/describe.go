package evidence

import (
	"fmt"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Describe renders an IP packet holding TCP as tcpdump -n prints it, e.g.
// "IP 198.18.1.2.48414 > 198.18.3.2.25: Flags [S], seq 1, win 64240,
// options [mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7], length 0".
func Describe(data []byte) string {
	first := layers.LayerTypeIPv4
	if len(data) > 0 && data[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(data, first, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	var proto, src, dst string
	var ipPayload int
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		proto, src, dst, ipPayload = "IP", ip.SrcIP.String(), ip.DstIP.String(), int(ip.Length)-int(ip.IHL)*4
	case *layers.IPv6:
		proto, src, dst, ipPayload = "IP6", ip.SrcIP.String(), ip.DstIP.String(), int(ip.Length)
	default:
		return fmt.Sprintf("not an IP packet (%d bytes)", len(data))
	}
	tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		return fmt.Sprintf("%s %s > %s: not TCP", proto, src, dst)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s.%d > %s.%d: Flags [%s], seq %d", proto, src, tcp.SrcPort, dst, tcp.DstPort, Flags(tcp), tcp.Seq)
	if tcp.ACK {
		fmt.Fprintf(&b, ", ack %d", tcp.Ack)
	}
	fmt.Fprintf(&b, ", win %d", tcp.Window)
	if len(tcp.Options) > 0 {
		fmt.Fprintf(&b, ", options [%s]", Options(tcp.Options))
	}
	fmt.Fprintf(&b, ", length %d", max(0, ipPayload-int(tcp.DataOffset)*4))
	return b.String()
}

// Flags are a segment's flags as tcpdump prints them: S F R P U E W, then
// '.' for ACK.
func Flags(t *layers.TCP) string {
	var b []byte
	for _, f := range []struct {
		on bool
		c  byte
	}{{t.SYN, 'S'}, {t.FIN, 'F'}, {t.RST, 'R'}, {t.PSH, 'P'}, {t.URG, 'U'}, {t.ECE, 'E'}, {t.CWR, 'W'}} {
		if f.on {
			b = append(b, f.c)
		}
	}
	if t.ACK {
		b = append(b, '.')
	}
	return string(b)
}

// Options lists TCP options as tcpdump prints them, with normalize's
// option printer.
func Options(opts []layers.TCPOption) string {
	var b []byte
	for i, o := range opts {
		if i > 0 {
			b = append(b, ',')
		}
		b = normalize.AppendOption(b, uint8(o.OptionType), o.OptionData, normalize.OptionTcpdump)
	}
	return string(b)
}

// Line is one packet of an evidence file as report shows it: its time, the
// tcpdump line and its comment.
func (p Packet) Line() string {
	return p.Time.UTC().Format("15:04:05.000000") + " " + Describe(p.Data)
}
