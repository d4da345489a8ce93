package diagnose

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/normalize"
)

var testNow = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)

// labFile is the lab capture TestLab records for the case name (lab_test.go).
func labFile(name string) string { return filepath.Join("testdata", "lab-"+name+".pcap") }

func diag(t *testing.T, capture []byte, opt Options) *Report {
	t.Helper()
	if opt.Now.IsZero() {
		opt.Now = testNow
	}
	rep, err := DiagnoseBytes(capture, opt)
	if err != nil {
		t.Fatalf("Diagnose: %v", err)
	}
	var text, js bytes.Buffer
	if err := rep.WriteText(&text, "test.pcap"); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		t.Logf("\n%s", text.String())
	}
	for _, p := range rep.Policies {
		checkPolicy(t, p)
	}
	return rep
}

// checkPolicy loads the proposed policy file with the config package.
func checkPolicy(t *testing.T, p Policy) {
	t.Helper()
	if err := loadPolicies(t, []Policy{p}); err != nil {
		t.Errorf("proposed policy does not load: %v\n%s", err, p.Text)
	}
}

// loadPolicies writes the policy files into one policy_dir and loads it.
func loadPolicies(t *testing.T, ps []Policy) error {
	t.Helper()
	dir := t.TempDir()
	pd := filepath.Join(dir, "policies.d")
	if err := os.Mkdir(pd, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if err := os.WriteFile(filepath.Join(pd, p.File), []byte(p.Text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(dir, "tcpnorm.toml")
	if err := os.WriteFile(main, []byte("policy_dir = \"policies.d\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := config.Load(main)
	return err
}

// summary is what the tests compare: the classes found, with their
// vantage and fix.
type got struct {
	Class   Class
	Vantage Vantage
	Fix     Fix
}

func summarize(rep *Report) []got {
	var g []got
	for _, f := range rep.Findings {
		x := got{Class: f.Class, Vantage: f.Vantage}
		if f.Fix != nil {
			x.Fix = *f.Fix
		}
		g = append(g, x)
	}
	return g
}

func TestClasses(t *testing.T) {
	boolp := func(b bool) *bool { return &b }
	tests := []struct {
		name    string
		setup   func(s *sim)
		verdict Verdict
		want    []got
	}{
		{name: "healthy upload at the client", setup: func(s *sim) { s.upload, s.atClient = true, true }, verdict: VerdictHealthy},
		{name: "healthy upload at the server", setup: func(s *sim) { s.upload, s.atClient = true, false }, verdict: VerdictHealthy},
		{name: "healthy download at the client, IPv6", setup: func(s *sim) { s.v6, s.atClient = true, true }, verdict: VerdictHealthy},
		{name: "healthy upload with TSO and offload", setup: func(s *sim) { s.upload, s.atClient, s.tso, s.partial = true, true, true, true }, verdict: VerdictHealthy},
		{name: "healthy without timestamps or scaling", setup: func(s *sim) {
			s.upload, s.atClient, s.ts, s.cliWS = true, true, false, -1
		}, verdict: VerdictHealthy},
		{name: "lossy upload at the client", setup: func(s *sim) {
			s.upload, s.atClient, s.drop = true, true, randomDrop(0.03, 1)
		}, verdict: VerdictNoOptionFault, want: []got{{Class: ClassLoss, Vantage: VantageSender}}},
		{name: "lossy upload at the server", setup: func(s *sim) {
			s.upload, s.atClient, s.drop = true, false, randomDrop(0.03, 2)
		}, verdict: VerdictNoOptionFault, want: []got{{Class: ClassLoss, Vantage: VantageReceiver}}},
		{name: "lossy download at the client, IPv6", setup: func(s *sim) {
			s.v6, s.atClient, s.drop = true, true, randomDrop(0.05, 3)
		}, verdict: VerdictNoOptionFault, want: []got{{Class: ClassLoss, Vantage: VantageReceiver}}},
		{name: "pmtu upload at the client", setup: func(s *sim) {
			s.upload, s.atClient, s.smallFirst = true, true, 3
			s.drop = func(_ uint32, wire, _ int) bool { return wire > 1280 }
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassPMTU, Vantage: VantageSender, Fix: Fix{MSSMax: 1240}}}},
		{name: "pmtu upload at the client with TSO, IPv6", setup: func(s *sim) {
			s.v6, s.upload, s.atClient, s.smallFirst, s.tso, s.partial = true, true, true, 3, true, true
			s.drop = func(_ uint32, wire, _ int) bool { return wire > 1280 }
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassPMTU, Vantage: VantageSender, Fix: Fix{MSSMax: 1220}}}},
		{name: "paws download at the client", setup: func(s *sim) {
			s.atClient = true
			s.scramble = func(seq uint32) bool { return (seq*2654435761)>>28 == 5 }
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassPAWS, Vantage: VantageReceiver, Fix: Fix{Timestamps: normalize.TSStrip}}}},
		{name: "paws download at the client, first data segment scrambled", setup: func(s *sim) {
			s.atClient = true
			s.scramble = func(seq uint32) bool { return seq == 5000001 }
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassPAWS, Vantage: VantageReceiver, Fix: Fix{Timestamps: normalize.TSStrip}}}},
		{name: "paws upload at the server", setup: func(s *sim) {
			s.upload, s.atClient = true, false
			s.scramble = func(seq uint32) bool { return (seq*2654435761)>>28 == 5 }
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassPAWS, Vantage: VantageReceiver, Fix: Fix{Timestamps: normalize.TSStrip}}}},
		{name: "wscale raised, upload at the client", setup: func(s *sim) {
			s.upload, s.atClient, s.srvWS, s.pathSrvWS, s.rcvBuf = true, true, 2, 14, 32768
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassWindowScale, Vantage: VantageSender, Fix: Fix{WindowScale: normalize.WSStrip}}}},
		{name: "wscale raised, upload at the server", setup: func(s *sim) {
			s.upload, s.atClient, s.srvWS, s.pathSrvWS, s.rcvBuf = true, false, 2, 14, 32768
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassWindowScale, Vantage: VantageReceiver, Fix: Fix{WindowScale: normalize.WSStrip}}}},
		{name: "wscale in SYN-ACK without one in the SYN: a note, nothing to strip", setup: func(s *sim) {
			s.upload, s.atClient, s.cliWS, s.srvWSAlone, s.bytes = true, true, -1, true, 20000
		}, verdict: VerdictHealthy},
		{name: "shift 0 in a SYN-ACK whose SYN had none: harmless", setup: func(s *sim) {
			s.upload, s.atClient, s.cliWS, s.srvWS, s.srvWSAlone, s.bytes = true, true, -1, 0, true, 20000
		}, verdict: VerdictHealthy},
		{name: "sender ignoring flow control, no scaling: overrun, no policy", setup: func(s *sim) {
			s.upload, s.atClient, s.cliWS, s.rcvBuf, s.ignoreWnd = true, true, -1, 16384, true
		}, verdict: VerdictNoOptionFault, want: []got{{Class: ClassOverrun, Vantage: VantageSender}}},
		// Both ends announce shift 7 and the receiver's windows are small;
		// the sender goes far beyond them. A larger shift would bound its
		// data, but nothing in the handshake gave it one.
		{name: "sender ignoring flow control, shift 7 both ways, at the sender: overrun, no policy", setup: func(s *sim) {
			s.upload, s.atClient, s.rcvBuf, s.ignoreWnd = true, true, 16384, true
		}, verdict: VerdictNoOptionFault, want: []got{{Class: ClassOverrun, Vantage: VantageSender}}},
		// The same seen by the receiver, and the transfer stalls: after
		// 300 kB nothing more arrives and the sender retransmits until the
		// capture ends.
		{name: "sender ignoring flow control, shift 7 both ways, at the receiver, stalled: overrun, no policy", setup: func(s *sim) {
			s.upload, s.atClient, s.rcvBuf, s.ignoreWnd = true, false, 16384, true
			s.drop = func(seq uint32, _, _ int) bool { return seq-1000001 >= 300_000 }
		}, verdict: VerdictNoOptionFault, want: []got{{Class: ClassOverrun, Vantage: VantageReceiver}}},
		// Mail coming in through a box that reads the receiver's window
		// field unscaled (503 bytes under shift 7): the dialogue passes,
		// every full-size segment of the body is dropped, and the sender's
		// ACK and RST show what it sent.
		{name: "body stalled at the receiver behind a window-limit box, IPv6", setup: func(s *sim) {
			s.v6, s.upload, s.atClient, s.rcvBuf, s.smallFirst, s.giveUp = true, true, false, 64384, 3, true
			s.drop = func(_ uint32, wire, _ int) bool { return wire > 600 }
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassWindowLimit, Vantage: VantageReceiver, Fix: Fix{WindowScale: normalize.WSClamp, WindowScaleMax: new(int), MSSMax: 1220}}}},
		// The same stall with a window field above the segment size: a
		// box reading it with any shift lets a full-size segment through,
		// so it is no window fault, and the receiver's view of a black
		// hole is only absence (pmtuFinding): nothing is reported.
		{name: "body stalled at the receiver, window field above the segment size", setup: func(s *sim) {
			s.v6, s.upload, s.atClient, s.rcvBuf, s.smallFirst, s.giveUp = true, true, false, 1<<20, 3, true
			s.drop = func(_ uint32, wire, _ int) bool { return wire > 600 }
		}, verdict: VerdictHealthy},
		{name: "broken sack, upload at the client", setup: func(s *sim) {
			s.upload, s.atClient, s.drop, s.sackOffset = true, true, randomDrop(0.03, 4), 0x40000000
		}, verdict: VerdictOptionFault, want: []got{{Class: ClassSACK, Vantage: VantageSender, Fix: Fix{SACKPermitted: true}}}},
		{name: "syn option black hole without comparison: suspected, no policy", setup: func(s *sim) {
			s.upload, s.atClient, s.synDropTS = true, true, true
		}, verdict: VerdictSuspected, want: []got{{Class: ClassSYNOption, Vantage: VantageClient}}},
		{name: "syn option black hole, no timestamps: healthy", setup: func(s *sim) {
			s.upload, s.atClient, s.synDropTS, s.cliTS = true, true, true, boolp(false)
		}, verdict: VerdictHealthy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSim()
			tt.setup(s)
			pkts := s.run()
			rep := diag(t, pcapBytes(t, s, pkts, writeOpts{}), Options{})
			if rep.Verdict != tt.verdict {
				t.Errorf("verdict = %q, want %q", rep.Verdict, tt.verdict)
			}
			if diff := cmp.Diff(tt.want, summarize(rep)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

// TestBodyStalledCaptureCut: the capture of a stalled incoming body stopped
// before the sender reset: one packet of the sender's (its ACK of the
// receiver's FIN here; in the lab its D-SACK of a reply the receiver sent
// again because the ACK rode on the dropped body) shows what it sent, and
// is enough.
func TestBodyStalledCaptureCut(t *testing.T) {
	s := newSim()
	s.v6, s.upload, s.atClient, s.rcvBuf, s.smallFirst, s.giveUp = true, true, false, 64384, 3, true
	s.drop = func(_ uint32, wire, _ int) bool { return wire > 600 }
	pkts := s.run()
	if last := pkts[len(pkts)-1]; last.flags&0x04 == 0 {
		t.Fatalf("the simulation did not end with the sender's RST: %+v", last)
	}
	rep := diag(t, pcapBytes(t, s, pkts[:len(pkts)-1], writeOpts{}), Options{})
	want := []got{{Class: ClassWindowLimit, Vantage: VantageReceiver, Fix: Fix{WindowScale: normalize.WSClamp, WindowScaleMax: new(int), MSSMax: 1220}}}
	if diff := cmp.Diff(want, summarize(rep)); diff != "" || rep.Verdict != VerdictOptionFault {
		t.Errorf("verdict %q; findings (-want +got):\n%s", rep.Verdict, diff)
	}
}

// TestSYNBlackHoleCompared: SYNs with timestamps unanswered, a later
// connection to the same peer without them answered.
func TestSYNBlackHoleCompared(t *testing.T) {
	a := newSim()
	a.upload, a.atClient, a.synDropTS = true, true, true
	pa := a.run()
	b := newSim()
	no := false
	b.upload, b.atClient, b.synDropTS, b.cliTS, b.cliPort, b.bytes = true, true, true, &no, 40001, 30000
	pb := b.run()
	for i := range pb {
		pb[i].t += 40 * time.Second
	}
	var buf []byte
	// Both connections in one file: the writer takes the client port per sim.
	buf = mergeCaptures(t, []*sim{a, b}, [][]wirePkt{pa, pb})
	rep := diag(t, buf, Options{Domain: "example.net"})
	want := []got{{Class: ClassSYNOption, Vantage: VantageClient, Fix: Fix{Timestamps: normalize.TSStrip}}}
	if diff := cmp.Diff(want, summarize(rep)); diff != "" {
		t.Fatalf("findings (-want +got):\n%s", diff)
	}
	if f := rep.Findings[0]; f.Confidence != High {
		t.Errorf("confidence = %q, want high", f.Confidence)
	}
	p := rep.Policies[0]
	for _, s := range []string{`domain = "example.net"`, "mx = true", `direction = "outbound"`, "ports = [25]", `timestamps = "strip"`, "expires = 2025-05-30T00:00:00Z"} {
		if !strings.Contains(p.Text, s) {
			t.Errorf("policy lacks %q:\n%s", s, p.Text)
		}
	}
}

// TestPolicyPerDirection: one peer whose outbound and inbound connections
// need different fixes gets two policy files with disjoint directions, and
// the two load together.
func TestPolicyPerDirection(t *testing.T) {
	// Outbound: 198.18.1.2 sends mail to 198.18.2.2 through a path-MTU
	// black hole.
	out := newSim()
	out.upload, out.atClient, out.smallFirst = true, true, 3
	out.drop = func(_ uint32, wire, _ int) bool { return wire > 1280 }
	po := out.run()
	// Inbound: 198.18.2.2 connects to 198.18.1.2 and sends mail whose
	// timestamps a box scrambles; captured on 198.18.1.2, the server.
	in := newSim()
	in.swapAddrs, in.upload, in.atClient, in.cliPort = true, true, false, 40100
	in.scramble = func(seq uint32) bool { return (seq*2654435761)>>28 == 5 }
	pi := in.run()
	for i := range pi {
		pi[i].t += 30 * time.Second
	}
	rep := diag(t, mergeCaptures(t, []*sim{out, in}, [][]wirePkt{po, pi}), Options{})
	if len(rep.Policies) != 2 {
		t.Fatalf("%d policies, want 2: %+v", len(rep.Policies), summarize(rep))
	}
	dirs := map[string]string{}
	for _, p := range rep.Policies {
		if p.Peer != srvV4.String() {
			t.Errorf("policy for %s, want %s", p.Peer, srvV4)
		}
		dirs[p.Direction.String()] = p.File
		if !strings.Contains(p.Text, `direction = "`+p.Direction.String()+`"`) {
			t.Errorf("policy %s lacks its direction:\n%s", p.File, p.Text)
		}
	}
	if dirs["outbound"] == "" || dirs["inbound"] == "" || dirs["outbound"] == dirs["inbound"] {
		t.Fatalf("policies %v, want one outbound and one inbound file", dirs)
	}
	if err := loadPolicies(t, rep.Policies); err != nil {
		t.Errorf("the two policies do not load together: %v", err)
	}
}

// mergeCaptures writes the packets of several simulated connections into one
// Ethernet pcap, in time order.
func mergeCaptures(t testing.TB, sims []*sim, pkts [][]wirePkt) []byte {
	t.Helper()
	var frames []struct {
		t time.Duration
		b []byte
	}
	for i, s := range sims {
		for _, p := range pkts[i] {
			frames = append(frames, struct {
				t time.Duration
				b []byte
			}{p.t, s.frame(p, wEthernet)})
		}
	}
	sortFrames := func(i, j int) bool { return frames[i].t < frames[j].t }
	sortSlice(frames, sortFrames)
	var buf bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr, 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	buf.Write(hdr)
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, f := range frames {
		ts := base.Add(f.t)
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec, uint32(ts.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(ts.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f.b)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f.b)))
		buf.Write(rec)
		buf.Write(f.b)
	}
	return buf.Bytes()
}

func TestFormats(t *testing.T) {
	s := newSim()
	s.upload, s.atClient = true, true
	s.smallFirst = 3
	s.drop = func(_ uint32, wire, _ int) bool { return wire > 1280 }
	pkts := s.run()
	tests := []struct {
		name string
		data []byte
	}{
		{name: "ethernet", data: pcapBytes(t, s, pkts, writeOpts{link: wEthernet})},
		{name: "vlan", data: pcapBytes(t, s, pkts, writeOpts{link: wVLAN})},
		{name: "sll", data: pcapBytes(t, s, pkts, writeOpts{link: wSLL})},
		{name: "sll2", data: pcapBytes(t, s, pkts, writeOpts{link: wSLL2})},
		{name: "raw", data: pcapBytes(t, s, pkts, writeOpts{link: wRaw})},
		{name: "snaplen 96", data: pcapBytes(t, s, pkts, writeOpts{snap: 96})},
		{name: "pcapng", data: ngBytes(t, s, pkts, writeOpts{link: wEthernet})},
		{name: "pcapng sll2", data: ngBytes(t, s, pkts, writeOpts{link: wSLL2})},
		{name: "duplicated packets", data: pcapBytes(t, s, pkts, writeOpts{dup: everyNth(len(pkts), 7)})},
		{name: "reordered packets", data: pcapBytes(t, s, pkts, writeOpts{swap: everyNth(len(pkts), 11)})},
	}
	want := []got{{Class: ClassPMTU, Vantage: VantageSender, Fix: Fix{MSSMax: 1240}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := diag(t, tt.data, Options{})
			if diff := cmp.Diff(want, summarize(rep)); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
			if rep.Connections != 1 {
				t.Errorf("connections = %d, want 1", rep.Connections)
			}
		})
	}
}

// TestCaptureArtefacts: a healthy transfer stays healthy with duplicated
// and reordered packets and a small snap length, from either end.
func TestCaptureArtefacts(t *testing.T) {
	for _, atClient := range []bool{true, false} {
		s := newSim()
		s.upload, s.atClient = true, atClient
		pkts := s.run()
		for _, wo := range []writeOpts{{dup: everyNth(len(pkts), 5)}, {swap: everyNth(len(pkts), 9)}, {snap: 80}} {
			rep := diag(t, pcapBytes(t, s, pkts, wo), Options{})
			if rep.Verdict != VerdictHealthy {
				t.Errorf("atClient %v, %+v: verdict %q, findings %+v", atClient, wo.snap, rep.Verdict, summarize(rep))
			}
			if wo.dup != nil && rep.Duplicates == 0 {
				t.Errorf("duplicates not counted")
			}
		}
	}
}

func everyNth(n, k int) map[int]bool {
	m := map[int]bool{}
	for i := 3; i < n; i += k {
		m[i] = true
	}
	return m
}

// TestOneDirection: a capture holding only one direction (a capture
// filter, asymmetric routing) of a lossy upload or of a SYN black hole with
// retries is not diagnosed as an option fault.
func TestOneDirection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(s *sim)
	}{
		{name: "lossy upload, sender's direction", setup: func(s *sim) { s.upload, s.atClient, s.drop = true, true, randomDrop(0.05, 5) }},
		{name: "pmtu upload, sender's direction", setup: func(s *sim) {
			s.upload, s.atClient, s.smallFirst = true, true, 3
			s.drop = func(_ uint32, wire, _ int) bool { return wire > 1280 }
		}},
		{name: "lossy download, receiver's direction", setup: func(s *sim) { s.atClient, s.drop = true, randomDrop(0.05, 6) }},
	} {
		for _, fromCli := range []bool{true, false} {
			s := newSim()
			tc.setup(s)
			var one []wirePkt
			for _, p := range s.run() {
				if p.fromCli == fromCli {
					one = append(one, p)
				}
			}
			rep := diag(t, pcapBytes(t, s, one, writeOpts{}), Options{})
			if rep.Verdict == VerdictOptionFault {
				t.Errorf("%s, client's direction %v: verdict %q, findings %+v", tc.name, fromCli, rep.Verdict, summarize(rep))
			}
		}
	}
}

// TestCaptureEndsMidTransfer: a capture stopped while data is in flight
// (the last flight never acknowledged in the file) is no fault.
func TestCaptureEndsMidTransfer(t *testing.T) {
	for _, atClient := range []bool{true, false} {
		for _, frac := range []int{10, 25, 50} {
			s := newSim()
			s.upload, s.atClient = true, atClient
			pkts := s.run()
			sortSlice(pkts, func(i, j int) bool { return pkts[i].t < pkts[j].t })
			rep := diag(t, pcapBytes(t, s, pkts[:len(pkts)*frac/100], writeOpts{}), Options{})
			if rep.Verdict != VerdictHealthy {
				t.Errorf("at the client %v, first %d%%: verdict %q, findings %+v", atClient, frac, rep.Verdict, summarize(rep))
			}
		}
	}
}

func TestMidConnectionStart(t *testing.T) {
	s := newSim()
	s.upload, s.atClient, s.drop = true, true, randomDrop(0.03, 9)
	pkts := s.run()
	sortSlice(pkts, func(i, j int) bool { return pkts[i].t < pkts[j].t })
	rep := diag(t, pcapBytes(t, s, pkts[len(pkts)/3:], writeOpts{}), Options{})
	for _, f := range rep.Findings {
		if f.Fixable {
			t.Errorf("mid-connection capture of a lossy path blamed on options: %+v", f)
		}
	}
}

func TestCorrupt(t *testing.T) {
	s := newSim()
	s.upload, s.atClient, s.bytes = true, true, 20000
	good := pcapBytes(t, s, s.run(), writeOpts{})
	// The third record's header: 24-byte file header, then records.
	off := 24
	for i := 0; i < 2; i++ {
		off += 16 + int(binary.LittleEndian.Uint32(good[off+8:]))
	}
	bad := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bad[off+8:], 0x7ffffff0)
	_, err := DiagnoseBytes(bad, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a CorruptError", err)
	}
	if ce.Offset != int64(off) || ce.Packet != 2 {
		t.Errorf("offset %d after packet %d, want %d after 2 (%v)", ce.Offset, ce.Packet, off, err)
	}
	if !strings.Contains(err.Error(), "byte offset") {
		t.Errorf("error %q does not name the byte offset", err)
	}

	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{name: "empty", data: nil, want: "too short"},
		{name: "not a capture", data: []byte("hello, world, this is text\n"), want: "not a pcap"},
		{name: "short header", data: good[:10], want: "too short"},
		{name: "gzip", data: []byte{0x1f, 0x8b, 8, 0, 0, 0}, want: "gzip"},
		{name: "pcapng garbage", data: append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, bytes.Repeat([]byte{0xff}, 40)...), want: "byte offset 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DiagnoseBytes(tt.data, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}

	// Cut inside the last record: analysed, with a warning.
	rep, err := DiagnoseBytes(good[:len(good)-7], Options{})
	if err != nil {
		t.Fatalf("truncated file: %v", err)
	}
	if len(rep.Warnings) == 0 || !strings.Contains(rep.Warnings[0], "byte offset") {
		t.Errorf("warnings = %q, want one about the cut record", rep.Warnings)
	}
}

// TestCompressed reads a gzip- or zstd-compressed capture directly, as
// tshark does: the same report as the plain file; a damaged or nested
// stream is an error, not a panic.
func TestCompressed(t *testing.T) {
	plain, err := os.ReadFile(labFile("wscale"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := DiagnoseBytes(plain, Options{Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	zst := func(b []byte) []byte {
		zw, err := zstd.NewWriter(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer zw.Close()
		return zw.EncodeAll(b, nil)
	}
	for _, tt := range []struct {
		name, format string
		data         []byte
	}{
		{name: "gzip", format: "pcap.gz", data: gz(plain)},
		{name: "zstd", format: "pcap.zst", data: zst(plain)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DiagnoseBytes(tt.data, Options{Now: testNow})
			if err != nil {
				t.Fatal(err)
			}
			if got.Format != tt.format {
				t.Errorf("format %q, want %q", got.Format, tt.format)
			}
			got.Format = want.Format
			if diff := cmp.Diff(reportJSON(t, want), reportJSON(t, got)); diff != "" {
				t.Errorf("report differs from the plain file's (-want +got):\n%s", diff)
			}
		})
	}
	for _, tt := range []struct {
		name string
		data []byte
		want string
	}{
		{name: "gzip of gzip", data: gz(gz(plain)), want: "gzip inside gzip"},
		{name: "gzip of text", data: gz([]byte("hello, world, this is text\n")), want: "not a pcap"},
		{name: "gzip header only", data: gz(plain)[:10], want: "gzip"},
		{name: "zstd garbage", data: append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 40)...), want: "zstd"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DiagnoseBytes(tt.data, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	// A stream cut inside the compressed data: what was read is
	// analysed, with a warning, as for a plain file cut short.
	cut := gz(plain)
	rep, err := DiagnoseBytes(cut[:len(cut)*2/3], Options{Now: testNow})
	if err != nil {
		t.Fatalf("cut gzip: %v", err)
	}
	if rep.Packets == 0 || rep.Packets >= want.Packets || len(rep.Warnings) == 0 {
		t.Errorf("cut gzip: %d packets of %d, warnings %q", rep.Packets, want.Packets, rep.Warnings)
	}
}

// reportJSON is a report's JSON form, for comparing two reports.
func reportJSON(t *testing.T, r *Report) string {
	t.Helper()
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEviction bounds the table and counts the connections evicted.
func TestEviction(t *testing.T) {
	var sims []*sim
	var pkts [][]wirePkt
	for i := 0; i < 6; i++ {
		s := newSim()
		s.upload, s.atClient, s.bytes, s.cliPort = true, true, 50000, uint16(41000+i)
		p := s.run()
		for j := range p {
			p[j].t += time.Duration(i) * time.Millisecond
		}
		sims, pkts = append(sims, s), append(pkts, p)
	}
	rep := diag(t, mergeCaptures(t, sims, pkts), Options{MaxConns: 2})
	if rep.Evicted == 0 {
		t.Errorf("evicted = 0, want > 0 with 6 interleaved connections and room for 2")
	}
	if rep.Verdict == VerdictOptionFault {
		t.Errorf("eviction produced an option fault: %+v", summarize(rep))
	}
}
