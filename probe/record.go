//go:build linux

package probe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Recorder writes the probe's own connections, both directions, to a
// pcapng file as they cross this host's interfaces: its SYNs as the
// normalizer sent them and the peer's packets before any rewriting, the
// view a capture on the wire would give. Nothing else this host sends or
// receives is written.
//
// An AF_PACKET socket on every interface takes, through its BPF filter,
// the outgoing packets carrying the probe's socket mark and the incoming
// TCP packets of the address being probed (with ICMP errors); in user
// space an incoming packet is kept only if it belongs to a connection whose
// outgoing packets were seen. Segments with more than snapPayload bytes of
// payload (the body) are cut after snapKeep bytes of it; the dialogue
// stays whole.
type Recorder struct {
	f    *os.File // the packet socket
	bw   *bufio.Writer
	ng   *pcapgo.NgWriter
	done chan struct{}

	mu      sync.Mutex
	flows   map[flowKey]struct{}
	written uint64
	err     error
}

// RecordStats is what a recording holds and missed.
type RecordStats struct {
	Packets uint64 `json:"packets"`
	// Dropped were lost by the packet socket (a full buffer): the file
	// misses them.
	Dropped uint64 `json:"dropped,omitempty"`
}

const (
	snapPayload = 512
	snapKeep    = 64
	// recordSnap bounds a record (jumbo frames, offloaded super-packets).
	recordSnap = 262144
)

// flowKey is a probe connection as this host sends it.
type flowKey struct {
	local, remote netip.AddrPort
}

// Record starts recording into w (a pcapng stream). Watch says which
// address's packets to take; Close stops and flushes.
func Record(w io.Writer) (*Recorder, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("probe: packet socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "packet")
	fail := func(what string, err error) (*Recorder, error) {
		f.Close()
		return nil, fmt.Errorf("probe: packet socket: %s: %w", what, err)
	}
	// Nothing until Watch names an address (and no packet that arrived
	// before the filter, drained below).
	if err := attach(fd, netip.Addr{}); err != nil {
		return fail("filter", err)
	}
	for drain := make([]byte, 1); ; {
		if _, _, err := unix.Recvfrom(fd, drain, unix.MSG_DONTWAIT); err != nil {
			break
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fail("timestamps", err)
	}
	// A body's worth of segments can arrive between two reads.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}); err != nil {
		return fail("bind", err)
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	ng, err := pcapgo.NewNgWriterInterface(bw, pcapgo.NgInterface{
		Name: "any", Description: "tcpnorm probe connections", LinkType: layers.LinkTypeRaw, SnapLength: recordSnap,
		TimestampResolution: 9,
	}, pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: "tcpnorm probe", OS: "Linux"}})
	if err != nil {
		return fail("pcapng", err)
	}
	r := &Recorder{f: f, bw: bw, ng: ng, done: make(chan struct{}), flows: map[flowKey]struct{}{}}
	go r.loop()
	return r, nil
}

// Watch makes addr the address whose incoming packets are taken (the probe
// tests one address at a time).
func (r *Recorder) Watch(addr netip.Addr) error {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return err
	}
	var aerr error
	if err := rc.Control(func(fd uintptr) { aerr = attach(int(fd), addr.Unmap()) }); err != nil {
		return err
	}
	return aerr
}

// Close stops the recording, flushes the file's buffer and says what it
// holds.
func (r *Recorder) Close() (RecordStats, error) {
	var st RecordStats
	if rc, err := r.f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if s, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
				st.Dropped = uint64(s.Drops)
			}
		})
	}
	err := r.f.Close()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	st.Packets = r.written
	err = errors.Join(r.err, r.ng.Flush(), r.bw.Flush())
	return st, err
}

func (r *Recorder) loop() {
	defer close(r.done)
	rc, err := r.f.SyscallConn()
	if err != nil {
		r.fail(err)
		return
	}
	buf := make([]byte, recordSnap)
	oob := make([]byte, unix.CmsgSpace(16))
	for {
		var n, oobn int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_TRUNC)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			return // closed
		}
		if rerr != nil {
			if rerr == unix.EINTR {
				continue
			}
			r.fail(rerr)
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		r.packet(buf[:min(n, len(buf))], n, ll.Pkttype == unix.PACKET_OUTGOING, stamp(oob[:oobn]))
	}
}

func (r *Recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = fmt.Errorf("probe: recording: %w", err)
	}
}

// packet writes one packet if it belongs to a probe connection: every
// outgoing one the filter passed does (it carries the probe's mark).
func (r *Recorder) packet(b []byte, length int, out bool, ts time.Time) {
	tcpOff, key, icmp, ok := classify(b)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case out && !icmp:
		r.flows[key] = struct{}{}
	case icmp:
		// An ICMP error quotes one of our packets: key is as we sent it.
		if _, mine := r.flows[key]; !mine {
			return
		}
	default:
		if _, mine := r.flows[flowKey{key.remote, key.local}]; !mine {
			return
		}
	}
	keep := len(b)
	if !icmp {
		tcp := normalize.TCP(b[tcpOff:])
		if payload := len(b) - tcpOff - tcp.DataOffset(); payload > snapPayload {
			keep = tcpOff + tcp.DataOffset() + snapKeep
		}
	}
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: keep, Length: length, InterfaceIndex: 0}
	if err := r.ng.WritePacket(ci, b[:keep]); err != nil {
		if r.err == nil {
			r.err = fmt.Errorf("probe: writing the capture: %w", err)
		}
		return
	}
	r.written++
}

// classify finds a TCP packet's connection (source first), or for an ICMP
// error the connection of the packet it quotes (icmp true, key as that
// packet was sent).
func classify(b []byte) (tcpOff int, key flowKey, icmp, ok bool) {
	var src, dst netip.Addr
	var proto uint8
	var off int
	switch {
	case normalize.IPv4(b).IsValid():
		ip := normalize.IPv4(b)
		src, dst, proto, off = ip.Src(), ip.Dst(), ip.Protocol(), ip.HeaderLength()
		if ip.FragmentOffset() != 0 {
			return 0, key, false, false
		}
	case normalize.IPv6(b).IsValid():
		ip := normalize.IPv6(b)
		var frag bool
		if off, proto, frag, ok = ip.Transport(); !ok || frag {
			return 0, key, false, false
		}
		src, dst = ip.Src(), ip.Dst()
	default:
		return 0, key, false, false
	}
	switch proto {
	case 6:
		tcp := normalize.TCP(b[off:])
		if !tcp.IsValid() {
			return 0, key, false, false
		}
		return off, flowKey{netip.AddrPortFrom(src, tcp.SrcPort()), netip.AddrPortFrom(dst, tcp.DstPort())}, false, true
	case 1, 58:
		// Destination unreachable (v4 3, v6 1) and packet too big (v6 2):
		// 8 bytes of ICMP header, then the quoted packet.
		if len(b) < off+8 || !(proto == 1 && b[off] == 3 || proto == 58 && (b[off] == 1 || b[off] == 2)) {
			return 0, key, false, false
		}
		inner, ok := quoted(b[off+8:])
		return off, inner, true, ok
	}
	return 0, key, false, false
}

// quoted is the connection of the TCP packet an ICMP error quotes: its IP
// header and at least the 8 bytes of TCP header RFC 792 requires.
func quoted(b []byte) (flowKey, bool) {
	var src, dst netip.Addr
	var off int
	switch {
	case normalize.IPv4(b).IsValid() && normalize.IPv4(b).Protocol() == 6:
		ip := normalize.IPv4(b)
		src, dst, off = ip.Src(), ip.Dst(), ip.HeaderLength()
	case normalize.IPv6(b).IsValid():
		ip := normalize.IPv6(b)
		o, proto, frag, ok := ip.Transport()
		if !ok || frag || proto != 6 {
			return flowKey{}, false
		}
		src, dst, off = ip.Src(), ip.Dst(), o
	default:
		return flowKey{}, false
	}
	if len(b) < off+4 {
		return flowKey{}, false
	}
	tcp := normalize.TCP(b[off:])
	return flowKey{netip.AddrPortFrom(src, tcp.SrcPort()), netip.AddrPortFrom(dst, tcp.DstPort())}, true
}

// stamp is the kernel's receive time from the SO_TIMESTAMPNS message, or
// now.
func stamp(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				return time.Unix(int64(binary.NativeEndian.Uint64(m.Data)), int64(binary.NativeEndian.Uint64(m.Data[8:])))
			}
		}
	}
	return time.Now()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// attach sets the packet socket's filter: outgoing packets with the
// probe's mark; incoming TCP from addr (none if addr is invalid); incoming
// ICMP and ICMPv6 (user space keeps the errors about probe packets).
func attach(fd int, addr netip.Addr) error {
	const accept, reject = 23, 24
	var v4 uint32
	var v6 [4]uint32
	if addr.Is4() {
		a := addr.As4()
		v4 = binary.BigEndian.Uint32(a[:])
	}
	if addr.Is6() {
		a := addr.As16()
		for i := range v6 {
			v6[i] = binary.BigEndian.Uint32(a[4*i:])
		}
	}
	tcpFrom := uint32(6)
	if !addr.IsValid() {
		tcpFrom = 256 // matches no protocol byte
	}
	// skip is the jump from instruction at to instruction to.
	skip := func(at, to int) uint8 { return uint8(to - at - 1) }
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipFalse: skip(1, 4)},
		/* 2 */ bpf.LoadExtension{Num: bpf.ExtMark},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: normalize.ProbeMark, SkipTrue: skip(3, accept), SkipFalse: skip(3, reject)},
		/* 4 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipFalse: skip(5, 11)},
		/* 6 */ bpf.LoadAbsolute{Off: 9, Size: 1},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 1, SkipTrue: skip(7, accept)},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tcpFrom, SkipFalse: skip(8, reject)},
		/* 9 */ bpf.LoadAbsolute{Off: 12, Size: 4},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: v4, SkipTrue: skip(10, accept), SkipFalse: skip(10, reject)},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipFalse: skip(11, reject)},
		/* 12 */ bpf.LoadAbsolute{Off: 6, Size: 1},
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 58, SkipTrue: skip(13, accept)},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: tcpFrom, SkipFalse: skip(14, reject)},
		/* 15 */ bpf.LoadAbsolute{Off: 8, Size: 4},
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6[0], SkipFalse: skip(16, reject)},
		/* 17 */ bpf.LoadAbsolute{Off: 12, Size: 4},
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6[1], SkipFalse: skip(18, reject)},
		/* 19 */ bpf.LoadAbsolute{Off: 16, Size: 4},
		/* 20 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6[2], SkipFalse: skip(20, reject)},
		/* 21 */ bpf.LoadAbsolute{Off: 20, Size: 4},
		/* 22 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: v6[3], SkipTrue: skip(22, accept), SkipFalse: skip(22, reject)},
		/* accept */ bpf.RetConstant{Val: recordSnap},
		/* reject */ bpf.RetConstant{Val: 0},
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, ins := range raw {
		filter[i] = unix.SockFilter{Code: ins.Op, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]})
}
