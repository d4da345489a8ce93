//go:build linux

package lab

import (
	"net/netip"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// defaultWScaleCap is the largest window-scale shift the wscale-cap path
// honours unless PathOptions says otherwise.
const defaultWScaleCap = 2

// WScaleCapZero asks PathOptions for a wscale-cap box that honours no shift
// at all (cap 0: it reads every window field unscaled), since a zero
// WScaleCap means the default.
const WScaleCapZero = -1

// capFlowsMax bounds the wscale-cap box's connection table; a lab runs a
// handful of connections at a time, so a full table is simply cleared.
const capFlowsMax = 4096

// capKey names a connection by its SYN's source and destination.
type capKey struct{ client, server netip.AddrPort }

// capEnd is what the wscale-cap box knows of one end of a connection: the
// shift its SYN or SYN-ACK announced, and the edge of the window its latest
// forwarded segment offered the other end.
type capEnd struct {
	shift   int // -1: no window-scale option
	haveWin bool
	ack     uint32
	win     uint32 // bytes, as the box computes them
}

type capFlow struct {
	end [2]capEnd // 0: the end that sent the SYN, 1: the other
}

// windowCap is a middlebox that honours window-scale shifts only up to max:
// it computes each end's window as field << min(shift, max) and drops data
// segments beyond the window the other end last offered. Like a real box
// that tracks windows, it believes what it computes.
type windowCap struct {
	max   int
	flows map[capKey]*capFlow
}

func newWindowCap(max int) *windowCap {
	return &windowCap{max: max, flows: make(map[capKey]*capFlow)}
}

// forward reports whether the box forwards pkt, and learns from it.
func (c *windowCap) forward(pkt []byte) bool {
	tcp, srcAddr, dstAddr, ok := tcpSegment(pkt)
	if !ok {
		return true
	}
	src := netip.AddrPortFrom(srcAddr, tcp.SrcPort())
	dst := netip.AddrPortFrom(dstAddr, tcp.DstPort())
	flags := tcp.Flags()
	shift := -1
	if ws := findOption(tcp, normalize.OptWS); ws != nil {
		shift = int(min(ws[2], normalize.MaxWindowShift))
	}
	switch flags & (normalize.FlagSYN | normalize.FlagACK) {
	case normalize.FlagSYN:
		if len(c.flows) >= capFlowsMax {
			clear(c.flows)
		}
		c.flows[capKey{src, dst}] = &capFlow{end: [2]capEnd{{shift: shift}, {shift: -1}}}
		return true
	case normalize.FlagSYN | normalize.FlagACK:
		f := c.flows[capKey{dst, src}]
		if f == nil {
			return true
		}
		f.end[1] = capEnd{shift: shift, haveWin: true, ack: tcp.Ack(), win: uint32(tcp.Window())}
		return true
	}
	d := 0
	f := c.flows[capKey{src, dst}]
	if f == nil {
		d = 1
		f = c.flows[capKey{dst, src}]
	}
	if f == nil {
		return true
	}
	peer := &f.end[1-d]
	if n := payloadLen(tcp); n > 0 && peer.haveWin {
		if int32(tcp.Seq()+uint32(n)-(peer.ack+peer.win)) > 0 {
			return false
		}
	}
	if flags&normalize.FlagACK != 0 {
		e := &f.end[d]
		scale := 0
		if e.shift >= 0 && peer.shift >= 0 {
			scale = min(e.shift, c.max)
		}
		e.haveWin = true
		e.ack = tcp.Ack()
		e.win = uint32(tcp.Window()) << scale
	}
	if flags&normalize.FlagRST != 0 {
		delete(c.flows, capKey{src, dst})
		delete(c.flows, capKey{dst, src})
	}
	return true
}
