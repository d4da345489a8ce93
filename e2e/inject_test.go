//go:build linux

package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// hostilePacket is one packet of the hostile set, with what is wrong with
// it.
type hostilePacket struct {
	Name string
	Data []byte
	// Malformed is set for SYNs whose option list is malformed in a way
	// the kernel's tcp match lets through to the queue: each must be
	// counted as malformed (some others in the set are too).
	Malformed bool
}

// rawSeg describes a hand-built TCP/IP packet. Unlike a serializing
// library, it builds exactly what it is told: lengths, offsets and
// checksums can be wrong on purpose.
type rawSeg struct {
	src, dst netip.Addr
	sport    uint16
	dport    uint16
	flags    uint8
	doff     int    // header length in 32-bit words; 0: from the options
	opts     []byte // raw option bytes, padded with EOL to a multiple of 4
	payload  []byte
	ext      []byte // IPv6 extension headers, their next headers filled in by the caller
	extNH    uint8  // the IPv6 header's next header when ext is set
	ipOpts   []byte // IPv4 options, a multiple of 4 bytes
	frag     uint16 // IPv4 flags and fragment offset field
	badCsum  bool
	cut      int // keep only this many bytes of the TCP header and payload; 0: all
}

// Short names of normalize's option kinds and flags for the option lists
// below, IP protocol numbers and IPv6 extension headers (RFC 8200 section
// 4).
const (
	optEOL       = normalize.OptEOL
	optNOP       = normalize.OptNOP
	optMSS       = normalize.OptMSS
	optWScale    = normalize.OptWS
	optSACKOK    = normalize.OptSACKOK
	optTimestamp = normalize.OptTS
	tcpFlagsSYN  = normalize.FlagSYN
	tcpFlagsSA   = normalize.FlagSYN | normalize.FlagACK
	ipProtoTCP   = 6
	ipv6HopByHop = 0
	ipv6DestOpts = 60
	ipv6Routing  = 43
	ipv6Frag     = 44
	ipv6NoNext   = 59
)

func (s rawSeg) build() []byte {
	opts := append([]byte(nil), s.opts...)
	for len(opts)%4 != 0 {
		opts = append(opts, optEOL)
	}
	tcp := make([]byte, 20+len(opts)+len(s.payload))
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], 0x1000_0000+uint32(s.sport))
	doff := s.doff
	if doff == 0 {
		doff = (20 + len(opts)) / 4
	}
	tcp[12] = byte(doff&0x0f) << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], 0xffff)
	copy(tcp[20:], opts)
	copy(tcp[20+len(opts):], s.payload)
	var pkt []byte
	var off int
	if s.src.Is4() {
		ihl := 20 + len(s.ipOpts)
		pkt = make([]byte, ihl+len(tcp))
		pkt[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
		binary.BigEndian.PutUint16(pkt[4:], s.sport)
		binary.BigEndian.PutUint16(pkt[6:], s.frag)
		pkt[8], pkt[9] = 64, ipProtoTCP
		a, b := s.src.As4(), s.dst.As4()
		copy(pkt[12:], a[:])
		copy(pkt[16:], b[:])
		copy(pkt[20:], s.ipOpts)
		off = ihl
	} else {
		pkt = make([]byte, 40+len(s.ext)+len(tcp))
		pkt[0] = 0x60
		binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
		pkt[6], pkt[7] = ipProtoTCP, 64
		if s.ext != nil {
			pkt[6] = s.extNH
		}
		a, b := s.src.As16(), s.dst.As16()
		copy(pkt[8:], a[:])
		copy(pkt[24:], b[:])
		copy(pkt[40:], s.ext)
		off = 40 + len(s.ext)
	}
	copy(pkt[off:], tcp)
	normalize.TCP(pkt[off:]).SetChecksum(normalize.TCPChecksum(pkt, pkt[off:]))
	if s.badCsum {
		pkt[off+16] ^= 0x5a
	}
	if s.cut > 0 && off+s.cut < len(pkt) {
		pkt = pkt[:off+s.cut]
		if s.src.Is6() {
			binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
		}
	}
	return pkt
}

// pad is an IPv6 hop-by-hop or destination options header of 8 bytes (one
// PadN option) followed by next header nh.
func pad(nh uint8) []byte { return []byte{nh, 0, 1, 4, 0, 0, 0, 0} }

// hostilePackets is the hostile set: SYNs from src to dst:dport (and a few
// SYN-ACKs) with every kind of broken header the option walker and the
// header parsers must survive. Source ports start at sport, one per packet,
// so no two share a flow.
func hostilePackets(src, dst netip.Addr, sport, dport uint16) []hostilePacket {
	var ps []hostilePacket
	add := func(name string, malformed bool, s rawSeg) {
		s.src, s.dst, s.sport, s.dport = src, dst, sport+uint16(len(ps)), dport
		if s.flags == 0 {
			s.flags = tcpFlagsSYN
		}
		ps = append(ps, hostilePacket{Name: name, Data: s.build(), Malformed: malformed})
	}
	for _, o := range []struct {
		name string
		opts []byte
	}{
		{"option length 0", []byte{optMSS, 0, 5, 0xb4}},
		{"option length 1", []byte{optMSS, 1, 5, 0xb4}},
		{"MSS length 5", []byte{optMSS, 5, 5, 0xb4, 0}},
		{"window scale length 2", []byte{optNOP, optWScale, 2, optNOP}},
		{"SACK-permitted length 3", []byte{optSACKOK, 3, 0, optNOP}},
		{"timestamps length 9", []byte{optTimestamp, 9, 1, 2, 3, 4, 5, 6, 7, optNOP, optNOP, optNOP}},
		{"option past the header", []byte{optNOP, optTimestamp, 10, 1, 2, 3, 4, 5}},
		{"unknown option past the header", []byte{254, 40, 0, 0}},
		{"option length byte missing", []byte{optNOP, optNOP, optNOP, optWScale}},
	} {
		add(o.name, true, rawSeg{opts: o.opts})
	}
	for k := 0; k < 256; k++ {
		add(fmt.Sprintf("option kind %d", k), false, rawSeg{opts: []byte{byte(k), 4, 0, 0, optWScale, 3, 7, optNOP}})
	}
	add("every option twice", false, rawSeg{opts: []byte{optMSS, 4, 5, 0xb4, optMSS, 4, 0x23, 0x28, optWScale, 3, 7, optWScale, 3, 14,
		optSACKOK, 2, optSACKOK, 2, optTimestamp, 10, 1, 2, 3, 4, 0, 0, 0, 0, optTimestamp, 10, 5, 6, 7, 8, 0, 0, 0, 0}})
	add("forty bytes of window scale", false, rawSeg{opts: []byte{optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14,
		optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14, optWScale, 3, 14,
		optWScale, 3, 14, optWScale, 3, 14, optNOP}})
	for doff := 0; doff < 5; doff++ {
		add(fmt.Sprintf("data offset %d", doff), false, rawSeg{doff: doff})
	}
	add("data offset past the packet", false, rawSeg{doff: 15, opts: []byte{optWScale, 3, 7, optNOP}})
	add("data offset past the payload", false, rawSeg{doff: 15, opts: []byte{optWScale, 3, 7, optNOP}, payload: []byte("0123456789")})
	for _, cut := range []int{1, 8, 13, 19, 23} {
		add(fmt.Sprintf("TCP header cut at %d bytes", cut), false, rawSeg{opts: []byte{optMSS, 4, 5, 0xb4, optWScale, 3, 7, optNOP}, cut: cut})
	}
	add("bad checksum", false, rawSeg{opts: []byte{optMSS, 4, 5, 0xb4, optWScale, 3, 7, optNOP}, badCsum: true})
	add("bad checksum, malformed", true, rawSeg{opts: []byte{optWScale, 1, 7, optNOP}, badCsum: true})
	add("SYN with payload", false, rawSeg{opts: []byte{optWScale, 3, 7, optNOP}, payload: make([]byte, 1000)})
	add("SYN-ACK nobody asked for", false, rawSeg{flags: tcpFlagsSA, opts: []byte{optWScale, 3, 14, optNOP}})
	add("every flag", false, rawSeg{flags: 0xff, opts: []byte{optWScale, 3, 7, optNOP}})
	if src.Is4() {
		add("IPv4 options", false, rawSeg{ipOpts: []byte{1, 1, 1, 0}, opts: []byte{optWScale, 3, 7, optNOP}})
		add("IPv4 first fragment", false, rawSeg{frag: 0x2000, opts: []byte{optWScale, 3, 7, optNOP}, payload: make([]byte, 64)})
		add("IPv4 later fragment", false, rawSeg{frag: 0x0003, opts: []byte{optWScale, 3, 7, optNOP}})
		add("IPv4 fragment offset 8191", false, rawSeg{frag: 0x3fff, opts: []byte{optWScale, 3, 7, optNOP}})
		return ps
	}
	add("hop-by-hop, destination options", false, rawSeg{extNH: ipv6HopByHop, ext: append(pad(ipv6DestOpts), pad(ipProtoTCP)...), opts: []byte{optWScale, 3, 7, optNOP}})
	var chain []byte
	for i := 0; i < 12; i++ {
		chain = append(chain, pad(ipv6DestOpts)...)
	}
	chain[len(chain)-8] = ipProtoTCP
	add("twelve destination options headers", false, rawSeg{extNH: ipv6DestOpts, ext: chain, opts: []byte{optWScale, 3, 7, optNOP}})
	add("destination options longer than the packet", false, rawSeg{extNH: ipv6DestOpts, ext: []byte{ipProtoTCP, 200, 1, 4, 0, 0, 0, 0}, opts: []byte{optWScale, 3, 7, optNOP}})
	add("no next header", false, rawSeg{extNH: ipv6DestOpts, ext: pad(ipv6NoNext), opts: []byte{optWScale, 3, 7, optNOP}})
	add("IPv6 fragment header", false, rawSeg{extNH: ipv6Frag, ext: []byte{ipProtoTCP, 0, 0, 1, 0, 0, 0, 1}, opts: []byte{optWScale, 3, 7, optNOP}})
	add("routing header", false, rawSeg{extNH: ipv6Routing, ext: []byte{ipProtoTCP, 0, 4, 0, 0, 0, 0, 0}, opts: []byte{optWScale, 3, 7, optNOP}})
	return ps
}

// injectStats is what inject sent.
type injectStats struct {
	Sent, Failed int // packets sent, and refused by the sending kernel
	Rounds       int // times the whole set went out
}

// inject sends pkts from namespace ns over a raw socket (the packets carry
// their own IP headers), the whole set again and again at up to pps
// packets a second, until d has passed or ctx is done. Packets of either
// family may be mixed.
func inject(ctx context.Context, ns string, pkts [][]byte, pps int, d time.Duration) (injectStats, error) {
	var st injectStats
	fds := map[int]int{}
	err := netns.InNetns(ns, func() error {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
			fd, err := unix.Socket(fam, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			if err != nil {
				return fmt.Errorf("raw socket: %w", err)
			}
			fds[fam] = fd
		}
		return nil
	})
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	if err != nil {
		return st, err
	}
	const burst = 64
	interval := time.Duration(burst) * time.Second / time.Duration(max(pps, 1))
	end := time.Now().Add(d)
	next := time.Now()
	for time.Now().Before(end) && ctx.Err() == nil {
		for i, p := range pkts {
			if len(p) < 20 {
				continue
			}
			var err error
			if p[0]>>4 == 4 {
				err = unix.Sendto(fds[unix.AF_INET], p, 0, &unix.SockaddrInet4{Addr: [4]byte(p[16:20])})
			} else if len(p) >= 40 {
				err = unix.Sendto(fds[unix.AF_INET6], p, 0, &unix.SockaddrInet6{Addr: [16]byte(p[24:40])})
			}
			if err != nil {
				st.Failed++
			} else {
				st.Sent++
			}
			if (i+1)%burst == 0 {
				next = next.Add(interval)
				time.Sleep(time.Until(next))
			}
		}
		st.Rounds++
	}
	return st, nil
}

// makeSYNs returns n well-formed SYNs to dst:dport carrying Linux's options
// (MSS, SACK-permitted, timestamps, window scale), from the addresses of
// srcs in turn, source ports counting up from sport.
func makeSYNs(srcs []netip.Addr, dst netip.Addr, sport, dport uint16, n int) [][]byte {
	ps := make([][]byte, n)
	for i := range ps {
		ps[i] = rawSeg{src: srcs[i%len(srcs)], dst: dst, sport: sport + uint16(i/len(srcs)), dport: dport, flags: tcpFlagsSYN,
			opts: []byte{optMSS, 4, 5, 0xb4, optSACKOK, 2, optTimestamp, 10, 0, 0, 0, byte(i), 0, 0, 0, 0, optNOP, optWScale, 3, 7}}.build()
	}
	return ps
}
