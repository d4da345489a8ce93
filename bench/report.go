//go:build linux

package bench

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Results is everything one harness run measured, as tnbench writes it.
type Results struct {
	Command    string            `json:"command"`
	Started    string            `json:"started"`
	Env        map[string]string `json:"env"`
	Options    Options           `json:"options"`
	HashSpread map[uint16]int    `json:"hash_spread"`
	Samples    []Sample          `json:"samples"`
	// AllocBench is the per-packet allocation benchmark output (go test).
	AllocBench    string `json:"alloc_bench,omitempty"`
	AllocBenchCmd string `json:"alloc_bench_cmd,omitempty"`
}

// Describe says what each configuration is.
var Describe = map[string]string{
	"C0":         "kernel forwarding, no rules",
	"C1":         "kernel TCPOPTSTRIP wscale,timestamp on SYNs",
	"C2":         "naive go-nfqueue accept-all, default flags",
	"C2-gso":     "naive go-nfqueue accept-all, GSO flag",
	"C3-accept":  "C libnetfilter_queue, accept",
	"C3-rewrite": "C libnetfilter_queue, window rewrite + checksum",
	"C3-syn":     "C libnetfilter_queue, accept, handshakes only (T1's queueing)",
	"T0":         "tcpnorm, strip policy for another network (nothing queued)",
	"T1":         "tcpnorm, strip policy (handshakes queued)",
	"T2":         "tcpnorm, clamp policy (every client segment queued)",
	"C1-1p":      "C1, one source address (one queue)",
	"T1-1p":      "T1, one source address (one queue)",
	"C3-syn-1p":  "C3-syn, one source address (one queue)",
}

// DefaultConfigs is the order of the first round.
// Each tcpnorm configuration runs next to those it is compared with.
var DefaultConfigs = []string{"C0", "T0", "C1", "T1", "C3-syn", "C1-1p", "T1-1p", "C3-syn-1p", "C3-accept", "C3-rewrite", "T2", "C2", "C2-gso"}

// onePairSuffix marks a configuration run from one client source address:
// one address pair, which the balance hash always puts on one queue (one
// mail server talking to one MX).
const onePairSuffix = "-1p"

// OnePair reports whether configuration name runs from one source address,
// and the configuration it is otherwise.
func OnePair(name string) (base string, ok bool) { return strings.CutSuffix(name, onePairSuffix) }

// Median of xs; NaN when empty.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// byConfigRound indexes the good samples.
func (r *Results) byConfigRound() map[string]map[int]Sample {
	m := map[string]map[int]Sample{}
	for _, s := range r.Samples {
		if s.Err != "" {
			continue
		}
		if m[s.Config] == nil {
			m[s.Config] = map[int]Sample{}
		}
		m[s.Config][s.Round] = s
	}
	return m
}

// med is the median of f over config's good samples.
func (r *Results) med(config string, f func(Sample) (float64, bool)) float64 {
	var xs []float64
	for _, s := range r.Samples {
		if s.Config != config || s.Err != "" {
			continue
		}
		if v, ok := f(s); ok {
			xs = append(xs, v)
		}
	}
	return Median(xs)
}

// ratio is the median over rounds of f(a)/f(b) within each round: ratios
// of the same round share the machine's state.
func (r *Results) ratio(a, b string, f func(Sample) float64) (float64, int) {
	idx := r.byConfigRound()
	var xs []float64
	for round, sa := range idx[a] {
		sb, ok := idx[b][round]
		if !ok || f(sb) == 0 {
			continue
		}
		xs = append(xs, f(sa)/f(sb))
	}
	return Median(xs), len(xs)
}

// diff is the median over rounds of f(a)-f(b) within each round.
func (r *Results) diff(a, b string, f func(Sample) float64) float64 {
	idx := r.byConfigRound()
	var xs []float64
	for round, sa := range idx[a] {
		if sb, ok := idx[b][round]; ok {
			xs = append(xs, f(sa)-f(sb))
		}
	}
	return Median(xs)
}

// spread is max - min of f over config's good samples: how far the
// configuration moves from round to round on its own.
func (r *Results) spread(config string, f func(Sample) float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range r.Samples {
		if s.Config == config && s.Err == "" {
			lo, hi = min(lo, f(s)), max(hi, f(s))
		}
	}
	if lo > hi {
		return math.NaN()
	}
	return hi - lo
}

func (r *Results) configs() []string {
	var cs []string
	for _, c := range r.Options.Configs {
		cs = append(cs, c)
	}
	return cs
}

func num(v float64, prec int) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// Target is one of issue 6's targets, evaluated.
type Target struct {
	Name     string
	Measured string
	Pass     bool
	Known    bool
}

// Targets evaluates the targets on the results.
func (r *Results) Targets() []Target {
	bulk := func(s Sample) float64 { return s.BulkGbps }
	conn := func(s Sample) float64 { return s.ConnPerS }
	var ts []Target
	add := func(name string, v float64, n int, ok func(float64) bool, format string) {
		t := Target{Name: name, Known: !math.IsNaN(v)}
		if t.Known {
			t.Pass = ok(v)
			t.Measured = fmt.Sprintf(format, v)
			if n > 0 {
				t.Measured += fmt.Sprintf(" (median of %d rounds)", n)
			}
		} else {
			t.Measured = "not measured"
		}
		ts = append(ts, t)
	}
	v, n := r.ratio("T1", "C1", bulk)
	add("T1 bulk >= 0.97 x C1", v, n, func(x float64) bool { return x >= 0.97 }, "%.3f")
	v, n = r.ratio("T1", "C0", bulk)
	add("T1 bulk vs C0 (reported)", v, n, func(float64) bool { return true }, "%.3f")
	v, n = r.ratio("T1", "C1", conn)
	add("T1 conn/s >= 0.90 x C1", v, n, func(x float64) bool { return x >= 0.90 }, "%.3f")
	v = r.diff("T1", "C0", func(s Sample) float64 { return s.LatP50us })
	add("T1 added handshake p50 <= 50 us over C0", v, 0, func(x float64) bool { return x <= 50 }, "%.1f us")
	v = r.diff("T1", "C0", func(s Sample) float64 { return s.LatP99us })
	add("T1 added handshake p99 over C0 (reported)", v, 0, func(float64) bool { return true }, "%.1f us")
	v = r.diff("C3-syn", "C0", func(s Sample) float64 { return s.LatP50us })
	add("C3-syn added handshake p50 over C0 (reported)", v, 0, func(float64) bool { return true }, "%.1f us")
	v = r.diff("T1", "C3-syn", func(s Sample) float64 { return s.LatP50us })
	add("T1 handshake p50 over C3-syn (reported)", v, 0, func(float64) bool { return true }, "%.1f us")
	v, n = r.ratio("T2", "C3-rewrite", bulk)
	add("T2 bulk >= 1.0 x C3 rewrite", v, n, func(x float64) bool { return x >= 1.0 }, "%.3f")
	v, n = r.ratio("T2", "C2", bulk)
	add("T2 bulk >= 3 x C2 (same flags: none on the later-segment queues)", v, n, func(x float64) bool { return x >= 3 }, "%.3f")
	v, n = r.ratio("T2", "C2-gso", bulk)
	add("T2 bulk vs C2 with GSO (reported)", v, n, func(float64) bool { return true }, "%.3f")
	v = r.med("T2", func(s Sample) (float64, bool) { return float64(s.QueueDrops), true })
	add("T2 0 kernel queue drops", v, 0, func(x float64) bool { return x == 0 }, "%.0f (median)")
	var worst float64 = math.NaN()
	for _, s := range r.Samples {
		if s.Config == "T2" && s.Err == "" && (math.IsNaN(worst) || float64(s.QueueDrops) > worst) {
			worst = float64(s.QueueDrops)
		}
	}
	add("T2 kernel queue drops, worst round", worst, 0, func(x float64) bool { return x == 0 }, "%.0f")

	// Issue 12: traffic no policy names stays in the kernel; one pair.
	v, n = r.ratio("T0", "C0", bulk)
	add("T0 bulk >= 0.98 x C0", v, n, func(x float64) bool { return x >= 0.98 }, "%.3f")
	v, n = r.ratio("T0", "C0", conn)
	add("T0 conn/s >= 0.98 x C0", v, n, func(x float64) bool { return x >= 0.98 }, "%.3f")
	noise := r.spread("C0", func(s Sample) float64 { return s.LatP50us })
	v = r.diff("T0", "C0", func(s Sample) float64 { return s.LatP50us })
	add(fmt.Sprintf("T0 added handshake p50 over C0 within noise (C0's own p50 spread over rounds: %s us)", num(noise, 1)), v, 0,
		func(x float64) bool { return x <= noise }, "%.1f us")
	v = r.med("T0", func(s Sample) (float64, bool) { return float64(s.Queued), true })
	add("T0 0 packets queued", v, 0, func(x float64) bool { return x == 0 }, "%.0f (median)")
	v, n = r.ratio("T1-1p", "C3-syn-1p", conn)
	add("T1-1p conn/s >= 1.0 x C3-syn-1p (the C consumer on the same queue)", v, n, func(x float64) bool { return x >= 1.0 }, "%.3f")
	v, n = r.ratio("T1-1p", "C1-1p", conn)
	add("T1-1p conn/s vs C1-1p (reported)", v, n, func(float64) bool { return true }, "%.3f")
	v, n = r.ratio("C3-syn-1p", "C1-1p", conn)
	add("C3-syn-1p conn/s vs C1-1p (reported)", v, n, func(float64) bool { return true }, "%.3f")
	v = r.diff("T1-1p", "C3-syn-1p", func(s Sample) float64 { return s.LatP50us })
	add("T1-1p handshake p50 over C3-syn-1p (reported)", v, 0, func(float64) bool { return true }, "%.1f us")
	v, n = r.ratio("T1-1p", "C1-1p", bulk)
	add("T1-1p bulk vs C1-1p (reported)", v, n, func(float64) bool { return true }, "%.3f")
	return ts
}

// Markdown is the "## Daemon benchmarks" section.
func (r *Results) Markdown() string {
	var b strings.Builder
	b.WriteString("## Daemon benchmarks\n\n")
	b.WriteString("Generated by `make bench` (bench/cmd/tnbench); do not edit by hand, re-run it.\n\n")
	fmt.Fprintf(&b, "Command: `%s`  \n", r.Command)
	fmt.Fprintf(&b, "Started: %s  \n", r.Started)
	var keys []string
	for k := range r.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s  \n", k, r.Env[k])
	}
	o := r.Options
	fmt.Fprintf(&b, "\nTopology: client -- gateway -- server network namespaces joined by veth pairs (MTU 1500, default offloads), "+
		"conntrack on in the gateway in every configuration, %d client source addresses. "+
		"%d rounds; each round runs every configuration once, in the order %s on even rounds and reversed on odd ones. "+
		"Each configuration and round: bulk = %d iperf3 clients at once (one per queue: their source addresses were picked so the balance hash puts each on its own queue; %d streams each, %s, first second omitted); "+
		"conn/s = short connections (connect, send 16 bytes, close) from %d goroutines for %s over all source addresses; "+
		"handshake latency = connect() time of paced connections (%g a second, %s). "+
		"CPU and allocations per queued packet are over the whole configuration run (bulk + both connection phases). "+
		"Queued packets and drops come from /proc/net/netfilter/nfnetlink_queue (id sequence, queue_dropped + user_dropped), retransmissions from TcpRetransSegs in the client and server namespaces.\n\n",
		o.Srcs, o.Runs, strings.Join(o.Configs, ", "), o.Queues, o.Streams, o.Bulk, o.ConnConc, o.Conn, o.LatRate, o.Lat)
	fmt.Fprintf(&b, "C2 and C3 queue what T2 queues (every SYN and SYN-ACK on queues 0..%d with --queue-bypass; every later segment the client sends on queues %d..%d). "+
		"C3 binds them as tcpnorm does (whole packets copied; handshake range: GSO + fail-open, 4096 packets queued; later-segment range: no flags, 32768 packets queued); C2 binds all of them with no flags, C2-gso with the GSO flag. "+
		"C3-syn queues what T1 queues (every SYN and SYN-ACK on queues 0..%d, GSO + fail-open, --queue-bypass) and accepts each packet: the least any userspace consumer of T1's queue adds. "+
		"T1's policy strips window scale and timestamps (as C1); T2's clamps window scale to 8 (both ends offer 10 here, from tcp_rmem's 32 MiB maximum), so every later segment the client sends is queued and rewritten. "+
		"tcpnorm queues only handshakes whose remote address is in its kernel address sets (every address a policy names): T0 runs T1's policy for %s, a network the traffic never goes to, so nothing should be queued.\n\n",
		o.Queues-1, o.Queues, 2*o.Queues-1, o.Queues-1, OtherCIDR)
	fmt.Fprintf(&b, "The -1p rows are one client/server address pair (one MTA, one MX): bulk = one iperf3 client with %d streams and conn/s and latency from one source address, "+
		"which the addresses-only balance hash puts on one queue of the %d (the per-queue column of every round shows which), so one worker does all the work. "+
		"While they run, the client keeps at most 1024 TIME_WAIT sockets (net.ipv4.tcp_max_tw_buckets): one address pair has one port range, and without timestamps a port in TIME_WAIT cannot be reused.\n\n",
		o.Streams*o.Queues, o.Queues)

	b.WriteString("### Medians\n\n")
	b.WriteString("| config | what | bulk Gbit/s | conn/s | handshake p50 us | p99 us | added p50 vs C0 us | queued pkts | CPU us/pkt | bulk / conn phases | Go allocs/pkt | queue drops | retrans |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.configs() {
		f := func(g func(Sample) float64) float64 {
			return r.med(c, func(s Sample) (float64, bool) { return g(s), true })
		}
		cpu := r.med(c, func(s Sample) (float64, bool) {
			return s.CPUSeconds / float64(s.Queued) * 1e6, s.Queued > 0
		})
		cpuBulk := r.med(c, func(s Sample) (float64, bool) {
			return s.BulkCPU / float64(s.BulkQueued) * 1e6, s.BulkQueued > 0
		})
		cpuConn := r.med(c, func(s Sample) (float64, bool) {
			return s.ConnCPU / float64(s.ConnQueued) * 1e6, s.ConnQueued > 0
		})
		allocs := r.med(c, func(s Sample) (float64, bool) {
			return float64(s.Mallocs) / float64(s.Queued), s.HasMallocs && s.Queued > 0
		})
		added := r.diff(c, "C0", func(s Sample) float64 { return s.LatP50us })
		errs := 0
		for _, s := range r.Samples {
			if s.Config == c && s.Err != "" {
				errs++
			}
		}
		name := c
		if errs > 0 {
			name += fmt.Sprintf(" (%d failed)", errs)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n", name, Describe[c],
			num(f(func(s Sample) float64 { return s.BulkGbps }), 2),
			num(f(func(s Sample) float64 { return s.ConnPerS }), 0),
			num(f(func(s Sample) float64 { return s.LatP50us }), 1),
			num(f(func(s Sample) float64 { return s.LatP99us }), 1),
			num(added, 1),
			num(f(func(s Sample) float64 { return float64(s.Queued) }), 0),
			num(cpu, 2), num(cpuBulk, 2), num(cpuConn, 2), num(allocs, 1),
			num(f(func(s Sample) float64 { return float64(s.QueueDrops) }), 0),
			num(f(func(s Sample) float64 { return float64(s.Retrans) }), 0))
	}
	b.WriteString("\n### Targets (issues 6 and 12)\n\n| target | measured | result |\n|---|---|---|\n")
	for _, t := range r.Targets() {
		res := "missed"
		switch {
		case !t.Known:
			res = "n/a"
		case strings.Contains(t.Name, "(reported)"):
			res = "-"
		case t.Pass:
			res = "met"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", t.Name, t.Measured, res)
	}
	if r.AllocBench != "" {
		b.WriteString("\n### Heap allocations per packet, by whose code\n\n")
		fmt.Fprintf(&b, "`%s`:\n\n```\n%s\n```\n\n", r.AllocBenchCmd, strings.TrimSpace(r.AllocBench))
		b.WriteString("The Go allocs/pkt column above is the whole daemon (go_memstats_mallocs_total delta over queued packets): the queue workers' receive and verdict paths, the runtime and metrics scrapes included. The benchmarks above are tcpnorm's per-packet path alone (parse, normalize, verdict), driven with in-memory queue messages.\n")
	}
	b.WriteString("\n### Every round\n\n| config | round | bulk Gbit/s | conn/s | p50 us | p99 us | queued | handled | CPU s | drops | retrans | per queue | error |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, s := range r.Samples {
		var pq []string
		for q := uint16(0); q < 64; q++ {
			if v, ok := s.PerQueue[q]; ok {
				pq = append(pq, fmt.Sprintf("%d:%d", q, v))
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %.2f | %.0f | %.1f | %.1f | %d | %d | %.2f | %d | %d | %s | %s |\n", s.Config, s.Round,
			s.BulkGbps, s.ConnPerS, s.LatP50us, s.LatP99us, s.Queued, s.Handled, s.CPUSeconds, s.QueueDrops, s.Retrans,
			strings.Join(pq, " "), strings.ReplaceAll(s.Err, "|", "/"))
	}
	return b.String()
}

// sectionHeader starts the section the harness owns in BENCHMARKS.md.
const sectionHeader = "## Daemon benchmarks"

// ReplaceSection returns doc with the "## Daemon benchmarks" section (up to
// the next "## " heading) replaced by section, or section appended.
func ReplaceSection(doc, section string) string {
	section = strings.TrimRight(section, "\n") + "\n"
	lines := strings.SplitAfter(doc, "\n")
	start, end := -1, len(lines)
	inFence := false
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(t, "```") {
			inFence = !inFence
		}
		if inFence {
			continue
		}
		if start < 0 && t == sectionHeader {
			start = i
			continue
		}
		if start >= 0 && strings.HasPrefix(t, "## ") {
			end = i
			break
		}
	}
	if start < 0 {
		if doc == "" {
			return "# Benchmarks\n\n" + section
		}
		if !strings.HasSuffix(doc, "\n") {
			doc += "\n"
		}
		return doc + "\n" + section
	}
	rest := strings.Join(lines[end:], "")
	if rest != "" {
		section += "\n"
	}
	return strings.Join(lines[:start], "") + section + rest
}

// UpdateFile writes the section into path, creating the file if needed.
func UpdateFile(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.WriteFile(path, []byte(ReplaceSection(string(b), section)), 0o644)
}
