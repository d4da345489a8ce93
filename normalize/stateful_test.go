package normalize

import (
	"testing"
)

const testMask = 0xff000000

func TestNewMarkBits(t *testing.T) {
	tests := []struct {
		name string
		mask uint32
		ok   bool
	}{
		{"default", 0xff000000, true},
		{"low byte", 0x000000ff, true},
		{"wide", 0x0fff0000, true},
		{"zero", 0, false},
		{"seven bits", 0x7f000000, false},
		{"holes", 0xff0f0000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewMarkBits(tt.mask); (err == nil) != tt.ok {
				t.Errorf("NewMarkBits(%#x) err = %v, want ok %v", tt.mask, err, tt.ok)
			}
		})
	}
}

// handshake runs a SYN and SYN-ACK with the given window shifts through n
// and returns the SYN-ACK's result.
func handshake4(t *testing.T, n *Normalizer, tab Table, synWS, synAckWS byte) Result {
	t.Helper()
	syn := build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 40000, dport: 25, syn: true,
		options: []byte{2, 4, 5, 0xb4, 8, 10, 0, 0, 0, 100, 0, 0, 0, 0, 1, 3, 3, synWS}})
	n.Packet(syn, tab, Meta{})
	synack := build(t, seg{src: "198.18.7.2", dst: "198.18.7.1", sport: 25, dport: 40000, syn: true, ack: true,
		options: []byte{2, 4, 5, 0xb4, 8, 10, 0, 0, 0x10, 0, 0, 0, 0, 100, 1, 3, 3, synAckWS}})
	return n.Packet(synack, tab, Meta{Mark: 0x5})
}

func TestClampMarksFlow(t *testing.T) {
	tests := []struct {
		name       string
		dir        Direction
		syn, ack   byte
		want       bool
		wantFields uint32
	}{
		{name: "outbound: local client shift 7 over 2", dir: Outbound, syn: 7, ack: 9, want: true, wantFields: 5 | fieldLocalClient},
		{name: "outbound: shift above 14 counts as 14", dir: Outbound, syn: 255, ack: 7, want: true, wantFields: 12 | fieldLocalClient},
		{name: "outbound: local shift within the limit", dir: Outbound, syn: 2, ack: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := &Policy{Direction: tt.dir, WindowScale: WSClamp, WindowScaleMax: 2}
			n := New(Config{MarkMask: testMask})
			r := handshake4(t, n, table(pol, remote), tt.syn, tt.ack)
			if r.SetMark != tt.want {
				t.Fatalf("SetMark = %v, want %v (%v)", r.SetMark, tt.want, r.Why)
			}
			if !tt.want {
				return
			}
			if got := n.marks.get(r.Mark); got != tt.wantFields {
				t.Errorf("fields = %#x, want %#x", got, tt.wantFields)
			}
			if r.Mark&^testMask != 0x5 {
				t.Errorf("mark %#x lost the packet's other bits", r.Mark)
			}
		})
	}
	t.Run("log-only sets no mark", func(t *testing.T) {
		pol := &Policy{Direction: Both, Mode: LogOnly, WindowScale: WSClamp, WindowScaleMax: 2}
		if r := handshake4(t, New(Config{MarkMask: testMask}), table(pol, remote), 7, 7); r.SetMark {
			t.Errorf("log-only policy marked the flow")
		}
	})
	t.Run("no mask, no stateful actions", func(t *testing.T) {
		pol := &Policy{Direction: Both, WindowScale: WSClamp, WindowScaleMax: 2}
		if r := handshake4(t, New(Config{}), table(pol, remote), 7, 7); r.SetMark {
			t.Errorf("marked without a mask")
		}
	})
}

func TestWindowRewrite(t *testing.T) {
	n := New(Config{MarkMask: testMask})
	fields := uint32(5 | fieldLocalClient)
	data := func(src, dst string, win uint16) []byte {
		return build(t, seg{src: src, dst: dst, sport: 40000, dport: 25, ack: true, window: win, payload: []byte("x")})
	}
	tests := []struct {
		name    string
		pkt     []byte
		mark    uint32
		wantWin uint16
	}{
		{"local segment scaled up", data("198.18.7.1", "198.18.7.2", 100), n.marks.put(fields | fieldOriginal), 3200},
		{"capped at 0xffff", data("198.18.7.1", "198.18.7.2", 5000), n.marks.put(fields | fieldOriginal), 0xffff},
		{"remote segment left alone", data("198.18.7.2", "198.18.7.1", 100), n.marks.put(fields), 100},
		{"inbound: local server's reply rewritten", data("198.18.7.2", "198.18.7.1", 100), n.marks.put(5), 3200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := n.Packet(tt.pkt, nil, Meta{Mark: tt.mark})
			tcp := tcpOf(t, tt.pkt)
			if tcp.Window() != tt.wantWin {
				t.Errorf("window = %d, want %d", tcp.Window(), tt.wantWin)
			}
			if r.Modified != (tt.wantWin != 100 && tt.wantWin != 0) && tt.wantWin != 100 {
				t.Errorf("Modified = %v", r.Modified)
			}
			if !verifies(t, tt.pkt) {
				t.Errorf("checksum does not verify")
			}
		})
	}
}

// TestRepairClock drives the repair state with a remote clock at 1000 Hz and
// a path that pushes some values into the past and some into the future.
func TestRepairClock(t *testing.T) {
	var ft flowTable
	ft.init(64, 300e9)
	f := Flow{ClientPort: 1, ServerPort: 25}
	const ms = int64(1e6)
	ft.seed(f, 1000, 0)
	tests := []struct {
		name string
		at   int64
		v    uint32
		want uint32
	}{
		{"in step", 10 * ms, 1010, 1010},
		{"same value again", 11 * ms, 1010, 1010},
		{"into the past", 12 * ms, 900, 1010},
		{"far future", 13 * ms, 1010 + 1<<30, 1010},
		{"in step after the fault", 20 * ms, 1020, 1020},
		{"wrapped past", 21 * ms, 1020 + 1<<31 + 5, 1020},
		{"learned rate: 300 ms later", 300 * ms, 1300, 1300},
	}
	for _, tt := range tests {
		if got := ft.repair(f, tt.v, tt.at, 1000000); got != tt.want {
			t.Errorf("%s: repair(%d) = %d, want %d", tt.name, tt.v, got, tt.want)
		}
	}
	// A clock that really jumped: consistent values ahead of hi.
	jump := uint32(5_000_000)
	var got uint32
	for i := 0; i < tsReseedRun; i++ {
		got = ft.repair(f, jump+uint32(i), 301*ms+int64(i)*ms, 1000000)
	}
	if got != jump+tsReseedRun-1 {
		t.Errorf("after a consistent jump: %d, want re-seeded at %d", got, jump+tsReseedRun-1)
	}
}

func TestRepairSegments(t *testing.T) {
	n := New(Config{MarkMask: testMask})
	pol := &Policy{Direction: Outbound, Timestamps: TSRepair}
	r := handshake4(t, n, table(pol, remote), 7, 7)
	if !r.SetMark || !r.HasSeed || r.Seed != 0x1000 {
		t.Fatalf("SYN-ACK result %+v: want mark and seed 0x1000", r)
	}
	n.SeedRepair(r.Flow, r.Seed, 0)
	remoteSeg := func(tsval uint32, fin bool) []byte {
		return build(t, seg{src: "198.18.7.2", dst: "198.18.7.1", sport: 25, dport: 40000, ack: true,
			options: []byte{1, 1, 8, 10, byte(tsval >> 24), byte(tsval >> 16), byte(tsval >> 8), byte(tsval), 0, 0, 0, 100},
			payload: []byte("data")})
	}
	mark := r.Mark // reply direction: no Original bit
	pkt := remoteSeg(0x0f00, false)
	res := n.Packet(pkt, nil, Meta{Mark: mark, Now: 1e6})
	if res.Why.Changes != ChTSRepaired || res.Why.TSNew != 0x1000 {
		t.Fatalf("past TSval: %v", res.Why)
	}
	var o optionSummary
	summarize(tcpOf(t, pkt).Options(), &o)
	if optTSval(o.ts) != 0x1000 || optTSecr(o.ts) != 100 || !verifies(t, pkt) {
		t.Errorf("rewritten TSval %#x TSecr %d verifies %v", optTSval(o.ts), optTSecr(o.ts), verifies(t, pkt))
	}
	// The local host's own segments are not touched.
	local := build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 40000, dport: 25, ack: true,
		options: []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}})
	if res := n.Packet(local, nil, Meta{Mark: mark | n.marks.Original(), Now: 2e6}); res.Modified {
		t.Errorf("local segment modified: %v", res.Why)
	}
}

// TestRepairLearnsEcho: a worker that never saw the handshake (a restart)
// seeds from the remote's first segment it sees. When that one carries a
// TSval scrambled into the past, the local host rejects it and echoes the
// newest TSval it accepted; from then on the remote's values are never
// forwarded below that echo, so the flow recovers.
func TestRepairLearnsEcho(t *testing.T) {
	n := New(Config{MarkMask: testMask})
	mark := n.marks.put(fieldRepair | fieldLocalClient) // outbound, reply direction: the remote's segments
	remoteSeg := func(tsval uint32) []byte {
		return build(t, seg{src: "198.18.7.2", dst: "198.18.7.1", sport: 25, dport: 40000, ack: true,
			options: []byte{1, 1, 8, 10, byte(tsval >> 24), byte(tsval >> 16), byte(tsval >> 8), byte(tsval), 0, 0, 0, 100},
			payload: []byte("data")})
	}
	localSeg := func(tsecr uint32) []byte {
		return build(t, seg{src: "198.18.7.1", dst: "198.18.7.2", sport: 40000, dport: 25, ack: true,
			options: []byte{1, 1, 8, 10, 0, 0, 0, 101, byte(tsecr >> 24), byte(tsecr >> 16), byte(tsecr >> 8), byte(tsecr)}})
	}
	const real, scrambled = 5_000_000, 5_000_000 - 1<<20
	steps := []struct {
		name   string
		pkt    []byte
		local  bool
		wantTS uint32 // TSval forwarded; 0 for the local host's segments
	}{
		{"echo before any state: ignored", localSeg(real - 10), true, 0},
		{"first remote segment seeds, scrambled", remoteSeg(scrambled), false, scrambled},
		{"local host echoes what it accepted", localSeg(real - 10), true, 0},
		{"scrambled retransmission lifted to the echo", remoteSeg(scrambled + 5), false, real - 10},
		{"real value forwarded", remoteSeg(real), false, real},
		{"older echo changes nothing", localSeg(real - 500), true, 0},
		{"scrambled again: the newest forwarded", remoteSeg(scrambled + 9), false, real},
	}
	for i, s := range steps {
		m := Meta{Mark: mark, Now: int64(i+1) * 1e6}
		if s.local {
			m.Mark |= n.marks.Original()
		}
		orig := append([]byte(nil), s.pkt...)
		r := n.Packet(s.pkt, nil, m)
		if s.local {
			if r.Modified || string(orig) != string(s.pkt) {
				t.Errorf("%s: local segment modified: %v", s.name, r.Why)
			}
			continue
		}
		var o optionSummary
		summarize(tcpOf(t, s.pkt).Options(), &o)
		if got := optTSval(o.ts); got != s.wantTS || !verifies(t, s.pkt) {
			t.Errorf("%s: forwarded TSval %d (verifies %v), want %d", s.name, got, verifies(t, s.pkt), s.wantTS)
		}
	}
}
