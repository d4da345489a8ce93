package diagnose

import (
	"bytes"
	"encoding/binary"
	"math/rand"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// This file is a small TCP simulator that writes the capture one end of a
// connection would take: a client and a server, a path between them that
// may drop, rewrite or delay, and a capture point at either end.

var (
	cliV4 = netip.MustParseAddr("198.18.1.2")
	srvV4 = netip.MustParseAddr("198.18.2.2")
	cliV6 = netip.MustParseAddr("2001:2::1:2")
	srvV6 = netip.MustParseAddr("2001:2::2:2")
)

// wirePkt is one packet as it travels, before it is captured.
type wirePkt struct {
	t        time.Duration
	fromCli  bool
	seq, ack uint32
	flags    uint8
	win      uint16
	payload  int
	mss      int // SYN option, 0: none
	ws       int // SYN option, -1: none
	sackOK   bool
	ts       bool
	tsval    uint32
	tsecr    uint32
	sack     [][2]uint32
	ttl      uint8
	badsum   bool
	partial  bool
}

type sim struct {
	v6         bool
	upload     bool // the client sends the data
	atClient   bool // the capture is taken on the client
	bytes      int
	mss        int
	cliWS      int // -1: none
	srvWS      int
	pathSrvWS  int // the shift the client receives in the SYN-ACK, -1: unchanged
	rcvBuf     int // the receiver's real buffer
	ts, sack   bool
	drop       func(seq uint32, wire int, tx int) bool // path drops a data segment
	scramble   func(seq uint32) bool                   // path moves the sender's TSval back
	sackOffset uint32                                  // path adds this to the receiver's SACK blocks
	tso        bool                                    // sender-side capture shows super-segments
	partial    bool                                    // local transmit checksums left partial
	synDropTS  bool                                    // path drops SYNs with timestamps
	cliTS      *bool                                   // override: client offers timestamps
	port       uint16
	oneWay     time.Duration
	maxTime    time.Duration
	cliPort    uint16
	smallFirst int  // the first data segments are this many 100-byte ones
	srvWSAlone bool // the server sends WS in its SYN-ACK even without WS in the SYN
	ignoreWnd  bool // the sender ignores the receiver's window (flow control)
	swapAddrs  bool // the client has the server's address and the other way round
	// giveUp ends a stalled transfer: the receiver closes (a server's
	// timeout), the sender acknowledges its FIN and resets; both packets
	// carry the sender's SND.NXT
	giveUp bool

	out []wirePkt
}

func newSim() *sim {
	return &sim{bytes: 400_000, mss: 1460, cliWS: 7, srvWS: 7, pathSrvWS: -1, rcvBuf: 1 << 20, ts: true, sack: true,
		port: 25, oneWay: 5 * time.Millisecond, maxTime: 20 * time.Second, cliPort: 40000}
}

// capture records p as the capture point sees it. sentAt is when the sender
// sent it; local says the capturing host sent it.
func (s *sim) capture(p wirePkt, sentAt time.Duration) {
	local := p.fromCli == s.atClient
	p.t = sentAt
	p.ttl = 64
	if !local {
		p.t += s.oneWay
		p.ttl = 61
	} else if s.partial {
		p.partial = true
	}
	s.out = append(s.out, p)
}

// handshake runs the three-way handshake; it reports whether it completed.
func (s *sim) handshake() (cliISN, srvISN uint32, ok bool) {
	cliISN, srvISN = 1000000, 5000000
	cliTS := s.ts
	if s.cliTS != nil {
		cliTS = *s.cliTS
	}
	syn := wirePkt{fromCli: true, seq: cliISN, flags: 0x02, win: 64240, mss: s.mss, ws: s.cliWS, sackOK: s.sack, ts: cliTS, tsval: 100}
	t := time.Duration(0)
	rto := time.Second
	for try := 0; try < 5; try++ {
		if s.atClient {
			s.capture(syn, t)
		}
		if !(s.synDropTS && syn.ts) {
			break
		}
		if try == 4 {
			return 0, 0, false
		}
		t += rto
		rto *= 2
		syn.tsval += uint32(rto / time.Millisecond)
	}
	if !s.atClient {
		s.capture(syn, t)
	}
	ws := s.srvWS
	if s.cliWS < 0 && !s.srvWSAlone {
		ws = -1
	}
	synack := wirePkt{seq: srvISN, ack: cliISN + 1, flags: 0x12, win: 65160, mss: s.mss, ws: ws, sackOK: s.sack, ts: s.ts && cliTS, tsval: 7000, tsecr: syn.tsval}
	if !s.atClient {
		s.capture(synack, t+s.oneWay)
	} else {
		if s.pathSrvWS >= 0 {
			synack.ws = s.pathSrvWS
		}
		s.capture(synack, t+s.oneWay)
	}
	ack := wirePkt{fromCli: true, seq: cliISN + 1, ack: srvISN + 1, flags: 0x10, win: 502, ts: synack.ts, tsval: syn.tsval + 10, tsecr: 7000}
	s.capture(ack, t+2*s.oneWay)
	return cliISN + 1, srvISN + 1, true
}

// run simulates the connection and returns the captured packets.
func (s *sim) run() []wirePkt {
	cSeq, sSeq, ok := s.handshake()
	if !ok {
		return s.out
	}
	ts := s.ts && (s.cliTS == nil || *s.cliTS)
	sndISN, rcvISN := cSeq, sSeq
	if !s.upload {
		sndISN, rcvISN = sSeq, cSeq
	}
	// shifts: the receiver's real one, and the one the sender applies
	rcvShift, sndView := s.srvWS, s.srvWS
	if s.upload && s.pathSrvWS >= 0 {
		sndView = s.pathSrvWS
	}
	if !s.upload {
		rcvShift, sndView = s.cliWS, s.cliWS
	}
	if s.cliWS < 0 || s.srvWS < 0 {
		rcvShift, sndView = 0, 0
	}
	payloadMax := s.mss
	if ts {
		payloadMax -= 12
	}
	hdr := 40
	if s.v6 {
		hdr = 60
	}
	optLen := 0
	if ts {
		optLen = 12
	}
	type seg struct {
		seq    uint32
		n      int
		tx     int
		sacked bool
		acked  bool
		lost   bool
	}
	var segs []*seg
	for off := 0; off < s.bytes; {
		n := min(payloadMax, s.bytes-off)
		if len(segs) < s.smallFirst {
			n = 100
		}
		segs = append(segs, &seg{seq: sndISN + uint32(off), n: n})
		off += n
	}
	fromCli := s.upload
	senderLocal := fromCli == s.atClient
	var (
		t        = 2 * s.oneWay
		rtt      = 2 * s.oneWay
		cwnd     = 10
		next     = 0
		una      = sndISN
		rcvNxt   = sndISN
		ooo      = map[uint32]int{}
		win      = uint16(min(s.rcvBuf>>rcvShift, 0xffff))
		tsRecent = uint32(0) // the receiver's TS.Recent, from the handshake below
		clock    = func(t time.Duration) uint32 { return 7000 + uint32(t/time.Millisecond) }
		rto      = 200 * time.Millisecond
		idle     = 0
		rcvTSecr = uint32(0)
	)
	if ts {
		// RFC 7323 section 4.3: the receiver took TS.Recent from the
		// sender's SYN or SYN-ACK.
		tsRecent = 100
		if !s.upload {
			tsRecent = 7000
		}
	}
	for t < s.maxTime && idle < 7 {
		// The sender's burst: lost segments first, then new data.
		var burst []*seg
		for _, g := range segs[:next] {
			if g.lost && !g.acked && !g.sacked {
				burst = append(burst, g)
				g.lost = false
			}
		}
		wnd := int(uint32(win) << sndView)
		if s.ignoreWnd {
			wnd = 1 << 30
		}
		for next < len(segs) && len(burst) < cwnd && int(segs[next].seq-una)+segs[next].n <= wnd {
			burst = append(burst, segs[next])
			next++
		}
		if len(burst) == 0 && next == len(segs) && una == sndISN+uint32(s.bytes) {
			break
		}
		// The application reads everything received so far once per round
		// trip: the receive buffer limits what one round may bring.
		readPtr := rcvNxt
		var acks []wirePkt
		progress := false
		var sentBurst []wirePkt
		for i, g := range burst {
			g.tx++
			at := t + time.Duration(i)*10*time.Microsecond
			tsv := clock(at)
			p := wirePkt{fromCli: fromCli, seq: g.seq, ack: rcvISN, flags: 0x18, win: 502, payload: g.n, ts: ts, tsval: tsv, tsecr: rcvTSecr}
			if senderLocal {
				sentBurst = append(sentBurst, p)
			}
			wire := hdr + optLen + g.n
			if s.drop != nil && s.drop(g.seq, wire, g.tx) {
				continue
			}
			if s.scramble != nil && s.scramble(g.seq) {
				p.tsval -= 1 << 20
			}
			if !senderLocal {
				s.capture(p, at)
			}
			// The receiver: PAWS, then the window, then reassembly.
			accept := true
			if ts && tsRecent != 0 && int32(p.tsval-tsRecent) < 0 {
				accept = false
			}
			if int(g.seq-readPtr)+g.n > s.rcvBuf {
				accept = false
			}
			if accept {
				if g.seq == rcvNxt && ts {
					tsRecent = p.tsval
				}
				if int32(g.seq-rcvNxt) >= 0 {
					ooo[g.seq] = g.n
				}
				for {
					n, ok := ooo[rcvNxt]
					if !ok {
						break
					}
					delete(ooo, rcvNxt)
					rcvNxt += uint32(n)
				}
			}
			win = uint16(min((s.rcvBuf-int(rcvNxt-readPtr))>>rcvShift, 0xffff))
			a := wirePkt{fromCli: !fromCli, seq: rcvISN, ack: rcvNxt, flags: 0x10, win: win, ts: ts, tsval: clock(at + s.oneWay), tsecr: tsRecent}
			if s.sack && len(ooo) > 0 {
				var keys []uint32
				for k := range ooo {
					keys = append(keys, k)
				}
				sort.Slice(keys, func(i, j int) bool { return keys[i]-rcvNxt < keys[j]-rcvNxt })
				l, r := keys[0], keys[0]+uint32(ooo[keys[0]])
				for _, k := range keys[1:] {
					if k == r {
						r += uint32(ooo[k])
					}
				}
				a.sack = [][2]uint32{{l + s.sackOffset, r + s.sackOffset}}
			}
			acks = append(acks, a)
			_ = at
		}
		if senderLocal {
			s.captureBurst(sentBurst, t, payloadMax)
		}
		for i, a := range acks {
			sentAt := t + s.oneWay + time.Duration(i)*10*time.Microsecond
			s.capture(a, sentAt)
			rcvTSecr = a.tsval
		}
		// The sender reads the acks at t + rtt.
		before := una
		if len(acks) > 0 {
			last := acks[len(acks)-1]
			if int32(last.ack-una) > 0 {
				una = last.ack
			}
			for _, g := range segs[:next] {
				if int32(g.seq+uint32(g.n)-una) <= 0 {
					g.acked = true
				}
			}
			if s.sack {
				for _, a := range acks {
					for _, b := range a.sack {
						l, r := b[0]-s.sackOffset, b[1]-s.sackOffset
						for _, g := range segs[:next] {
							if int32(g.seq-l) >= 0 && int32(g.seq+uint32(g.n)-r) <= 0 {
								g.sacked = true
							}
						}
					}
				}
			}
		}
		progress = una != before
		if progress {
			cwnd = min(cwnd+len(acks), 60)
			idle = 0
			rto = 200 * time.Millisecond
			// Holes below the highest SACKed segment are lost.
			for _, g := range segs[:next] {
				if !g.acked && !g.sacked && g.tx > 0 {
					g.lost = true
					break
				}
			}
			t += rtt
			continue
		}
		// No progress: a retransmission timeout resends the first unacked.
		for _, g := range segs[:next] {
			if !g.acked {
				g.lost = true
				break
			}
		}
		cwnd = max(1, cwnd/2)
		t += rto
		rto *= 2
		idle++
	}
	if s.giveUp && una != sndISN+uint32(s.bytes) {
		sndNxt := sndISN
		for _, g := range segs[:next] {
			sndNxt += uint32(g.n)
		}
		s.capture(wirePkt{fromCli: !fromCli, seq: rcvISN, ack: rcvNxt, flags: 0x11, win: win}, t)
		s.capture(wirePkt{fromCli: fromCli, seq: sndNxt, ack: rcvISN + 1, flags: 0x10, win: 502}, t+s.oneWay)
		s.capture(wirePkt{fromCli: fromCli, seq: sndNxt, ack: rcvISN + 1, flags: 0x14, win: 502}, t+s.oneWay+10*time.Millisecond)
	}
	if una == sndISN+uint32(s.bytes) {
		fin := wirePkt{fromCli: fromCli, seq: una, ack: rcvISN, flags: 0x11, win: 502}
		s.capture(fin, t)
		s.capture(wirePkt{fromCli: !fromCli, seq: rcvISN, ack: una + 1, flags: 0x11, win: win}, t+s.oneWay)
		s.capture(wirePkt{fromCli: fromCli, seq: una + 1, ack: rcvISN + 1, flags: 0x10, win: 502}, t+2*s.oneWay)
	}
	return s.out
}

// captureBurst records what the sending host's capture shows: with TSO,
// consecutive new segments as one super-segment.
func (s *sim) captureBurst(ps []wirePkt, t time.Duration, payloadMax int) {
	for i := 0; i < len(ps); {
		p := ps[i]
		j := i + 1
		if s.tso {
			for j < len(ps) && ps[j].seq == p.seq+uint32(p.payload) && p.payload+ps[j].payload <= 16*payloadMax {
				p.payload += ps[j].payload
				j++
			}
		}
		s.capture(p, t+time.Duration(i)*10*time.Microsecond)
		i = j
	}
}

// link types for the writers
const (
	wEthernet = iota
	wVLAN
	wSLL
	wSLL2
	wRaw
)

type writeOpts struct {
	link int
	snap int
	dup  map[int]bool // packet indexes written twice
	swap map[int]bool // packet index i written after i+1
}

// pcapBytes writes packets as a capture file.
func pcapBytes(t testing.TB, s *sim, pkts []wirePkt, wo writeOpts) []byte {
	t.Helper()
	sort.SliceStable(pkts, func(i, j int) bool { return pkts[i].t < pkts[j].t })
	order := make([]int, len(pkts))
	for i := range order {
		order[i] = i
	}
	for i := 0; i+1 < len(order); i++ {
		if wo.swap[i] {
			order[i], order[i+1] = order[i+1], order[i]
			i++
		}
	}
	var buf bytes.Buffer
	var write func(ci gopacket.CaptureInfo, b []byte) error
	snap := wo.snap
	if snap == 0 {
		snap = 262144
	}
	lt := map[int]uint32{wEthernet: 1, wVLAN: 1, wSLL: 113, wSLL2: 276, wRaw: 101}[wo.link]
	{
		hdr := make([]byte, 24)
		binary.LittleEndian.PutUint32(hdr, 0xa1b2c3d4)
		binary.LittleEndian.PutUint16(hdr[4:], 2)
		binary.LittleEndian.PutUint16(hdr[6:], 4)
		binary.LittleEndian.PutUint32(hdr[16:], uint32(snap))
		binary.LittleEndian.PutUint32(hdr[20:], lt)
		buf.Write(hdr)
		write = pcapgo.NewWriter(&buf).WritePacket
	}
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for k, i := range order {
		p := pkts[i]
		frame := s.frame(p, wo.link)
		ci := gopacket.CaptureInfo{Timestamp: base.Add(p.t), Length: len(frame), CaptureLength: min(len(frame), snap)}
		n := 1
		if wo.dup[k] {
			n = 2
		}
		for ; n > 0; n-- {
			if err := write(ci, frame[:ci.CaptureLength]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return buf.Bytes()
}

// ngBytes is pcapBytes for pcapng (the writer must be flushed first).
func ngBytes(t testing.TB, s *sim, pkts []wirePkt, wo writeOpts) []byte {
	var out []byte
	func() {
		sort.SliceStable(pkts, func(i, j int) bool { return pkts[i].t < pkts[j].t })
		var buf bytes.Buffer
		lt := map[int]uint32{wEthernet: 1, wVLAN: 1, wSLL: 113, wSLL2: 276, wRaw: 101}[wo.link]
		w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{LinkType: layers.LinkType(lt), SnapLength: 262144}, pcapgo.NgWriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
		for _, p := range pkts {
			frame := s.frame(p, wo.link)
			ci := gopacket.CaptureInfo{Timestamp: base.Add(p.t), Length: len(frame), CaptureLength: len(frame)}
			if err := w.WritePacket(ci, frame); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		out = buf.Bytes()
	}()
	return out
}

// frame builds the link-layer frame of p.
func (s *sim) frame(p wirePkt, link int) []byte {
	ip := s.ipPacket(p)
	var l []byte
	etype := uint16(0x0800)
	if s.v6 {
		etype = 0x86dd
	}
	switch link {
	case wEthernet:
		l = make([]byte, 14)
		binary.BigEndian.PutUint16(l[12:], etype)
	case wVLAN:
		l = make([]byte, 18)
		binary.BigEndian.PutUint16(l[12:], 0x8100)
		binary.BigEndian.PutUint16(l[14:], 42)
		binary.BigEndian.PutUint16(l[16:], etype)
	case wSLL:
		l = make([]byte, 16)
		binary.BigEndian.PutUint16(l[14:], etype)
	case wSLL2:
		l = make([]byte, 20)
		binary.BigEndian.PutUint16(l[0:], etype)
	}
	return append(l, ip...)
}

// ipPacket builds the IP packet with a correct TCP checksum (or a partial
// or bad one when p says so).
func (s *sim) ipPacket(p wirePkt) []byte {
	cli, srv := cliV4, srvV4
	if s.v6 {
		cli, srv = cliV6, srvV6
	}
	if s.swapAddrs {
		cli, srv = srv, cli
	}
	src, dst := cli, srv
	sp, dp := s.cliPort, s.port
	if !p.fromCli {
		src, dst, sp, dp = srv, cli, dp, sp
	}
	var opts []byte
	if p.mss > 0 {
		opts = append(opts, 2, 4, byte(p.mss>>8), byte(p.mss))
	}
	if p.sackOK {
		opts = append(opts, 4, 2)
	}
	if p.ts {
		o := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
		if p.flags&0x02 != 0 {
			o = o[2:]
			o = append(o[:0:0], o...)
		}
		i := len(o) - 8
		binary.BigEndian.PutUint32(o[i:], p.tsval)
		binary.BigEndian.PutUint32(o[i+4:], p.tsecr)
		opts = append(opts, o...)
	}
	if p.ws >= 0 && p.flags&0x02 != 0 {
		opts = append(opts, 1, 3, 3, byte(p.ws))
	}
	for _, b := range p.sack {
		if len(opts) == 0 || len(opts)%4 != 0 {
			for len(opts)%4 != 2 {
				opts = append(opts, 1)
			}
		} else {
			opts = append(opts, 1, 1)
		}
		o := make([]byte, 10)
		o[0], o[1] = 5, 10
		binary.BigEndian.PutUint32(o[2:], b[0])
		binary.BigEndian.PutUint32(o[6:], b[1])
		opts = append(opts, o...)
	}
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	tcp := make([]byte, 20+len(opts)+p.payload)
	binary.BigEndian.PutUint16(tcp[0:], sp)
	binary.BigEndian.PutUint16(tcp[2:], dp)
	binary.BigEndian.PutUint32(tcp[4:], p.seq)
	binary.BigEndian.PutUint32(tcp[8:], p.ack)
	tcp[12] = byte((20 + len(opts)) / 4 << 4)
	tcp[13] = p.flags
	binary.BigEndian.PutUint16(tcp[14:], p.win)
	copy(tcp[20:], opts)
	for i := 20 + len(opts); i < len(tcp); i++ {
		tcp[i] = byte(i)
	}
	var ip []byte
	if s.v6 {
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = 6, p.ttl
		a, b := src.As16(), dst.As16()
		copy(ip[8:], a[:])
		copy(ip[24:], b[:])
	} else {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(min(20+len(tcp), 0xffff)))
		binary.BigEndian.PutUint16(ip[4:], uint16(p.seq^p.tsval))
		ip[6] = 0x40
		ip[8], ip[9] = p.ttl, 6
		a, b := src.As4(), dst.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], b[:])
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip, 0)))
	}
	var ph uint64
	if s.v6 {
		ph = sum16(ip[8:40], 0)
	} else {
		ph = sum16(ip[12:20], 0)
	}
	ph += 6 + uint64(len(tcp))
	switch {
	case p.partial:
		binary.BigEndian.PutUint16(tcp[16:], fold(ph))
	default:
		binary.BigEndian.PutUint16(tcp[16:], ^fold(sum16(tcp, ph)))
		if p.badsum {
			tcp[16] ^= 0x5a
		}
	}
	return append(ip, tcp...)
}

// randomDrop drops data segments with probability p, reproducibly.
func randomDrop(p float64, seed int64) func(uint32, int, int) bool {
	r := rand.New(rand.NewSource(seed))
	return func(uint32, int, int) bool { return r.Float64() < p }
}

func sortSlice[T any](s []T, less func(i, j int) bool) { sort.SliceStable(s, less) }

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// sum16 and fold compute checksums for the simulator's packets (RFC 1071),
// independently of the code under test.
func sum16(b []byte, s uint64) uint64 {
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	return s
}

func fold(s uint64) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
