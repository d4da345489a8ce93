//go:build linux

package diagnose

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// labCases are the lab's fault classes and what diagnose must find in a
// capture taken at the client, as an operator on the mail server would.
// The syn-ts case connects a second time with timestamps off, as the
// suspected finding of the first attempt asks: the answered comparison is
// the evidence for a policy.
var labCases = []struct {
	name    string // the capture is testdata/lab-NAME.pcap
	fault   lab.Fault
	opt     lab.PathOptions
	dir     lab.Direction
	want    Class // "" : healthy
	wantFix Fix
	// over IPv6 the evidence is weaker (no IPv4 identification to show
	// packets that never arrived): a suspected finding, no policy
	v6Suspected bool
}{
	{name: "none", fault: lab.FaultNone},
	{name: "syn-ts", fault: lab.FaultSYNTS, want: ClassSYNOption, wantFix: Fix{Timestamps: normalize.TSStrip}},
	{name: "wscale", fault: lab.FaultWScale, want: ClassWindowScale, wantFix: Fix{WindowScale: normalize.WSStrip}},
	{name: "ts-scramble", fault: lab.FaultTSScramble, dir: lab.Download, want: ClassPAWS, wantFix: Fix{Timestamps: normalize.TSStrip}},
	{name: "pmtu", fault: lab.FaultPMTU, want: ClassPMTU},
	// The window-limit firewall ignoring scaling, the sender's view (the
	// mail server sending): strip.
	{name: "wscale-cap0-upload", fault: lab.FaultWScaleCap, opt: lab.PathOptions{WScaleCap: lab.WScaleCapZero},
		want: ClassWindowLimit, wantFix: Fix{WindowScale: normalize.WSStrip}},
	// Honouring shift 5 of the client's 10, the receiver's view (mail
	// coming in): clamp to 5.
	{name: "wscale-cap5-download", fault: lab.FaultWScaleCap, opt: lab.PathOptions{WScaleCap: 5}, dir: lab.Download,
		want: ClassWindowLimit, wantFix: Fix{WindowScale: normalize.WSClamp, WindowScaleMax: intp(5)}, v6Suspected: true},
}

func intp(i int) *int { return &i }

// labExtra are lab captures kept for a case TestLab meets only by
// chance: in lab-ts-scramble-first.pcap the path scrambled the first data
// segment, so the receiver took no data in order and its TS.Recent is the
// SYN-ACK's TSval.
var labExtra = []struct {
	file string
	want Class
}{
	{"lab-ts-scramble-first.pcap", ClassPAWS},
}

// TestLabCaptures diagnoses the real captures committed under testdata
// (written by TestLab built with the tag record).
func TestLabCaptures(t *testing.T) {
	for _, tc := range labCases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(labFile(tc.name))
			if os.IsNotExist(err) {
				t.Fatalf("%s not recorded (run `make record` as root)", labFile(tc.name))
			}
			if err != nil {
				t.Fatal(err)
			}
			checkLab(t, data, tc.want, tc.wantFix, false)
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
			checkLab(t, data, tc.want, Fix{}, false)
		})
	}
}

// checkLab: the class first, with a policy; with wantFix set, that fix.
// With suspected, the class first as a suspected finding, no policy.
func checkLab(t *testing.T, data []byte, want Class, wantFix Fix, suspected bool) {
	t.Helper()
	rep := diag(t, data, Options{})
	if want == "" {
		if rep.Verdict != VerdictHealthy {
			t.Errorf("verdict %q, want healthy; findings %+v", rep.Verdict, summarize(rep))
		}
		return
	}
	if suspected {
		if rep.Verdict != VerdictSuspected || len(rep.Findings) == 0 || rep.Findings[0].Class != want || len(rep.Policies) > 0 {
			t.Errorf("verdict %q findings %+v, want %s first, suspected", rep.Verdict, summarize(rep), want)
		}
		return
	}
	if rep.Verdict != VerdictOptionFault || len(rep.Findings) == 0 || rep.Findings[0].Class != want {
		t.Errorf("verdict %q findings %+v, want %s first", rep.Verdict, summarize(rep), want)
		return
	}
	if got := rep.Findings[0].Fix; !wantFix.empty() && (got == nil || !cmp.Equal(*got, wantFix)) {
		t.Errorf("fix %+v, want %+v", got, wantFix)
	}
}

// TestLab runs each fault in a namespace lab (root), over IPv4 and IPv6,
// captures at the client, and diagnoses the capture. Built with the tag
// record (`make record`), it writes the IPv4 captures under testdata for
// TestLabCaptures.
func TestLab(t *testing.T) {
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
			recordLab(ctx, t, l, tc.name, tc.fault, tc.opt, tc.dir, tc.want, tc.wantFix, v6 && tc.v6Suspected, v6)
		}
	}
}

// recordLab runs fault f over IPv4 or IPv6, captures at the client, and
// checks what diagnose finds; IPv4 captures are written under testdata
// when recording (the tag record).
func recordLab(ctx context.Context, t *testing.T, l *lab.Lab, name string, f lab.Fault, opt lab.PathOptions, dir lab.Direction, want Class, wantFix Fix, suspected, v6 bool) {
	sub := name
	if v6 {
		sub += "/IPv6"
	}
	t.Run(sub, func(t *testing.T) {
		if err := l.SetPath(ctx, f, opt); err != nil {
			t.Fatal(err)
		}
		capt, err := netns.StartCapture(l.Client, lab.IfClient)
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
		res, err := l.Transfer(ctx, lab.Transfer{Dst: lab.ServerAddr(v6), Size: size, Dir: dir, Timeout: 6 * time.Second, Seed: 7})
		if err == nil && f == lab.FaultSYNTS {
			// The comparison the suspected finding asks for: the same
			// peer, timestamps off, answered.
			key := "net.ipv4.tcp_timestamps"
			if err = netns.WriteSysctl(l.Client, key, "0"); err == nil {
				_, err = l.Transfer(ctx, lab.Transfer{Dst: lab.ServerAddr(v6), Size: 16 << 10, Timeout: 3 * time.Second, Seed: 8})
				if e := netns.WriteSysctl(l.Client, key, "1"); err == nil {
					err = e
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
		frames := capt.Stop()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("transfer: %v, %d frames", res, len(frames))
		var buf bytes.Buffer
		if err := netns.WritePcap(&buf, frames); err != nil {
			t.Fatal(err)
		}
		if recording && !v6 {
			if buf.Len() > 200<<10 {
				t.Errorf("capture is %d bytes, over 200 KB: not written", buf.Len())
			} else if err := os.WriteFile(labFile(name), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		checkLab(t, buf.Bytes(), want, wantFix, suspected)
	})
}
