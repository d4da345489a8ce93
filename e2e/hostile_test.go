//go:build linux

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

const (
	// hostilePPS and hostileFor are the rate and length of the hostile
	// flood; hostileBatch transfers of hostileSize run again and again
	// meanwhile.
	hostilePPS   = 20000
	hostileFor   = 6 * time.Second
	hostileBatch = 10
	hostileSize  = 1 << 20
	// hostileSport is the first source port of the hostile packets, below
	// the client's ephemeral ports.
	hostileSport = 2000
)

// TestHostilePackets floods the daemon's queues with hostilePackets
// (bad option lengths, options past the header, truncated headers, data
// offsets below 5 and past the packet, every option kind in a SYN,
// duplicated options, IPv6 extension header chains, IPv4 fragments, bad
// checksums) over IPv4 and IPv6 from a raw socket on the client while real
// transfers run through the same gateway: every transfer completes, no
// worker panics or stops, every queue stays bound, and the malformed SYNs
// are counted.
func TestHostilePackets(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	d := startDaemon(t, l, labPolicy(normalize.Policy{WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip, StripUnknown: true, MSSMax: 1200}))
	ctx := context.Background()
	var pkts [][]byte
	kinds, malformed := 0, 0
	for _, v6 := range []bool{false, true} {
		src := lab.ClientV4
		if v6 {
			src = lab.ClientV6
		}
		for _, p := range hostilePackets(src, lab.ServerAddr(v6), hostileSport, lab.SMTPPort) {
			pkts = append(pkts, p.Data)
			kinds++
			if p.Malformed {
				malformed++
			}
		}
	}
	before := metrics(t, d)

	type injected struct {
		st  injectStats
		err error
	}
	flood := make(chan injected, 1)
	go func() {
		st, err := inject(ctx, l.Client, pkts, hostilePPS, hostileFor)
		flood <- injected{st, err}
	}()
	var results []lab.TransferResult
	var fl injected
	for done := false; !done; {
		for _, v6 := range []bool{false, true} {
			rs, err := runBatch(l, v6, hostileBatch, hostileSize)
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, rs...)
		}
		select {
		case fl = <-flood:
			done = true
		default:
		}
	}
	if fl.err != nil {
		t.Fatalf("Inject: %v", fl.err)
	}
	after := metrics(t, d)

	ok := countOK(t, "transfer during the flood", results)
	delta := func(subs ...string) float64 {
		return metricValue(after, "tcpnorm_packets_total", subs...) - metricValue(before, "tcpnorm_packets_total", subs...)
	}
	t.Logf("flood: %d kinds of hostile packet, %d sent in %d rounds (%.0f/s), %d refused by the sender's kernel; %d/%d transfers completed meanwhile",
		kinds, fl.st.Sent, fl.st.Rounds, float64(fl.st.Sent)/hostileFor.Seconds(), fl.st.Failed, ok, len(results))
	t.Logf("verdicts during the flood by reason: %s", reasons(before, after))
	t.Logf("kernel queue drops (fail-open accepts): %.0f, user drops %.0f",
		metricValue(after, "tcpnorm_kernel_queue_dropped_total"), metricValue(after, "tcpnorm_kernel_queue_user_dropped_total"))

	if !d.Running() {
		t.Fatalf("the daemon exited during the flood:\n%s", d.Log())
	}
	if v := metricValue(after, "tcpnorm_worker_panics_total"); v != 0 {
		t.Errorf("%.0f worker panics", v)
	}
	if v := delta(`reason="error"`); v != 0 {
		t.Errorf("%.0f packets answered after an internal error", v)
	}
	if v := metricValue(after, "tcpnorm_kernel_queue_bound"); v != 4 {
		t.Errorf("%.0f of 4 queues bound after the flood", v)
	}
	if fl.st.Rounds == 0 {
		t.Fatalf("not one round of hostile packets sent")
	}
	if v := delta(`reason="malformed"`); v < float64(fl.st.Rounds*malformed) {
		t.Errorf("%.0f malformed SYNs counted in %d rounds of %d; want at least %d", v, fl.st.Rounds, malformed, fl.st.Rounds*malformed)
	}
	if v := delta(`reason="applied"`); v == 0 {
		t.Errorf("no SYN rewritten during the flood")
	}
}

// reasons lists the growth of tcpnorm_packets_total between two scrapes,
// by reason and verdict.
func reasons(before, after string) string {
	sum := func(text string) map[string]float64 {
		m := map[string]float64{}
		for _, ln := range strings.Split(text, "\n") {
			if !strings.HasPrefix(ln, "tcpnorm_packets_total{") {
				continue
			}
			labels, val, _ := strings.Cut(ln, "} ")
			var reason, verdict string
			for _, kv := range strings.Split(strings.TrimPrefix(labels, "tcpnorm_packets_total{"), ",") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "reason":
					reason = strings.Trim(v, `"`)
				case "verdict":
					verdict = strings.Trim(v, `"`)
				}
			}
			var f float64
			fmt.Sscan(val, &f)
			m[reason+"/"+verdict] += f
		}
		return m
	}
	b, a := sum(before), sum(after)
	var out []string
	for k, v := range a {
		if d := v - b[k]; d > 0 {
			out = append(out, fmt.Sprintf("%s %.0f", k, d))
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
