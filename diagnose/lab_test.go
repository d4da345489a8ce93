package diagnose

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
)

// labCases are the lab's fault classes and what diagnose must find in a
// capture taken at the client, as an operator on the mail server would.
var labCases = []struct {
	fault lab.Fault
	want  Class // "" : healthy
}{
	{lab.FaultNone, ""},
	{lab.FaultSYNTS, ClassSYNOption},
	{lab.FaultWScale, ClassWindowScale},
	{lab.FaultTSScramble, ClassPAWS},
	{lab.FaultPMTU, ClassPMTU},
}

// labExtra are lab captures kept for a case TestLabRecord meets only by
// chance: in lab-ts-scramble-first.pcap the path scrambled the first data
// segment, so the receiver took no data in order and its TS.Recent is the
// SYN-ACK's TSval.
var labExtra = []struct {
	file string
	want Class
}{
	{"lab-ts-scramble-first.pcap", ClassPAWS},
}

func labFile(f lab.Fault) string { return filepath.Join("testdata", "lab-"+f.String()+".pcap") }

// TestLabCaptures diagnoses the real captures committed under testdata
// (written by TestLabRecord).
func TestLabCaptures(t *testing.T) {
	for _, tc := range labCases {
		t.Run(tc.fault.String(), func(t *testing.T) {
			data, err := os.ReadFile(labFile(tc.fault))
			if os.IsNotExist(err) {
				t.Skipf("%s not recorded (run TestLabRecord as root with TCPNORM_LAB_RECORD=1)", labFile(tc.fault))
			}
			if err != nil {
				t.Fatal(err)
			}
			checkLab(t, data, tc.want)
		})
	}
}

func TestLabExtraCaptures(t *testing.T) {
	for _, tc := range labExtra {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			checkLab(t, data, tc.want)
		})
	}
}

func checkLab(t *testing.T, data []byte, want Class) {
	t.Helper()
	rep := diag(t, data, Options{})
	if want == "" {
		if rep.Verdict != VerdictHealthy {
			t.Errorf("verdict %q, want healthy; findings %+v", rep.Verdict, summarize(rep))
		}
		return
	}
	if rep.Verdict != VerdictOptionFault || len(rep.Findings) == 0 || rep.Findings[0].Class != want {
		t.Errorf("verdict %q findings %+v, want %s first", rep.Verdict, summarize(rep), want)
	}
}

// TestLabRecord runs each fault in a namespace lab (root), over IPv4 and
// IPv6, captures at the client, and diagnoses the capture. With TCPNORM_LAB_RECORD=1 it writes
// the captures under testdata for TestLabCaptures.
func TestLabRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if testing.Short() {
		t.Skip("slow: builds a namespace lab")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.New(ctx, lab.Options{Prefix: "tndiag"})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	defer l.Close()
	for _, tc := range labCases {
		for _, v6 := range []bool{false, true} {
			recordLab(ctx, t, l, tc.fault, tc.want, v6)
		}
	}
}

// recordLab runs fault f over IPv4 or IPv6, captures at the client, and
// checks what diagnose finds; IPv4 captures are written under testdata
// with TCPNORM_LAB_RECORD=1.
func recordLab(ctx context.Context, t *testing.T, l *lab.Lab, f lab.Fault, want Class, v6 bool) {
	name := f.String()
	if v6 {
		name += "/IPv6"
	}
	t.Run(name, func(t *testing.T) {
		if err := l.SetFault(ctx, f); err != nil {
			t.Fatal(err)
		}
		capt, err := lab.StartCapture(l.Client, lab.IfClient)
		if err != nil {
			t.Fatal(err)
		}
		// An overrun window shows only once the sender's window passes
		// the receiver's buffer: the window-scale fault needs a transfer
		// long enough to always get there.
		size := 256 << 10
		if f == lab.FaultWScale {
			size = 4 << 20
		}
		res, err := l.Transfer(ctx, lab.Transfer{Dst: lab.ServerAddr(v6), Size: size, Dir: f.Direction(), Timeout: 6 * time.Second, Seed: 7})
		time.Sleep(200 * time.Millisecond)
		frames := capt.Stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("transfer: %v, %d frames", res, len(frames))
		var buf bytes.Buffer
		if err := lab.WritePcap(&buf, frames); err != nil {
			t.Fatal(err)
		}
		if os.Getenv("TCPNORM_LAB_RECORD") == "1" && !v6 {
			if buf.Len() > 200<<10 {
				t.Errorf("capture is %d bytes, over 200 KB: not written", buf.Len())
			} else if err := os.WriteFile(labFile(f), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		checkLab(t, buf.Bytes(), want)
	})
}
