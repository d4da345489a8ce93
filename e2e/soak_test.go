//go:build linux && soak

package e2e

// Soak tests: long runs under load, in `make soak` (build tag soak), not
// `make test`.

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
)

var leakFor = flag.Duration("leak", 10*time.Minute, "how long TestSoakLeak runs after its warm-up")

// leakSampleEvery is how often TestSoakLeak reads the daemon's runtime
// metrics.
const leakSampleEvery = 5 * time.Second

const (
	// floodSYNs spoofed SYNs from floodSources addresses arrive at up to
	// floodPPS while a legitimate connection is made every floodEvery.
	floodSYNs    = 1_000_000
	floodSources = 8192
	floodPorts   = 16
	floodPPS     = 30000
	floodEvery   = time.Second
	// floodRSSGrowth bounds how much the daemon's peak RSS may exceed its
	// RSS at ready: its tables are allocated at start, so a flood can only
	// touch pages already reserved.
	floodRSSGrowth = 32 << 20
)

// rss reads VmRSS and VmHWM (peak) of pid, in bytes.
func rss(t *testing.T, pid int) (now, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range strings.Split(string(b), "\n") {
		var kb int64
		switch {
		case strings.HasPrefix(ln, "VmRSS:"):
			fmt.Sscan(strings.TrimPrefix(ln, "VmRSS:"), &kb)
			now = kb << 10
		case strings.HasPrefix(ln, "VmHWM:"):
			fmt.Sscan(strings.TrimPrefix(ln, "VmHWM:"), &kb)
			peak = kb << 10
		}
	}
	return now, peak
}

// TestSoakSYNFlood sends floodSYNs SYNs from floodSources spoofed
// addresses to the MX under a clamp policy: the daemon's RSS stays within
// floodRSSGrowth of its RSS at ready, handshake evictions are counted, and
// the legitimate connections made meanwhile are still clamped.
func TestSoakSYNFlood(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	d := startDaemon(t, l, labPolicy(lab.ClampOptions(2)))
	ctx := context.Background()
	srcs := make([]netip.Addr, floodSources)
	for i := range srcs {
		srcs[i] = netip.AddrFrom4([4]byte{198, 18, 128 + byte(i>>8&0x7f), byte(i)})
	}
	syns := makeSYNs(srcs, lab.ServerAddr(false), hostileSport, lab.SMTPPort, floodSources*floodPorts)
	rss0, _ := rss(t, d.Pid())
	m0 := metrics(t, d)

	done := make(chan injectStats, 1)
	go func() {
		var total injectStats
		for total.Sent < floodSYNs {
			st, err := inject(ctx, l.Client, syns, floodPPS, 10*time.Second)
			if err != nil {
				t.Error(err)
				break
			}
			total.Sent += st.Sent
			total.Failed += st.Failed
		}
		done <- total
	}()
	start := time.Now()
	legit, clamped := 0, 0
	var fl injectStats
	for running := true; running; {
		select {
		case fl = <-done:
			running = false
			continue
		case <-time.After(floodEvery):
		}
		tr := lab.Transfer{Dst: lab.ServerAddr(false), Size: 64 << 10, Dir: lab.Download, Timeout: okTimeout}
		r, cseg, sseg := transfer(t, l, tr)
		legit++
		if !r.OK {
			t.Errorf("legitimate connection during the flood: %s", r)
			continue
		}
		syn, ok1 := firstSYN(sseg, tr.Dst, false)
		synack, ok2 := firstSYN(cseg, tr.Dst, true)
		if ok1 && ok2 && syn.WScale == 2 && synack.WScale == 2 {
			clamped++
		} else {
			t.Errorf("legitimate connection during the flood not clamped: SYN at server [%s], SYN-ACK at client [%s]", syn.Options, synack.Options)
		}
	}
	elapsed := time.Since(start)
	m1 := metrics(t, d)
	now, peak := rss(t, d.Pid())
	ev := metricValue(m1, "tcpnorm_evictions_total", `table="handshake"`) - metricValue(m0, "tcpnorm_evictions_total", `table="handshake"`)
	syn := metricValue(m1, "tcpnorm_packets_total", `reason="applied"`) - metricValue(m0, "tcpnorm_packets_total", `reason="applied"`)
	t.Logf("flood: %d SYNs (%d flows from %d addresses) in %.0fs (%.0f/s), %d refused; %.0f handshakes normalized, %.0f handshake evictions",
		fl.Sent, len(syns), floodSources, elapsed.Seconds(), float64(fl.Sent)/elapsed.Seconds(), fl.Failed, syn, ev)
	t.Logf("daemon RSS: %.1f MiB at ready, %.1f MiB after, peak %.1f MiB ([flows] max 262144, 2 queues); legitimate connections: %d/%d clamped",
		float64(rss0)/(1<<20), float64(now)/(1<<20), float64(peak)/(1<<20), clamped, legit)
	if peak-rss0 > floodRSSGrowth {
		t.Errorf("peak RSS %d bytes, %d above its RSS at ready; want at most %d above", peak, peak-rss0, floodRSSGrowth)
	}
	if ev == 0 {
		t.Errorf("no handshake eviction counted for %d flows", len(syns))
	}
	if legit == 0 {
		t.Errorf("no legitimate connection made during the flood")
	}
}

// TestSoakLeak runs connections, reloads and DNS changes through the daemon
// for a warm-up minute and then *leakFor: its goroutines, open file
// descriptors and heap do not grow after the warm-up.
func TestSoakLeak(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	d := startShortTTLDaemon(t, l, labPolicy(stormOptions[0]))
	pdir := d.Dir + "/policies.d"
	type sample struct{ goroutines, fds, heap float64 }
	read := func() sample {
		m := metrics(t, d)
		return sample{metricValue(m, "go_goroutines"), metricValue(m, "process_open_fds"), metricValue(m, "go_memstats_heap_inuse_bytes")}
	}
	warmUp := time.Minute
	end := time.Now().Add(warmUp + *leakFor)
	var warm sample
	var samples []sample
	var last time.Time
	conns, reloads, dnsChanges := 0, 0, 0
	for i := 0; time.Now().Before(end); i++ {
		rs, err := runBatch(l, i%2 == 1, 10, 64<<10)
		if err != nil {
			t.Fatal(err)
		}
		conns += countOK(t, "connection", rs)
		if i%4 == 0 {
			text := labPolicy(stormOptions[i/4%len(stormOptions)]).Text()
			if err := os.WriteFile(pdir+"/"+lab.Domain+".toml", []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			d.Signal(syscall.SIGHUP)
			reloads++
		}
		if i%10 == 0 {
			a := lab.DNSAnswers{TTL: dnsFaultTTL}
			if i/10%2 == 1 {
				a.V4, a.V6 = lab.OtherV4, lab.OtherV6
			}
			l.SetDNS(a)
			dnsChanges++
		}
		time.Sleep(200 * time.Millisecond)
		if time.Now().After(end.Add(-*leakFor)) && time.Since(last) >= leakSampleEvery {
			last = time.Now()
			if samples = append(samples, read()); len(samples) == 1 {
				warm = samples[0]
				t.Logf("after warm-up: %.0f goroutines, %.0f fds, heap %.1f MiB", warm.goroutines, warm.fds, warm.heap/(1<<20))
			}
		}
	}
	final := read()
	// The heap in use swings with the collector (up to twice the live
	// heap); its lows, right after a collection, follow the live heap.
	q := max(len(samples)/4, 1)
	low := func(ss []sample) float64 {
		m := ss[0].heap
		for _, s := range ss {
			m = min(m, s.heap)
		}
		return m
	}
	early, late := low(samples[:q]), low(samples[len(samples)-q:])
	t.Logf("after %s more: %d connections, %d reloads, %d DNS changes; %.0f goroutines, %.0f fds; heap in use at its lows %.1f MiB in the first quarter, %.1f MiB in the last (%d samples)",
		*leakFor, conns, reloads, dnsChanges, final.goroutines, final.fds, early/(1<<20), late/(1<<20), len(samples))
	// Goroutines and descriptors come and go with connections to the
	// metrics listener and DNS queries in flight: a few, not a trend.
	if final.goroutines > warm.goroutines+8 || final.fds > warm.fds+8 {
		t.Errorf("goroutines %.0f -> %.0f, fds %.0f -> %.0f after warm-up", warm.goroutines, final.goroutines, warm.fds, final.fds)
	}
	if late > early*1.05+4<<20 {
		t.Errorf("heap in use at its lows grew from %.1f to %.1f MiB", early/(1<<20), late/(1<<20))
	}
}
