//go:build linux && record

package diagnose

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/lab"
)

// TestCorpusRecord writes the corpus captures of real software (curl and
// python3's http.server, iperf3, redis) and of the lab's window-limit
// firewall in a namespace lab, and the variants the corpus needs of them:
// a small snap length, one direction only, a start mid-connection, a fuzzed
// IP length, offloaded (zero-length) IP headers, loopback. It is a
// generator, built only with the tag record (`make record`, root);
// TestCorpus checks what it wrote.
func TestCorpusRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the corpus generator needs root (network namespaces)")
	}
	for _, tool := range []string{"curl", "python3", "iperf3", "redis-server", "redis-cli", "swaks"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l, err := lab.New(ctx, lab.Options{Prefix: "tncorp"})
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	defer l.Close()
	if err := os.MkdirAll(corpusDir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := lab.ServerAddr(false).String()
	srv6 := lab.ServerAddr(true).String()
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "f"), bytes.Repeat([]byte("tcpnorm corpus\n"), 70000), 0o644); err != nil {
		t.Fatal(err)
	}

	only := os.Getenv("TCPNORM_CORPUS_ONLY")
	// HTTP: python3's http.server, curl downloading 1 MB, over IPv4 and IPv6.
	func() {
		if only != "" && only != "http" {
			return
		}
		stop := background(t, l.Server, "python3", "-m", "http.server", "8080", "--bind", "::", "--directory", www)
		defer stop()
		time.Sleep(time.Second)
		fr := record(t, l.Client, lab.IfClient, 300*time.Millisecond, func() {
			run(t, l.Client, "curl", "-sS", "-o", "/dev/null", "http://"+srv+":8080/f")
		})
		write(t, "http-curl-download.pcap", fr, 0)
		write(t, "http-curl-download-snap96.pcap", fr, 96)
		write(t, "http-curl-download-incoming-only.pcap", filterFrames(fr, false), 0)
		write(t, "http-curl-download-badlen.pcap", badLength(fr), 0)
		fr = record(t, l.Client, lab.IfClient, 300*time.Millisecond, func() {
			run(t, l.Client, "curl", "-sS", "-g", "-o", "/dev/null", "http://["+srv6+"]:8080/f")
		})
		write(t, "http-curl-download-ipv6.pcap", fr, 0)

		// SYNs dropped on the path for 2.5 s: curl's SYN is sent three
		// times, the third is answered.
		run(t, l.Path, "iptables", "-I", "FORWARD", "-p", "tcp", "--syn", "-j", "DROP")
		fr = record(t, l.Client, lab.IfClient, 300*time.Millisecond, func() {
			go func() {
				time.Sleep(2500 * time.Millisecond)
				run(t, l.Path, "iptables", "-D", "FORWARD", "-p", "tcp", "--syn", "-j", "DROP")
			}()
			run(t, l.Client, "curl", "-sS", "-o", "/dev/null", "--max-time", "20", "http://"+srv+":8080/f")
		})
		write(t, "http-curl-syn-retry.pcap", fr, 0)
		write(t, "http-curl-syn-retry-outgoing-only.pcap", filterFrames(fr, true), 0)
	}()

	// iperf3: 1 MB up and down; a control connection beside the data.
	for _, dir := range []string{"upload", "download"} {
		func() {
			if only != "" && only != "iperf3" {
				return
			}
			stop := background(t, l.Server, "iperf3", "-s", "-1", "-B", srv)
			defer stop()
			time.Sleep(500 * time.Millisecond)
			args := []string{"iperf3", "-c", srv, "-n", "1M"}
			if dir == "download" {
				args = append(args, "-R")
			}
			fr := record(t, l.Client, lab.IfClient, 300*time.Millisecond, func() { run(t, l.Client, args...) })
			write(t, "iperf3-"+dir+".pcap", fr, 128)
			if dir == "upload" {
				write(t, "iperf3-upload-outgoing-only.pcap", filterFrames(fr, true), 128)
				write(t, "iperf3-upload-midstart.pcap", fr[len(fr)/3:], 128)
				write(t, "iperf3-upload-offload-iplen0.pcap", zeroLength(fr), 128)
			}
		}()
	}

	// redis: a client that sends a few commands and then sits idle until
	// the capture ends, over the path and on the server's loopback.
	func() {
		if only != "" && only != "redis" {
			return
		}
		stop := background(t, l.Server, "redis-server", "--bind", srv+" 127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "no")
		defer stop()
		time.Sleep(time.Second)
		big := "PING\r\nSET greeting " + strings.Repeat("x", 600) + "\r\nGET greeting\r\nINFO\r\n"
		small := "PING\r\nSET greeting " + strings.Repeat("x", 600) + "\r\nGET greeting\r\n"
		// idle records the client sending cmds and sitting idle: the
		// capture ends while the connection is still open, as a capture
		// an operator stops usually does.
		idle := func(ns, ifname, host, cmds string) []netns.Frame {
			c := exec.Command("ip", "netns", "exec", ns, "sh", "-c", fmt.Sprintf("(printf '%s'; sleep 8) | redis-cli -h %s", strings.ReplaceAll(cmds, "\r\n", `\r\n`), host))
			c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
			fr := record(t, ns, ifname, 0, func() {
				if err := c.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Second)
			})
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			c.Wait()
			return fr
		}
		write(t, "redis-idle.pcap", idle(l.Client, lab.IfClient, srv, big), 0)
		// Replies of at most 620 bytes: no full-size packet ever sent.
		write(t, "redis-idle-small.pcap", idle(l.Client, lab.IfClient, srv, small), 0)
		write(t, "redis-idle-loopback.pcap", idle(l.Server, "lo", "127.0.0.1", big), 0)
	}()

	// SMTP: swaks sending a 1 MB attachment to aiosmtpd, healthy and
	// through the window-limit firewall: outgoing mail (the client sends,
	// captured at the client: the sender's view) and incoming mail (the
	// server connects to a listener on the client: the receiver's view).
	func() {
		if only != "" && only != "smtp" {
			return
		}
		att := filepath.Join(www, "f")
		smtp := func(name string, k int, inbound bool) {
			opt := lab.PathOptions{WScaleCap: k}
			if k == 0 {
				opt.WScaleCap = lab.WScaleCapZero
			}
			f := lab.FaultWScaleCap
			if k < 0 {
				f, opt = lab.FaultNone, lab.PathOptions{}
			}
			if err := l.SetPath(ctx, f, opt); err != nil {
				t.Fatal(err)
			}
			srvNS, cliNS, dst := l.Server, l.Client, srv
			if inbound {
				srvNS, cliNS, dst = l.Client, l.Server, lab.ClientV4.String()
			}
			stop := background(t, srvNS, "/usr/bin/python3", "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", dst+":25")
			defer stop()
			time.Sleep(1500 * time.Millisecond)
			fr := record(t, l.Client, lab.IfClient, 300*time.Millisecond, func() {
				c := exec.Command("ip", "netns", "exec", cliNS, "timeout", "8", "swaks", "--silent", "2", "--to", "postmaster@lab.test", "--from", "sender@example.net",
					"--server", dst, "--port", "25", "--helo", "mta.example.net", "--attach", att)
				out, err := c.CombinedOutput()
				t.Logf("%s: swaks: %v %s", name, err, out)
			})
			write(t, name, fr, 128)
		}
		smtp("smtp-swaks-aiosmtpd.pcap", -1, false)
		smtp("smtp-inbound-swaks-aiosmtpd.pcap", -1, true)
		smtp("lab-wscale-cap0-smtp-outgoing.pcap", 0, false)
		smtp("lab-wscale-cap2-smtp-outgoing.pcap", 2, false)
		smtp("lab-wscale-cap5-smtp-incoming.pcap", 5, true)
		if err := l.SetFault(ctx, lab.FaultNone); err != nil {
			t.Fatal(err)
		}
	}()

	// The window-limit firewall: a box honouring shifts only up to K,
	// uploads and downloads captured at the client.
	for _, tc := range []struct {
		k   int
		dir lab.Direction
	}{{0, lab.Upload}, {2, lab.Upload}, {5, lab.Upload}, {5, lab.Download}, {8, lab.Download}} {
		if only != "" && only != "wscale-cap" {
			break
		}
		k := tc.k
		if k == 0 {
			k = lab.WScaleCapZero
		}
		if err := l.SetPath(ctx, lab.FaultWScaleCap, lab.PathOptions{WScaleCap: k}); err != nil {
			t.Fatal(err)
		}
		fr := record(t, l.Client, lab.IfClient, 200*time.Millisecond, func() {
			res, err := l.Transfer(ctx, lab.Transfer{Dst: lab.ServerAddr(false), Size: 1 << 20, Dir: tc.dir, Timeout: 6 * time.Second, Seed: 7})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("wscale-cap %d %s: %v", tc.k, tc.dir, res)
		})
		write(t, fmt.Sprintf("lab-wscale-cap%d-%s.pcap", tc.k, tc.dir), fr, 128)
	}
	if err := l.SetFault(ctx, lab.FaultNone); err != nil {
		t.Fatal(err)
	}
}

// background starts a command in namespace ns and returns what stops it.
func background(t *testing.T, ns string, args ...string) (stop func()) {
	t.Helper()
	c := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return func() {
		c.Process.Kill()
		c.Wait()
		if testing.Verbose() {
			t.Logf("%s:\n%s", args[0], out.String())
		}
	}
}

func run(t *testing.T, ns string, args ...string) {
	if out, err := netns.Run(context.Background(), ns, args...); err != nil {
		t.Errorf("%v\n%s", err, out)
	}
}

// record captures on ifname in ns while fn runs, and linger after it.
func record(t *testing.T, ns, ifname string, linger time.Duration, fn func()) []netns.Frame {
	t.Helper()
	c, err := netns.StartCapture(ns, ifname)
	if err != nil {
		t.Fatal(err)
	}
	fn()
	time.Sleep(linger)
	return c.Stop()
}

// write stores frames under corpusDir, each cut to snap bytes (0: as
// captured).
func write(t *testing.T, name string, frames []netns.Frame, snap int) {
	t.Helper()
	if snap > 0 {
		cut := make([]netns.Frame, len(frames))
		for i, f := range frames {
			f.Data = f.Data[:min(len(f.Data), snap)]
			cut[i] = f
		}
		frames = cut
	}
	var buf bytes.Buffer
	if err := netns.WritePcap(&buf, frames); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 400<<10 {
		t.Errorf("%s: %d bytes, over 400 KB: not written", name, buf.Len())
		return
	}
	if err := os.WriteFile(filepath.Join(corpusDir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d frames, %d bytes", name, len(frames), buf.Len())
}

// filterFrames keeps one direction: what the capturing host sent
// (outgoing) or received.
func filterFrames(frames []netns.Frame, outgoing bool) []netns.Frame {
	var out []netns.Frame
	for _, f := range frames {
		if f.Outgoing == outgoing {
			out = append(out, f)
		}
	}
	return out
}

// badLength copies frames and makes the IPv4 total length of the first
// large received data segment claim 9000 bytes: a fuzzed or corrupted
// length field, far beyond what was captured.
func badLength(frames []netns.Frame) []netns.Frame {
	out := cloneFrames(frames)
	for i := range out {
		d := out[i].Data
		if !out[i].Outgoing && len(d) >= 34 && binary.BigEndian.Uint16(d[12:]) == 0x0800 && binary.BigEndian.Uint16(d[16:]) > 1000 {
			binary.BigEndian.PutUint16(d[16:], 9000)
			break
		}
	}
	return out
}

// zeroLength copies frames and zeroes the IPv4 total length of every
// outgoing data segment, as captures of TSO super-segments show it.
func zeroLength(frames []netns.Frame) []netns.Frame {
	out := cloneFrames(frames)
	for i := range out {
		d := out[i].Data
		if out[i].Outgoing && len(d) >= 34 && binary.BigEndian.Uint16(d[12:]) == 0x0800 && binary.BigEndian.Uint16(d[16:]) > 1000 {
			binary.BigEndian.PutUint16(d[16:], 0)
		}
	}
	return out
}

func cloneFrames(frames []netns.Frame) []netns.Frame {
	out := make([]netns.Frame, len(frames))
	for i, f := range frames {
		f.Data = append([]byte(nil), f.Data...)
		out[i] = f
	}
	return out
}
