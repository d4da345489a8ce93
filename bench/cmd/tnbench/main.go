//go:build linux

// Command tnbench runs the daemon benchmarks (`make bench`) and writes their
// section of BENCHMARKS.md.
//
//	tnbench run -bin DIR [-quick] [-runs N] [-out results.json] [-md BENCHMARKS.md] [-configs C0,T1,...] [-perf DIR] [-allocbench]
//	tnbench report -in results.json [-md BENCHMARKS.md]
//
// run needs root. It builds a client -- gateway -- server namespace
// topology, measures every configuration in alternating order for -runs
// rounds, and removes every namespace and process it started on every exit
// path, SIGINT and SIGTERM included. report regenerates the markdown section
// from a results file; without -md it prints it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/bench"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "run":
		os.Exit(cmdRun(os.Args[2:]))
	case "report":
		os.Exit(cmdReport(os.Args[2:]))
	case "hold":
		os.Exit(cmdHold(os.Args[2:]))
	}
	usage()
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tnbench run -bin DIR [-quick] [-runs N] [-out FILE] [-md FILE] [-configs LIST] [-perf DIR] [-allocbench]\n       tnbench report -in FILE [-md FILE]")
	os.Exit(2)
}

func cmdRun(args []string) int {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	bin := fs.String("bin", "", "directory holding tcpnorm, naiveq, connload and cq")
	quick := fs.Bool("quick", false, "smoke run: one round, short phases (about 2 minutes)")
	runs := fs.Int("runs", 0, "rounds (default 5, quick 1)")
	out := fs.String("out", "", "write the results as JSON to FILE")
	md := fs.String("md", "", "update the \"## Daemon benchmarks\" section of FILE")
	configs := fs.String("configs", strings.Join(bench.DefaultConfigs, ","), "configurations, in the order of the first round")
	perf := fs.String("perf", "", "record `perf record -g` profiles of the consumers into DIR")
	allocBench := fs.Bool("allocbench", false, "also run the per-packet allocation benchmarks of nfq (go test)")
	fs.Parse(args)
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "tnbench run: -bin is required")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tnbench run: needs root (network namespaces, iptables, NFQUEUE)")
		return 1
	}
	opt := bench.Options{
		Bin: *bin, Runs: 5, Bulk: 8 * time.Second, Conn: 6 * time.Second, Lat: 4 * time.Second,
		Streams: 2, ConnConc: 32, LatRate: 500, Srcs: 64, Queues: 2, PerfDir: *perf, Log: os.Stderr,
	}
	if *quick {
		opt.Runs, opt.Bulk, opt.Conn, opt.Lat = 1, 2*time.Second, 2*time.Second, 2*time.Second
	}
	if *runs > 0 {
		opt.Runs = *runs
	}
	for _, c := range strings.Split(*configs, ",") {
		if c = strings.TrimSpace(c); c != "" {
			if _, ok := bench.Describe[c]; !ok {
				fmt.Fprintf(os.Stderr, "tnbench run: unknown configuration %q\n", c)
				return 2
			}
			opt.Configs = append(opt.Configs, c)
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	res := &bench.Results{
		Command: commandLine(),
		Started: time.Now().UTC().Format(time.RFC3339),
		Env:     env(),
		Options: opt,
	}
	res.Options.Log = nil
	h, err := bench.NewHarness(ctx, opt)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tnbench:", err)
		return 1
	}
	defer h.Close()
	res.HashSpread = h.HashSpread()
	for round := 0; round < opt.Runs && ctx.Err() == nil; round++ {
		order := slices.Clone(opt.Configs)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			if ctx.Err() != nil {
				break
			}
			t0 := time.Now()
			s := h.RunOne(ctx, c, round)
			res.Samples = append(res.Samples, s)
			fmt.Fprintf(os.Stderr, "round %d %-10s bulk %6.2f Gbit/s  %6.0f conn/s  p50 %6.1f us  p99 %7.1f us  queued %8d  cpu %5.2fs  drops %d  retrans %d  (%s)%s\n",
				round, c, s.BulkGbps, s.ConnPerS, s.LatP50us, s.LatP99us, s.Queued, s.CPUSeconds, s.QueueDrops, s.Retrans,
				time.Since(t0).Round(100*time.Millisecond), errSuffix(s.Err))
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "tnbench: interrupted")
		return 1
	}
	if *allocBench {
		res.AllocBenchCmd = "go test -run '^$' -bench 'Hook|Verdict' -benchmem -benchtime 20000x ./nfq/"
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "Hook|Verdict", "-benchmem", "-benchtime", "20000x", "./nfq/")
		b, err := cmd.CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "tnbench: alloc benchmark: %v\n%s", err, b)
		}
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Benchmark") || strings.HasPrefix(l, "cpu:") {
				keep = append(keep, l)
			}
		}
		res.AllocBench = strings.Join(keep, "\n")
	}
	if *out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "tnbench:", err)
			return 1
		}
	}
	section := res.Markdown()
	if *md != "" {
		if err := bench.UpdateFile(*md, section); err != nil {
			fmt.Fprintln(os.Stderr, "tnbench:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "tnbench: wrote the \"## Daemon benchmarks\" section of %s\n", *md)
	} else {
		fmt.Print(section)
	}
	failed := 0
	for _, s := range res.Samples {
		if s.Err != "" {
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "tnbench: %d configuration runs failed\n", failed)
		return 1
	}
	return 0
}

// cmdHold sets one configuration up on a fresh topology and keeps it until
// SIGINT or SIGTERM, to look at it by hand.
func cmdHold(args []string) int {
	fs := flag.NewFlagSet("hold", flag.ExitOnError)
	bin := fs.String("bin", "", "directory holding tcpnorm, naiveq, connload and cq")
	fs.Parse(args)
	if *bin == "" || fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tnbench hold -bin DIR CONFIG")
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	h, err := bench.NewHarness(ctx, bench.Options{Bin: *bin, Streams: 2, Srcs: 64, Queues: 2, Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tnbench:", err)
		return 1
	}
	defer h.Close()
	t := h.Topo()
	err = h.Hold(ctx, fs.Arg(0), func() error {
		fmt.Printf("holding %s: client %s gateway %s server %s; SIGINT to end\n", fs.Arg(0), t.Client, t.Gateway, t.Server)
		<-ctx.Done()
		return nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "tnbench:", err)
		return 1
	}
	return 0
}

func errSuffix(e string) string {
	if e == "" {
		return ""
	}
	return "  ERROR: " + e
}

func cmdReport(args []string) int {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "", "results JSON written by tnbench run -out")
	md := fs.String("md", "", "update the section in FILE instead of printing it")
	fs.Parse(args)
	b, err := os.ReadFile(*in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tnbench report:", err)
		return 1
	}
	var res bench.Results
	if err := json.Unmarshal(b, &res); err != nil {
		fmt.Fprintf(os.Stderr, "tnbench report: %s: %v\n", *in, err)
		return 1
	}
	if *md == "" {
		fmt.Print(res.Markdown())
		return 0
	}
	if err := bench.UpdateFile(*md, res.Markdown()); err != nil {
		fmt.Fprintln(os.Stderr, "tnbench report:", err)
		return 1
	}
	return 0
}

// commandLine is how this run was started: `make bench` sets BENCH_CMD.
func commandLine() string {
	if c := os.Getenv("BENCH_CMD"); c != "" {
		return c
	}
	return strings.Join(os.Args, " ")
}

func env() map[string]string {
	m := map[string]string{"go": runtime.Version(), "cpus": fmt.Sprint(runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := exec.Command("iperf3", "--version").Output(); err == nil {
		m["iperf3"] = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return m
}
