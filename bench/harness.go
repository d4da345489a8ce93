//go:build linux

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// Ports the servers listen on. Bulk server i listens on IperfPort+i.
const (
	IperfPort = 5201
	ConnPort  = 5300
	// MetricsAddr is tcpnorm's /metrics listener, inside the gateway.
	MetricsAddr = "127.0.0.1:9464"
)

// Options are the harness settings.
type Options struct {
	Bin      string        // directory holding tcpnorm, naiveq, connload, cq
	Runs     int           // rounds; each runs every configuration once
	Bulk     time.Duration // iperf3 time per configuration and round
	Conn     time.Duration // flat-out short connections
	Lat      time.Duration // paced short connections, for latency
	Streams  int           // parallel streams of each iperf3 client
	ConnConc int           // goroutines of the flat-out phase
	LatRate  float64       // connections a second of the latency phase
	Srcs     int           // client source addresses
	Queues   int           // queues per range, as tcpnorm's [queue] count
	Configs  []string      // configuration names, in the order of round 0
	PerfDir  string        // if set, `perf record -g` the consumer into it
	Log      io.Writer     `json:"-"`
}

// Harness runs configurations on one topology.
type Harness struct {
	opt      Options
	topo     *Topo
	bulkSrcs []netip.Addr // one per queue: bulk flows spread over the queues
	hashMap  map[uint16]int
	servers  []*netns.Proc
	tmp      string
}

// Sample is one configuration measured in one round.
type Sample struct {
	Config      string             `json:"config"`
	Round       int                `json:"round"`
	Err         string             `json:"error,omitempty"`
	BulkGbps    float64            `json:"bulk_gbps"`
	IperfRetx   uint64             `json:"iperf_retransmits"`
	ConnPerS    float64            `json:"conn_per_s"`
	ConnErrors  int                `json:"conn_errors"`
	ConnP50us   float64            `json:"conn_p50_us"`
	ConnP99us   float64            `json:"conn_p99_us"`
	LatP50us    float64            `json:"lat_p50_us"`
	LatP99us    float64            `json:"lat_p99_us"`
	LatConns    int                `json:"lat_conns"`
	Queued      uint64             `json:"queued"`      // kernel id sequence deltas
	PerQueue    map[uint16]uint64  `json:"per_queue"`   // queued, by queue
	Handled     uint64             `json:"handled"`     // the consumer's own count
	CPUSeconds  float64            `json:"cpu_seconds"` // consumer utime+stime
	Mallocs     uint64             `json:"mallocs"`     // Go heap allocations of the consumer
	HasMallocs  bool               `json:"has_mallocs"` // Mallocs is known
	QueueDrops  uint64             `json:"queue_drops"` // queue_dropped + user_dropped
	Retrans     uint64             `json:"retrans"`     // TcpRetransSegs, client + server
	BulkQueued  uint64             `json:"bulk_queued"` // queued during the bulk phase
	BulkCPU     float64            `json:"bulk_cpu"`    // consumer CPU seconds during the bulk phase
	ConnQueued  uint64             `json:"conn_queued"` // queued during the connection phases
	ConnCPU     float64            `json:"conn_cpu"`
	Extra       map[string]float64 `json:"extra,omitempty"`
	PerfProfile string             `json:"perf_profile,omitempty"`
}

// consumer is a running queue consumer (or none) and its rules.
type consumer struct {
	proc    *netns.Proc
	tcpnorm bool
	dir     string
}

func (h *Harness) logf(format string, args ...any) {
	if h.opt.Log != nil {
		fmt.Fprintf(h.opt.Log, format+"\n", args...)
	}
}

// NewHarness builds the topology and starts the servers. Close removes it.
func NewHarness(ctx context.Context, opt Options) (*Harness, error) {
	for _, b := range []string{"tcpnorm", "naiveq", "connload", "cq"} {
		if _, err := os.Stat(filepath.Join(opt.Bin, b)); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	topo, err := NewTopo(ctx, opt.Srcs)
	if err != nil {
		return nil, err
	}
	h := &Harness{opt: opt, topo: topo}
	if h.tmp, err = os.MkdirTemp("", "tnbench-"); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.startServers(ctx); err != nil {
		h.Close()
		return nil, err
	}
	if err := h.calibrate(ctx); err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

// Topo is the harness's topology.
func (h *Harness) Topo() *Topo { return h.topo }

// Close stops the servers and removes the topology.
func (h *Harness) Close() error {
	for _, p := range h.servers {
		p.Stop()
	}
	h.servers = nil
	if h.tmp != "" {
		os.RemoveAll(h.tmp)
	}
	return h.topo.Close()
}

func (h *Harness) bin(name string) string { return filepath.Join(h.opt.Bin, name) }

func (h *Harness) startServers(ctx context.Context) error {
	p, err := netns.StartProc(ctx, h.topo.Server, "ready", 10*time.Second, h.bin("connload"), "serve", "-listen",
		netip.AddrPortFrom(ServerAddr, ConnPort).String())
	if err != nil {
		return err
	}
	h.servers = append(h.servers, p)
	for i := 0; i < h.opt.Queues; i++ {
		p, err := netns.StartProc(ctx, h.topo.Server, "Server listening", 10*time.Second, "iperf3", "-s", "--forceflush", "-B", ServerAddr.String(),
			"-p", fmt.Sprint(IperfPort+i))
		if err != nil {
			return err
		}
		h.servers = append(h.servers, p)
	}
	return nil
}

// calibrate finds, for each handshake queue, a client source address whose
// flows the kernel's balance hash puts on it, so that the bulk flows load
// every queue: the hash covers addresses only and its seed is random per
// boot, so this is measured, not computed.
func (h *Harness) calibrate(ctx context.Context) error {
	n := h.opt.Queues
	var qs []string
	for i := 0; i < n; i++ {
		qs = append(qs, fmt.Sprint(i))
	}
	p, err := netns.StartProc(ctx, h.topo.Gateway, "ready", 10*time.Second, append([]string{h.bin("naiveq")}, qs...)...)
	if err != nil {
		return err
	}
	defer p.Stop()
	if err := h.applyRules(ctx, "*mangle\n-A FORWARD -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE "+balance(0, n)+" --queue-bypass\nCOMMIT\n"); err != nil {
		return err
	}
	defer h.flushRules(ctx)
	h.hashMap = map[uint16]int{}
	byQueue := map[uint16][]netip.Addr{}
	for _, src := range h.topo.Srcs {
		before, err := h.queueStats()
		if err != nil {
			return err
		}
		if err := dialOnce(h.topo.Client, src, netip.AddrPortFrom(ServerAddr, ConnPort)); err != nil {
			return fmt.Errorf("calibrate from %s: %w", src, err)
		}
		after, err := h.queueStats()
		if err != nil {
			return err
		}
		d := DiffQueues(before, after)
		for q, c := range d.PerQueue {
			if c > 0 {
				byQueue[q] = append(byQueue[q], src)
				h.hashMap[q]++
			}
		}
	}
	for i := 0; i < n; i++ {
		if a := byQueue[uint16(i)]; len(a) > 0 {
			h.bulkSrcs = append(h.bulkSrcs, a[0])
		} else {
			h.bulkSrcs = append(h.bulkSrcs, h.topo.Srcs[i%len(h.topo.Srcs)])
		}
	}
	h.logf("bench: balance hash spreads %d source addresses over queues as %v; bulk sources %v", len(h.topo.Srcs), h.hashMap, h.bulkSrcs)
	return nil
}

// HashSpread is how many of the client's source addresses each queue got.
func (h *Harness) HashSpread() map[uint16]int { return h.hashMap }

func dialOnce(ns string, src netip.Addr, dst netip.AddrPort) error {
	return netns.InNetns(ns, func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", dst.String())
		if err != nil {
			return err
		}
		c.Write([]byte("calibrate"))
		time.Sleep(5 * time.Millisecond)
		return c.Close()
	})
}

func balance(first, n int) string {
	if n == 1 {
		return fmt.Sprintf("--queue-num %d", first)
	}
	return fmt.Sprintf("--queue-balance %d:%d", first, first+n-1)
}

func (h *Harness) applyRules(ctx context.Context, script string) error {
	_, err := netns.RunInput(ctx, h.topo.Gateway, script, "iptables-restore", "--noflush")
	return err
}

// flushRules empties the gateway's mangle FORWARD chain, where every
// configuration's rules or jump live.
func (h *Harness) flushRules(ctx context.Context) {
	netns.Run(context.WithoutCancel(ctx), h.topo.Gateway, "iptables", "-t", "mangle", "-F", "FORWARD")
}

func (h *Harness) queueStats() (map[uint16]metrics.KernelQueue, error) {
	t, err := netns.ReadNetFile(h.topo.Gateway, "netfilter/nfnetlink_queue")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return map[uint16]metrics.KernelQueue{}, nil
		}
		return nil, err
	}
	return ParseNFQueue(t)
}

// statefulRules queues what tcpnorm queues for a clamped flow: handshakes
// on the first range (with bypass), every later segment the client sends on
// the second.
func (h *Harness) statefulRules() string {
	n := h.opt.Queues
	return "*mangle\n" +
		"-A FORWARD -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE " + balance(0, n) + " --queue-bypass\n" +
		"-A FORWARD -i " + IfGwClient + " -p tcp -m tcp --tcp-flags SYN NONE -j NFQUEUE " + balance(n, n) + "\n" +
		"COMMIT\n"
}

// start sets up configuration name on the gateway.
func (h *Harness) start(ctx context.Context, name string) (*consumer, error) {
	name, _ = OnePair(name)
	n := h.opt.Queues
	var hs, st []string
	for i := 0; i < n; i++ {
		hs = append(hs, fmt.Sprint(i))
		st = append(st, fmt.Sprint(n+i))
	}
	switch name {
	case "C0":
		return &consumer{}, nil
	case "C1":
		return &consumer{}, h.applyRules(ctx, "*mangle\n-A FORWARD -p tcp -m tcp --tcp-flags SYN SYN -j TCPOPTSTRIP --strip-options wscale,timestamp\nCOMMIT\n")
	case "C2", "C2-gso":
		args := []string{h.bin("naiveq")}
		if name == "C2-gso" {
			args = append(args, "-gso")
		}
		p, err := netns.StartProc(ctx, h.topo.Gateway, "ready", 10*time.Second, append(append(args, hs...), st...)...)
		if err != nil {
			return nil, err
		}
		return &consumer{proc: p}, h.applyRules(ctx, h.statefulRules())
	case "C3-accept", "C3-rewrite":
		// tcpnorm's queue settings: whole packets copied; handshake range
		// GSO and fail-open, 4096 packets queued; stateful range no flags,
		// 32768 packets queued.
		args := []string{h.bin("cq"), strings.TrimPrefix(name, "C3-")}
		for _, q := range hs {
			args = append(args, q+":gso,failopen:65535:4096")
		}
		for _, q := range st {
			args = append(args, q+":-:65535:32768")
		}
		p, err := netns.StartProc(ctx, h.topo.Gateway, "ready", 10*time.Second, args...)
		if err != nil {
			return nil, err
		}
		return &consumer{proc: p}, h.applyRules(ctx, h.statefulRules())
	case "C3-syn":
		// T1's queueing from C: handshakes only, on the first range.
		args := []string{h.bin("cq"), "accept"}
		for _, q := range hs {
			args = append(args, q+":gso,failopen:65535:4096")
		}
		p, err := netns.StartProc(ctx, h.topo.Gateway, "ready", 10*time.Second, args...)
		if err != nil {
			return nil, err
		}
		return &consumer{proc: p}, h.applyRules(ctx, "*mangle\n-A FORWARD -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE "+balance(0, n)+" --queue-bypass\nCOMMIT\n")
	case "T0", "T1", "T2":
		return h.startTcpnorm(ctx, name)
	}
	return nil, fmt.Errorf("bench: unknown configuration %q", name)
}

// Options of T1 and T2's policy for the server's network.
var (
	policyT1 = normalize.Policy{WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip}
	policyT2 = normalize.Policy{WindowScale: normalize.WSClamp, WindowScaleMax: 8}
)

// TcpnormConfig is the tcpnorm.toml of T1 and T2.
func TcpnormConfig(queues int) string {
	return fmt.Sprintf(`policy_dir = "policies.d"

[queue]
first = 0
count = %d

[rules]
install = true
mode = "gateway"

[metrics]
listen = %q

[log]
level = "info"
`, queues, MetricsAddr)
}

// TcpnormPolicy is the policy file of T0, T1 or T2. T0 has T1's for a
// network the traffic never goes to.
func TcpnormPolicy(name string) string {
	opts, cidr := policyT1, ServerCIDR
	switch name {
	case "T0":
		cidr = OtherCIDR
	case "T2":
		opts = policyT2
	}
	opts.Direction, opts.Reason = normalize.Outbound, "benchmark"
	return config.FormatPolicy(&config.PolicyFile{CIDRs: []netip.Prefix{netip.MustParsePrefix(cidr)}, Policy: &opts})
}

func (h *Harness) startTcpnorm(ctx context.Context, name string) (*consumer, error) {
	dir, err := os.MkdirTemp(h.tmp, name+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "policies.d"), 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "tcpnorm.toml")
	if err := os.WriteFile(cfg, []byte(TcpnormConfig(h.opt.Queues)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies.d", "bench.toml"), []byte(TcpnormPolicy(name)), 0o644); err != nil {
		return nil, err
	}
	p, err := netns.StartProc(ctx, h.topo.Gateway, "msg=ready", 30*time.Second, h.bin("tcpnorm"), "run", "-c", cfg)
	if err != nil {
		return nil, err
	}
	return &consumer{proc: p, tcpnorm: true, dir: dir}, nil
}

// stop tears configuration c down and returns the consumer's final JSON line.
func (h *Harness) stop(ctx context.Context, c *consumer) (string, error) {
	var err error
	if c.tcpnorm {
		err = c.proc.Stop()
		h.flushRules(ctx)
	} else {
		h.flushRules(ctx)
		if c.proc != nil {
			err = c.proc.Stop()
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	if out, _ := netns.Run(context.WithoutCancel(ctx), h.topo.Gateway, "iptables-save"); strings.Contains(out, "NFQUEUE") || strings.Contains(out, "TCPNORM") {
		return "", fmt.Errorf("bench: rules left in the gateway after stop:\n%s", out)
	}
	if out, _ := netns.Run(context.WithoutCancel(ctx), h.topo.Gateway, "ipset", "list", "-n"); strings.TrimSpace(out) != "" {
		return "", fmt.Errorf("bench: address sets left in the gateway after stop: %s", out)
	}
	if c.proc == nil {
		return "", err
	}
	lines := c.proc.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return lines[i], err
		}
	}
	return "", err
}

type snapshot struct {
	queues  map[uint16]metrics.KernelQueue
	cpu     float64
	retrans uint64
	metrics string
}

func (h *Harness) snapshot(ctx context.Context, c *consumer) (snapshot, error) {
	var s snapshot
	var err error
	if s.queues, err = h.queueStats(); err != nil {
		return s, err
	}
	if c.proc != nil {
		if s.cpu, err = ProcCPU(c.proc.Pid()); err != nil {
			return s, err
		}
	}
	for _, ns := range []string{h.topo.Client, h.topo.Server} {
		t, err := netns.ReadNetFile(ns, "snmp")
		if err != nil {
			return s, err
		}
		v, err := netns.ParseSNMP(t, "Tcp", "RetransSegs")
		if err != nil {
			return s, err
		}
		s.retrans += v
	}
	if c.tcpnorm {
		if s.metrics, err = h.metrics(ctx); err != nil {
			return s, err
		}
	}
	return s, nil
}

// metrics fetches tcpnorm's /metrics from inside the gateway.
func (h *Harness) metrics(ctx context.Context) (string, error) {
	return netns.HTTPGet(ctx, h.topo.Gateway, "http://"+MetricsAddr+"/metrics")
}

// RunOne measures configuration name once.
func (h *Harness) RunOne(ctx context.Context, name string, round int) (s Sample) {
	s = Sample{Config: name, Round: round}
	fail := func(err error) Sample {
		s.Err = err.Error()
		h.logf("bench: %s round %d: %v", name, round, err)
		return s
	}
	c, err := h.start(ctx, name)
	if err != nil {
		if c != nil {
			h.stop(ctx, c)
		} else {
			h.flushRules(ctx)
		}
		return fail(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			h.stop(ctx, c)
		}
	}()
	s0, err := h.snapshot(ctx, c)
	if err != nil {
		return fail(err)
	}
	var perf *netns.Proc
	if h.opt.PerfDir != "" && c.proc != nil {
		s.PerfProfile = filepath.Join(h.opt.PerfDir, fmt.Sprintf("%s-r%d.perf.data", name, round))
		perf, err = netns.StartProc(ctx, h.topo.Gateway, "", 0, "perf", "record", "-g", "-q", "-o", s.PerfProfile, "-p", fmt.Sprint(c.proc.Pid()))
		if err != nil {
			return fail(err)
		}
	}
	_, onePair := OnePair(name)
	if onePair {
		restore, err := h.fewTimeWait()
		if err != nil {
			return fail(err)
		}
		defer restore()
	}
	if err := h.bulk(ctx, &s, onePair); err != nil {
		return fail(err)
	}
	sb, err := h.snapshot(ctx, c)
	if err != nil {
		return fail(err)
	}
	cr, err := h.connload(ctx, h.opt.ConnConc, 0, h.opt.Conn, onePair)
	if err != nil {
		return fail(err)
	}
	s.ConnPerS, s.ConnErrors, s.ConnP50us, s.ConnP99us = cr.ConnPerS, cr.Errors, cr.P50us, cr.P99us
	lr, err := h.connload(ctx, 1, h.opt.LatRate, h.opt.Lat, onePair)
	if err != nil {
		return fail(err)
	}
	s.LatP50us, s.LatP99us, s.LatConns = lr.P50us, lr.P99us, lr.Conns
	s.ConnErrors += lr.Errors
	if perf != nil {
		perf.Signal(syscall.SIGINT)
		perf.Stop()
	}
	s1, err := h.snapshot(ctx, c)
	if err != nil {
		return fail(err)
	}
	d := DiffQueues(s0.queues, s1.queues)
	s.Queued, s.QueueDrops, s.PerQueue = d.Packets, d.Drops, d.PerQueue
	s.CPUSeconds = s1.cpu - s0.cpu
	s.Retrans = s1.retrans - s0.retrans
	db, dc := DiffQueues(s0.queues, sb.queues), DiffQueues(sb.queues, s1.queues)
	s.BulkQueued, s.BulkCPU = db.Packets, sb.cpu-s0.cpu
	s.ConnQueued, s.ConnCPU = dc.Packets, s1.cpu-sb.cpu
	if c.tcpnorm {
		p0, _ := MetricSum(s0.metrics, "tcpnorm_packets_total")
		p1, _ := MetricSum(s1.metrics, "tcpnorm_packets_total")
		m0, ok0 := MetricSum(s0.metrics, "go_memstats_mallocs_total")
		m1, ok1 := MetricSum(s1.metrics, "go_memstats_mallocs_total")
		s.Handled = uint64(p1 - p0)
		if ok0 && ok1 {
			s.Mallocs, s.HasMallocs = uint64(m1-m0), true
		}
		e0, _ := MetricSum(s0.metrics, "tcpnorm_enobufs_total")
		e1, _ := MetricSum(s1.metrics, "tcpnorm_enobufs_total")
		s.Extra = map[string]float64{"enobufs": e1 - e0}
	}
	stopped = true
	final, err := h.stop(ctx, c)
	if err != nil {
		return fail(err)
	}
	if final != "" {
		var r struct {
			Packets *uint64 `json:"packets"`
			Mallocs *uint64 `json:"mallocs"`
			Queues  []struct {
				Packets uint64 `json:"packets"`
			} `json:"queues"`
		}
		if err := json.Unmarshal([]byte(final), &r); err == nil {
			if r.Packets != nil {
				s.Handled = *r.Packets
			}
			for _, q := range r.Queues {
				s.Handled += q.Packets
			}
			if r.Mallocs != nil {
				s.Mallocs, s.HasMallocs = *r.Mallocs, true
			}
		}
	}
	return s
}

// fewTimeWait keeps the client's TIME_WAIT sockets few while a one-pair
// configuration runs: one source address has one port range per server
// port, and without timestamps (stripped by C1 and T1) a port in
// TIME_WAIT cannot be reused, so the connection phases would run out of
// ports. The returned func restores the setting.
func (h *Harness) fewTimeWait() (func(), error) {
	const key = "net.ipv4.tcp_max_tw_buckets"
	old, err := netns.ReadSysctl(h.topo.Client, key)
	if err != nil {
		return nil, err
	}
	if err := netns.WriteSysctl(h.topo.Client, key, "1024"); err != nil {
		return nil, err
	}
	return func() { netns.WriteSysctl(h.topo.Client, key, old) }, nil
}

type iperfResult struct {
	End struct {
		SumSent struct {
			Retransmits uint64 `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// bulk runs one iperf3 client per queue, at once, from the calibrated
// source addresses; onePair: one client from the first, with as many
// streams as they have together.
func (h *Harness) bulk(ctx context.Context, s *Sample, onePair bool) error {
	secs := max(1, int(h.opt.Bulk.Round(time.Second)/time.Second))
	srcs, streams := h.bulkSrcs, h.opt.Streams
	if onePair {
		srcs, streams = h.bulkSrcs[:1], h.opt.Streams*len(h.bulkSrcs)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(srcs))
	res := make([]iperfResult, len(srcs))
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Duration(secs+20)*time.Second)
			defer cancel()
			out, err := netns.Run(cctx, h.topo.Client, "iperf3", "-c", ServerAddr.String(), "-p", fmt.Sprint(IperfPort+i),
				"-B", src.String(), "-P", fmt.Sprint(streams), "-t", fmt.Sprint(secs), "-O", "1", "-J")
			if jerr := json.Unmarshal([]byte(out), &res[i]); jerr != nil && err == nil {
				err = fmt.Errorf("iperf3 output: %w", jerr)
			}
			if err == nil && res[i].Error != "" {
				err = errors.New("iperf3: " + res[i].Error)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, r := range res {
		s.BulkGbps += r.End.SumReceived.BitsPerSecond / 1e9
		s.IperfRetx += r.End.SumSent.Retransmits
	}
	return nil
}

// ConnResult is connload's output.
type ConnResult struct {
	Conns    int     `json:"conns"`
	Errors   int     `json:"errors"`
	ConnPerS float64 `json:"conn_per_s"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	FirstErr string  `json:"first_error"`
}

// connload runs short connections from every source address, or from the
// first bulk source alone (onePair).
func (h *Harness) connload(ctx context.Context, conc int, rate float64, d time.Duration, onePair bool) (ConnResult, error) {
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	src, nsrc := h.topo.Srcs[0], len(h.topo.Srcs)
	if onePair {
		src, nsrc = h.bulkSrcs[0], 1
	}
	args := []string{h.bin("connload"), "run", "-dst", netip.AddrPortFrom(ServerAddr, ConnPort).String(),
		"-src", src.String(), "-nsrc", fmt.Sprint(nsrc), "-c", fmt.Sprint(conc), "-d", d.String()}
	if rate > 0 {
		args = append(args, "-rate", fmt.Sprint(rate))
	}
	out, err := netns.Run(cctx, h.topo.Client, args...)
	if err != nil {
		return ConnResult{}, err
	}
	var r ConnResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		return r, fmt.Errorf("connload output %q: %w", out, err)
	}
	if r.Conns == 0 {
		return r, fmt.Errorf("connload: no connection succeeded: %s", r.FirstErr)
	}
	return r, nil
}

// Hold sets configuration name up, runs fn while it is in place (to look
// at it by hand), and tears it down.
func (h *Harness) Hold(ctx context.Context, name string, fn func() error) error {
	c, err := h.start(ctx, name)
	if err != nil {
		if c != nil {
			h.stop(ctx, c)
		}
		h.flushRules(ctx)
		return err
	}
	ferr := fn()
	_, err = h.stop(ctx, c)
	return errors.Join(ferr, err)
}
