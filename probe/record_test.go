//go:build linux

package probe

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/tcpnorm/tcpnorm/diagnose"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// TestRecord records a marked trial beside an unmarked connection to the
// same port: the capture holds the trial's packets, both directions, and
// nothing of the other; body segments are cut, the handshake is whole; and
// diagnose reads the file.
func TestRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: a packet socket and SO_MARK need root")
	}
	for _, lo := range loopbacks {
		t.Run(lo.name, func(t *testing.T) {
			l := listen(t, lo.addr, 0)
			serve(t, l, sink)
			var buf bytes.Buffer
			rec, err := Record(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := rec.Watch(lo.addr); err != nil {
				rec.Close()
				t.Fatal(err)
			}
			tr := Run(context.Background(), lo.addr, Workload{Proto: TCP, Port: port(l), Bytes: 1 << 20, Stall: 5 * time.Second, Mark: normalize.ProbeMark})
			other, err := net.Dial("tcp", netip.AddrPortFrom(lo.addr, port(l)).String())
			if err == nil {
				io.CopyN(other, zeros{}, 256<<10)
				other.Close()
			}
			time.Sleep(100 * time.Millisecond)
			st, err := rec.Close()
			if err != nil {
				t.Fatal(err)
			}
			if tr.Outcome != Completed {
				t.Fatalf("trial: %v (%s)", tr.Outcome, tr.Detail)
			}
			r, err := pcapgo.NewNgReader(bytes.NewReader(buf.Bytes()), pcapgo.DefaultNgReaderOptions)
			if err != nil {
				t.Fatal(err)
			}
			var out, in, cut, syns uint64
			for {
				data, ci, err := r.ReadPacketData()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				off, key, icmp, ok := classify(data)
				if !ok || icmp {
					t.Fatalf("packet %x is not a TCP packet of the trial", data)
				}
				tcp := normalize.TCP(data[off:])
				switch {
				case key.local == tr.Local && key.remote == tr.Remote:
					out++
				case key.local == tr.Remote && key.remote == tr.Local:
					in++
				default:
					t.Fatalf("packet %v -> %v is not the trial's (%v -> %v)", key.local, key.remote, tr.Local, tr.Remote)
				}
				if tcp.Flags()&normalize.FlagSYN != 0 {
					syns++
					if ci.CaptureLength != ci.Length {
						t.Errorf("a SYN cut to %d of %d bytes", ci.CaptureLength, ci.Length)
					}
				}
				if ci.CaptureLength < ci.Length {
					cut++
					if want := off + tcp.DataOffset() + snapKeep; ci.CaptureLength != want {
						t.Errorf("a segment cut to %d bytes, want %d", ci.CaptureLength, want)
					}
				}
			}
			t.Logf("%d out, %d in, %d cut, stats %+v", out, in, cut, st)
			if out == 0 || in == 0 || syns != 2 || cut == 0 || st.Packets != out+in {
				t.Errorf("out %d, in %d, SYNs %d, cut %d, Packets %d: want both directions, SYN and SYN-ACK, cut body segments, every packet counted", out, in, syns, cut, st.Packets)
			}
			rep, err := diagnose.DiagnoseBytes(buf.Bytes(), diagnose.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Connections != 1 || len(rep.Findings) != 0 {
				t.Errorf("diagnose: %d connections, findings %+v; want 1, none", rep.Connections, rep.Findings)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestClassify covers the packets the recorder sorts by hand: ICMP errors
// quoting a probe packet, fragments and garbage.
func TestClassify(t *testing.T) {
	tcp4 := []byte{
		0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
		0x30, 0x39, 0, 25, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
	}
	want := flowKey{netip.MustParseAddrPort("198.18.0.1:12345"), netip.MustParseAddrPort("198.18.0.2:25")}
	if _, k, icmp, ok := classify(tcp4); !ok || icmp || k != want {
		t.Errorf("TCP: %v %v %v, want %v", k, icmp, ok, want)
	}
	// Fragmentation needed from a router, quoting the first 28 bytes.
	icmp4 := append([]byte{0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 9, 9, 198, 18, 0, 1, 3, 4, 0, 0, 0, 0, 0x05, 0xdc}, tcp4[:28]...)
	if _, k, icmp, ok := classify(icmp4); !ok || !icmp || k != want {
		t.Errorf("ICMP: %v %v %v, want %v (as sent)", k, icmp, ok, want)
	}
	// An echo reply is no error about a probe packet.
	echo := append([]byte{0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 198, 18, 9, 9, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, tcp4[:28]...)
	frag := append([]byte{}, tcp4...)
	frag[6], frag[7] = 0, 10 // offset 80
	for name, b := range map[string][]byte{"echo": echo, "fragment": frag, "empty": nil, "short": tcp4[:30], "icmp cut": icmp4[:30]} {
		if _, k, _, ok := classify(b); ok {
			t.Errorf("%s: classified as %v", name, k)
		}
	}
}

// TestCheckCapture: the comparison of the probe's verdicts with diagnose's
// findings, per address.
func TestCheckCapture(t *testing.T) {
	a := netip.MustParseAddr("198.18.3.2")
	finding := func(peer string, class diagnose.Class, fixable bool) diagnose.Finding {
		return diagnose.Finding{Peer: peer, Class: class, Fixable: fixable}
	}
	tests := []struct {
		name     string
		verdict  Verdict
		class    diagnose.Class
		findings []diagnose.Finding
		agrees   bool
		line     string
	}{
		{"both clean", VerdictHealthy, "", nil, true, "198.18.3.2: agrees: no option fault"},
		{"loss on a healthy path", VerdictHealthy, "", []diagnose.Finding{finding("198.18.3.2:2525", diagnose.ClassLoss, false)}, true, "198.18.3.2: agrees: no option fault; diagnose also sees loss"},
		{"fault on a healthy path", VerdictHealthy, "", []diagnose.Finding{finding("198.18.3.2:2525", diagnose.ClassWindowScale, true)}, false, "198.18.3.2: disagrees: the probe found the path healthy, diagnose an option fault (window-scale-mismatch)"},
		{"same fault", VerdictOptionFault, diagnose.ClassPMTU, []diagnose.Finding{finding("198.18.3.2:2525", diagnose.ClassPMTU, true)}, true, "198.18.3.2: agrees: path-mtu-black-hole"},
		{"another fault", VerdictOptionFault, diagnose.ClassPMTU, []diagnose.Finding{finding("198.18.3.2:2525", diagnose.ClassWindowScale, true)}, false, "198.18.3.2: disagrees: both find an option fault, the probe path-mtu-black-hole, diagnose window-scale-mismatch"},
		{"fault on another peer", VerdictOptionFault, diagnose.ClassPMTU, []diagnose.Finding{finding("[2001:2:0:3::2]:2525", diagnose.ClassPMTU, true)}, false, "198.18.3.2: disagrees: the probe found an option fault (path-mtu-black-hole), diagnose no finding"},
		{"unreachable", VerdictUnreachable, "", nil, true, "198.18.3.2: not compared (unreachable); diagnose: no finding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Result{Addrs: []AddressResult{{Addr: a, Verdict: tt.verdict, Class: tt.class}}}
			r.CheckCapture("p.pcapng", RecordStats{Packets: 10}, &diagnose.Report{Findings: tt.findings})
			c := r.Capture
			if c.Agrees != tt.agrees || len(c.Lines) != 1 || c.Lines[0] != tt.line {
				t.Errorf("Agrees %v, Lines %q; want %v, %q", c.Agrees, c.Lines, tt.agrees, tt.line)
			}
		})
	}
}
