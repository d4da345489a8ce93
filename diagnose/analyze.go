package diagnose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Defaults for Options.
const (
	DefaultMaxConns    = 16384
	DefaultIdleTimeout = 5 * time.Minute
	maxPeers           = 65536
	maxAggregated      = 4096
	sweepEvery         = 4096
)

// Options configures Diagnose.
type Options struct {
	// Domain names the peer in the proposed policy file; empty: the peer's
	// address as a /32 or /128 prefix. It must be a name config.CheckDomain
	// accepts (the command checks it), or the policy will not load.
	Domain string
	// Local lists the capturing host's addresses, overriding the inference
	// of the vantage point.
	Local []netip.Prefix
	// MaxConns bounds the connections analysed at once; the least recently
	// active one is finished early (and counted) to make room.
	MaxConns int
	// IdleTimeout finishes a connection idle this long in capture time.
	IdleTimeout time.Duration
	// Now is when the report is made (the proposed policy expires 90 days
	// later); zero: time.Now().
	Now time.Time
}

// Diagnose reads a pcap or pcapng capture from r and analyses every TCP
// connection in it. A *CorruptError says where the file could not be read;
// a file cut off inside its last record is analysed up to there and gets a
// warning instead.
func Diagnose(r io.Reader, opt Options) (*Report, error) {
	cp, err := openCapture(r)
	if err != nil {
		return nil, err
	}
	a := newAnalyzer(opt)
	a.rep.Format = cp.format
	var s segment
	for {
		data, ci, link, err := cp.next(a.pkt)
		if err == io.EOF {
			break
		}
		if err != nil {
			var ce *CorruptError
			if cp.truncatedTail && errors.As(err, &ce) {
				a.rep.Warnings = append(a.rep.Warnings, fmt.Sprintf("the file ends inside a packet record at byte offset %d (cut short while being written?): analysed the %d packets before it", ce.Offset, a.pkt))
				break
			}
			return nil, err
		}
		a.pkt++
		a.now = ci.Timestamp.UnixNano()
		if a.pkt == 1 {
			a.start = a.now
		}
		ip, hdr := linkPayload(link, data)
		if ip == nil {
			a.rep.NonTCP++
			continue
		}
		if ci.CaptureLength < ci.Length {
			a.rep.Snapped++
		}
		switch decode(ip, ci.Length-hdr, &s) {
		case kindTCP:
			a.rep.TCPSegments++
			a.segment(&s)
		case kindTruncated:
			a.rep.TruncatedHeaders++
		case kindBadLength:
			a.rep.BadLength++
		case kindUnreachable:
			a.rep.NonTCP++
			if ps := a.peer(s.tooBigFor); ps != nil {
				ps.unreachable++
			}
		case kindTooBig:
			a.rep.ICMPTooBig++
			a.tooBig(&s)
		default:
			a.rep.NonTCP++
		}
		if a.pkt%sweepEvery == 0 {
			a.sweep()
		}
	}
	a.rep.Packets = a.pkt
	a.finishAll()
	return a.report(), nil
}

// DiagnoseBytes is Diagnose over a capture held in memory.
func DiagnoseBytes(b []byte, opt Options) (*Report, error) {
	return Diagnose(bytes.NewReader(b), opt)
}

type analyzer struct {
	opt        Options
	conns      []conn
	index      map[connKey]int32
	free       []int32
	head, tail int32
	rings      []*segRing
	pkt        uint64
	now, start int64
	dups       uint64
	rep        *Report
	peers      map[[16]byte]*peerStat
	votes      map[netip.Addr]int
	agg        map[aggKey]*rawFinding
	aggOrder   []*rawFinding
	notes      map[string]bool
}

func newAnalyzer(opt Options) *analyzer {
	if opt.MaxConns <= 0 {
		opt.MaxConns = DefaultMaxConns
	}
	if opt.IdleTimeout <= 0 {
		opt.IdleTimeout = DefaultIdleTimeout
	}
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	return &analyzer{
		opt:   opt,
		index: make(map[connKey]int32),
		head:  -1, tail: -1,
		rep:   &Report{},
		peers: make(map[[16]byte]*peerStat),
		votes: make(map[netip.Addr]int),
		agg:   make(map[aggKey]*rawFinding),
		notes: make(map[string]bool),
	}
}

// segment finds the segment's connection and updates it.
func (a *analyzer) segment(s *segment) {
	sp, dp := s.tcp.SrcPort(), s.tcp.DstPort()
	var k connKey
	d := 0
	if c := bytes.Compare(s.src[:], s.dst[:]); c < 0 || c == 0 && sp <= dp {
		k = connKey{a: s.src, b: s.dst, pa: sp, pb: dp}
	} else {
		k = connKey{a: s.dst, b: s.src, pa: dp, pb: sp}
		d = 1
	}
	idx, ok := a.index[k]
	if !ok {
		idx = a.alloc(k, s.v6)
	}
	c := &a.conns[idx]
	a.touch(idx)
	flags := s.tcp.Flags()
	if flags&(normalize.FlagSYN|normalize.FlagACK) == normalize.FlagSYN {
		h := &c.h[d]
		// The 4-tuple reused by a new connection: finish the old one.
		if h.synSeen && h.isn != s.tcp.Seq() && (c.synAcked || h.dataSegs > 0 || c.h[1-d].dataSegs > 0) {
			a.finish(c)
			a.initConn(c, k, s.v6)
		}
	}
	c.lastTime = a.now
	a.update(c, d, s)
}

func (a *analyzer) initConn(c *conn, k connKey, v6 bool) {
	c.reset()
	c.key, c.v6 = k, v6
	c.addr = [2][16]byte{k.a, k.b}
	c.port = [2]uint16{k.pa, k.pb}
	c.firstPkt, c.firstTime, c.lastTime = a.pkt, a.now, a.now
	c.lastSide = -1
}

// alloc makes room for a new connection, evicting the least recently active
// one when the table is full.
func (a *analyzer) alloc(k connKey, v6 bool) int32 {
	var idx int32
	switch {
	case len(a.free) > 0:
		idx = a.free[len(a.free)-1]
		a.free = a.free[:len(a.free)-1]
	case len(a.conns) < a.opt.MaxConns:
		a.conns = append(a.conns, conn{prev: -1, next: -1})
		idx = int32(len(a.conns) - 1)
	default:
		idx = a.tail
		old := &a.conns[idx]
		if !old.closed() {
			a.rep.Evicted++
		}
		a.finish(old)
		a.unlink(idx)
		delete(a.index, old.key)
	}
	c := &a.conns[idx]
	c.used = true
	a.initConn(c, k, v6)
	a.index[k] = idx
	a.linkFront(idx)
	a.rep.Connections++
	return idx
}

func (c *conn) closed() bool {
	return c.h[0].rst || c.h[1].rst || c.h[0].fin && c.h[1].fin
}

func (a *analyzer) linkFront(i int32) {
	c := &a.conns[i]
	c.prev, c.next = -1, a.head
	if a.head >= 0 {
		a.conns[a.head].prev = i
	}
	a.head = i
	if a.tail < 0 {
		a.tail = i
	}
}

func (a *analyzer) unlink(i int32) {
	c := &a.conns[i]
	if c.prev >= 0 {
		a.conns[c.prev].next = c.next
	} else {
		a.head = c.next
	}
	if c.next >= 0 {
		a.conns[c.next].prev = c.prev
	} else {
		a.tail = c.prev
	}
	c.prev, c.next = -1, -1
}

func (a *analyzer) touch(i int32) {
	if a.head == i {
		return
	}
	a.unlink(i)
	a.linkFront(i)
}

// sweep finishes connections idle longer than the idle timeout.
func (a *analyzer) sweep() {
	limit := a.now - int64(a.opt.IdleTimeout)
	for a.tail >= 0 && a.conns[a.tail].lastTime < limit {
		i := a.tail
		c := &a.conns[i]
		a.finish(c)
		a.unlink(i)
		delete(a.index, c.key)
		c.used = false
		a.free = append(a.free, i)
	}
}

func (a *analyzer) finishAll() {
	for i := a.head; i >= 0; i = a.conns[i].next {
		a.finish(&a.conns[i])
	}
	a.head, a.tail = -1, -1
}

func (a *analyzer) tooBig(s *segment) {
	ps := a.peer(s.tooBigFor)
	if ps != nil {
		ps.tooBig++
		if ps.tooBigMTU == 0 || s.tooBigMTU < ps.tooBigMTU {
			ps.tooBigMTU = s.tooBigMTU
		}
	}
}

// peer returns the statistics of a remote address, or nil when too many
// addresses are tracked already.
func (a *analyzer) peer(addr [16]byte) *peerStat {
	if ps, ok := a.peers[addr]; ok {
		return ps
	}
	if len(a.peers) >= maxPeers {
		return nil
	}
	ps := &peerStat{}
	a.peers[addr] = ps
	return ps
}

func (c *conn) netAddr(d int) netip.Addr {
	if c.v6 {
		return netip.AddrFrom16(c.addr[d])
	}
	return netip.AddrFrom4([4]byte(c.addr[d][:4]))
}
