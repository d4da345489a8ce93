package normalize

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// capturesDir holds the real captures with unusual option lists
// (MANIFEST.md there names their source and licence).
const capturesDir = "../testdata/captures"

// readCapture returns the IP packets of a pcap file, with the snapped length
// of each against its original length.
func readCapture(t *testing.T, name string) (pkts [][]byte, truncated []bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(capturesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if r.LinkType() == layers.LinkTypeEthernet {
			data = data[14:]
		}
		pkts = append(pkts, data)
		truncated = append(truncated, ci.CaptureLength < ci.Length)
	}
	return pkts, truncated
}

// TestCaptures runs the first packets of every real capture through a
// policy that strips everything, and checks the outcome of each.
func TestCaptures(t *testing.T) {
	all := netip.MustParsePrefix("0.0.0.0/0")
	pol := stripAll()
	pol.DropMalformed = true
	tests := []struct {
		file string
		// per packet: reason and the options afterwards ("" = not checked)
		want []struct {
			reason Reason
			opts   string
		}
	}{
		{file: "options.pcap", want: wants(
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop",
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop",
			ReasonNotHandshake, "nop,nop,TS val 4294923545 ecr 419445911")},
		{file: "syn-synack.pcap", want: wants(
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,eol",
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop")},
		{file: "qi_internet_SYNACK_curl_jsonip.pcap", want: wants(
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop",
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop")},
		{file: "tcp-fast-open.pcap", want: wants(
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop",
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop")},
		{file: "window-scale-range.pcap", want: wants(
			ReasonApplied, "mss 1360,nop,nop,nop,eol",
			ReasonApplied, "mss 1360,nop,nop,nop,eol")},
		// A SYN-ACK whose SYN is not in the capture: MSS only, and it has none.
		{file: "option-27.pcap", want: wants(ReasonNoRecord, "nop,opt-27:000102000000,opt-28:0001,eol")},
		// SACK blocks in a SYN are well formed, if pointless: kept.
		{file: "option-sack.pcap", want: wants(ReasonApplied, "opt-5:0000000100000010,eol")},
		{file: "payload-syn.pcap", want: wants(ReasonApplied, "", ReasonApplied, "")},
		{file: "syn-bad.pcap", want: wants(
			ReasonApplied, "mss 1360,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,nop,eol")},
		// The first packet's options run past the snapped copy: the
		// header does not parse, and it passes untouched.
		{file: "truncated-header.pcap", want: wants(ReasonNotTCP, "")},
	}
	// Every capture of the directory has its expectations here.
	onDisk, _ := filepath.Glob(filepath.Join(capturesDir, "*.pcap"))
	listed := map[string]bool{}
	for _, tt := range tests {
		listed[tt.file] = true
	}
	if len(onDisk) != len(listed) {
		t.Errorf("%d captures in %s, %d with expectations here", len(onDisk), capturesDir, len(listed))
	}
	for _, p := range onDisk {
		if !listed[filepath.Base(p)] {
			t.Errorf("%s has no expectations in TestCaptures", p)
		}
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkts, trunc := readCapture(t, tt.file)
			n := New(Config{})
			tab := table(pol, all)
			for i, w := range tt.want {
				if i >= len(pkts) {
					t.Fatalf("capture has %d packets", len(pkts))
				}
				pkt := pkts[i]
				orig := append([]byte(nil), pkt...)
				valid := w.reason != ReasonNotTCP && verifies(t, pkt)
				r := n.Packet(pkt, tab, Meta{Truncated: trunc[i]})
				if r.Why.Reason != w.reason {
					t.Errorf("packet %d: reason %v, want %v (%v)", i+1, r.Why.Reason, w.reason, r.Why)
				}
				if w.opts != "" {
					if got := optString(tcpOf(t, pkt).Options()); got != w.opts {
						t.Errorf("packet %d options:\n got %s\nwant %s", i+1, got, w.opts)
					}
				}
				if len(pkt) != len(orig) || r.Modified == bytes.Equal(orig, pkt) {
					t.Errorf("packet %d: Modified=%v but bytes changed=%v", i+1, r.Modified, !bytes.Equal(orig, pkt))
				}
				if w.reason != ReasonNotTCP && verifies(t, pkt) != valid {
					t.Errorf("packet %d: checksum validity changed", i+1)
				}
			}
		})
	}
}

func wants(v ...any) []struct {
	reason Reason
	opts   string
} {
	var out []struct {
		reason Reason
		opts   string
	}
	for i := 0; i+1 < len(v); i += 2 {
		out = append(out, struct {
			reason Reason
			opts   string
		}{v[i].(Reason), v[i+1].(string)})
	}
	return out
}
