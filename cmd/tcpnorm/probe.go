//go:build linux

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/diagnose"
	"github.com/tcpnorm/tcpnorm/probe"
	"github.com/tcpnorm/tcpnorm/rules"
)

const probeUsage = `usage: tcpnorm probe [-c FILE] [--proto smtp|tcp] [--port N] [--bytes N] [--stall DUR] [--force] [--json] [--pcap FILE] DOMAIN|ADDRESS...

An active A/B test of the path to a mail server (root). For each address
(a domain's MX hosts, or its A/AAAA without MX; the config's [dns] servers
with -c) it opens test connections: with the SYN as this host sends it, and
with one option changed by tcpnorm's own normalizer (window scale clamped to
6, 4, 2, 0, MSS 1200, SACK-permitted, timestamps, window scale, and both
stripped), each tried more than once. Over SMTP each session goes through
EHLO, MAIL FROM:<>, RCPT TO:<postmaster@DOMAIN> and a body of --bytes that is
never delivered (BDAT then RSET, or DATA closed before the final dot). It
measures each connection from the kernel (TCP_INFO) and calls a stall when
nothing is acknowledged for --stall. When the SYN as sent stalls and a
variant delivers in every trial, it prints the policy file with the least
invasive such variant and a paragraph for the upstream ticket. Only the
probe's own sockets are touched (socket mark 0x800000, its own queues and
chains), with or without a running daemon. An address is probed at most once
in 10 minutes unless --force. With --pcap it writes the probe's own packets,
both directions as on the wire, to a pcapng file for the ticket, runs
diagnose over it and says whether the two readings agree.

Exit status: 0 healthy, 3 option fault (policy printed), 4 trouble no option
policy fixes or trials that disagree, 5 not tested (unreachable, refused, the
SMTP session never reached the body, probed less than 10 minutes ago), 1
error, 2 usage error.
`

// Exit statuses of probe beyond 0, 1 and 2.
const (
	exitProbeFault      = 3
	exitProbeNotFixable = 4
	exitProbeUntested   = 5
)

// probeEvery is the least time between two probes of one address.
const probeEvery = 10 * time.Minute

func cmdProbe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	cfgPath := fs.String("c", "", "config `FILE` for [dns] servers and the queue and mark bits in use (default: none; /etc/resolv.conf)")
	proto := fs.String("proto", "smtp", "workload: smtp, or tcp (write the bytes to a port that reads them)")
	port := fs.Uint("port", 25, "the server `port`")
	bytes := fs.Int64("bytes", 2<<20, "body size in bytes (at most 64 MiB)")
	stall := fs.Duration("stall", 10*time.Second, "nothing acknowledged for this long is a stall")
	trials := fs.Int("trials", 2, "trials per variant (at least 2: a verdict needs them to agree)")
	rcpt := fs.String("rcpt", "", "RCPT TO `address` (default postmaster@DOMAIN, or Postmaster for an address)")
	helo := fs.String("helo", "", "EHLO `name` (default: the host name)")
	force := fs.Bool("force", false, "probe addresses probed less than 10 minutes ago")
	all := fs.Bool("all", false, "try every variant even when the SYN as sent works")
	asJSON := fs.Bool("json", false, "print the results as JSON")
	timeout := fs.Duration("timeout", 30*time.Minute, "bound on the whole run")
	queue := fs.Uint("queue", probe.DefaultQueue, "the probe's queue `number` (it also uses the next one)")
	pcapPath := fs.String("pcap", "", "write the probe's connections to this pcapng `FILE` and check diagnose's reading of it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), probeUsage+"\nflags:\n")
		fs.PrintDefaults()
	}
	targets, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	usageErr := func(format string, a ...any) int { return usageError(fs, stderr, format, a...) }
	if len(targets) == 0 {
		return usageErr("no DOMAIN or ADDRESS given")
	}
	w := probe.Workload{Port: uint16(*port), Bytes: *bytes, Stall: *stall, Helo: *helo}
	if err := w.Proto.UnmarshalText([]byte(*proto)); err != nil {
		return usageErr("--proto: %v", err)
	}
	switch {
	case *port < 1 || *port > 65535:
		return usageErr("--port %d: want 1..65535", *port)
	case *bytes < 1 || *bytes > probe.MaxBytes:
		return usageErr("--bytes %d: want 1..%d", *bytes, probe.MaxBytes)
	case *stall < 100*time.Millisecond || *stall > 5*time.Minute:
		return usageErr("--stall %v: want 100ms..5m", *stall)
	case *trials < 2 || *trials > 10:
		return usageErr("--trials %d: want 2..10", *trials)
	case *timeout <= 0:
		return usageErr("--timeout %v: want > 0", *timeout)
	case *queue < 1 || *queue > 65534:
		return usageErr("--queue %d: want 1..65534", *queue)
	}
	cfg := &config.Config{}
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			fmt.Fprintf(stderr, "tcpnorm probe: %v\n", err)
			return 1
		}
		first, last := uint(cfg.Queue.First), uint(cfg.Queue.First)+2*uint(cfg.Queue.Count)-1
		if *queue+1 >= first && *queue <= last {
			fmt.Fprintf(stderr, "tcpnorm probe: queues %d and %d overlap the daemon's %d..%d: pick another with --queue\n", *queue, *queue+1, first, last)
			return 1
		}
		if cfg.Rules.Mark&rules.ProbeMarks != 0 {
			fmt.Fprintf(stderr, "tcpnorm probe: [rules] mark %#x overlaps the probe's mark bits %#x\n", cfg.Rules.Mark, rules.ProbeMarks)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Resolve every target first: a typo fails before anything is sent.
	var results []*probe.Result
	for _, t := range targets {
		r := &probe.Result{Target: t}
		if a, err := netip.ParseAddr(t); err == nil {
			r.Addrs = []probe.AddressResult{{Addr: a.Unmap()}}
		} else {
			d, err := config.CheckDomain(t)
			if err != nil {
				return usageErr("%v", err)
			}
			mh, err := config.ResolveMailHosts(ctx, cfg, d)
			if err != nil {
				fmt.Fprintf(stderr, "tcpnorm probe: %s: %v\n", d, err)
				return 1
			}
			r.Domain, r.MX = d, mh.MX
			r.Notes = append(append(r.Notes, mh.Errs...), mh.Notes...)
			for _, a := range mh.Addrs {
				r.Addrs = append(r.Addrs, probe.AddressResult{Addr: a})
			}
			if len(mh.Addrs) == 0 {
				fmt.Fprintf(stderr, "tcpnorm probe: %s: no address to probe (%s)\n", d, strings.Join(r.Notes, "; "))
				return 1
			}
		}
		results = append(results, r)
	}

	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opt := probe.Options{Workload: w, Trials: *trials, Queue: uint16(*queue), All: *all, Log: log}
	if !*asJSON {
		opt.Progress = func(a netip.Addr, v probe.Variant, n int, t probe.Trial) {
			fmt.Fprintf(stderr, "  %s %s trial %d: %s (%v)\n", a, v.Name, n, t.Outcome, t.Duration.Round(10*time.Millisecond))
		}
	}
	var pcapFile *os.File
	if *pcapPath != "" {
		var err error
		if pcapFile, err = os.OpenFile(*pcapPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640); err != nil {
			fmt.Fprintf(stderr, "tcpnorm probe: %v\n", err)
			return 1
		}
		defer pcapFile.Close()
		opt.Capture = pcapFile
	}
	p, err := probe.Start(ctx, opt)
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm probe: %v\n", err)
		return 1
	}
	defer p.Close()
	hist := loadProbeHistory()
	for _, r := range results {
		for i := range r.Addrs {
			a := r.Addrs[i].Addr
			if last, ok := hist[a.String()]; ok && !*force && time.Since(last) < probeEvery {
				r.Addrs[i].Verdict, r.Addrs[i].Why = probe.VerdictSkipped, "probed less than 10 minutes ago (--force probes it again)"
				continue
			}
			if w.Proto == probe.SMTP {
				opt.Workload.RcptTo = *rcpt
				if *rcpt == "" {
					opt.Workload.RcptTo = "Postmaster"
					if r.Domain != "" {
						opt.Workload.RcptTo = "postmaster@" + r.Domain
					}
				}
				p.SetWorkload(opt.Workload)
			}
			if !*asJSON {
				fmt.Fprintf(stderr, "probing %s (%s)\n", a, r.Target)
			}
			hist[a.String()] = time.Now()
			r.Addrs[i] = p.Address(ctx, a)
		}
		r.Summarize(time.Now(), w.Port, probe.Variants())
	}
	saveProbeHistory(hist)
	if err := p.Close(); err != nil {
		fmt.Fprintf(stderr, "tcpnorm probe: removing its rules: %v\n", err)
	}
	if pcapFile != nil {
		if err := checkCapture(pcapFile, p.Recorded(), results); err != nil {
			fmt.Fprintf(stderr, "tcpnorm probe: %s: %v\n", *pcapPath, err)
			return 1
		}
	}

	worst := probe.VerdictHealthy
	for _, r := range results {
		if *asJSON {
			if err := r.WriteJSON(stdout); err != nil {
				return 1
			}
		} else if err := r.WriteText(stdout); err != nil {
			return 1
		}
		if probe.Worse(r.Verdict, worst) {
			worst = r.Verdict
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "tcpnorm probe: stopped: %v\n", context.Cause(ctx))
		return 1
	}
	switch worst {
	case probe.VerdictHealthy:
		return 0
	case probe.VerdictOptionFault:
		return exitProbeFault
	case probe.VerdictNotFixable, probe.VerdictTransient:
		return exitProbeNotFixable
	}
	return exitProbeUntested
}

// checkCapture closes the probe's capture and reads it back with diagnose,
// as an operator would, for each result's comparison.
func checkCapture(f *os.File, st probe.RecordStats, results []*probe.Result) error {
	if err := f.Close(); err != nil {
		return err
	}
	in, err := os.Open(f.Name())
	if err != nil {
		return err
	}
	defer in.Close()
	rep, err := diagnose.Diagnose(in, diagnose.Options{})
	if err != nil {
		return fmt.Errorf("diagnose: %w", err)
	}
	for _, r := range results {
		r.CheckCapture(f.Name(), st, rep)
	}
	return nil
}

// The probe's history: when each address was last probed, kept beside the
// probe lock (tmpfs: a reboot forgets it).
func probeHistoryPath() string { return filepath.Join(rules.ProbeLockDir, "probe-history.json") }

func loadProbeHistory() map[string]time.Time {
	h := map[string]time.Time{}
	if b, err := os.ReadFile(probeHistoryPath()); err == nil {
		if json.Unmarshal(b, &h) != nil {
			h = map[string]time.Time{}
		}
	}
	for a, t := range h {
		if time.Since(t) > probeEvery {
			delete(h, a)
		}
	}
	return h
}

func saveProbeHistory(h map[string]time.Time) {
	b, _ := json.Marshal(h)
	tmp := probeHistoryPath() + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		if err := os.Rename(tmp, probeHistoryPath()); err != nil {
			os.Remove(tmp)
		}
	}
}
