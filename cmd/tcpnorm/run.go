//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/nfq"
	"github.com/tcpnorm/tcpnorm/rules"
	"github.com/tcpnorm/tcpnorm/status"
)

// Rewrite log lines: at most this many a second on average (bursts of
// twice that); the rest are counted and summarized every logSummaryEvery.
const (
	logLinesPerSecond = 20
	logSummaryEvery   = 10 * time.Second
	rulesTimeout      = 30 * time.Second
)

// cmdRun is `tcpnorm run [-c FILE]`, the daemon.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	path, code, ok := parseConfigFlag("run", "Runs the daemon: binds the queues, installs the rules ([rules] install),\nresolves the policies and normalizes handshakes until SIGINT or SIGTERM.\nSIGHUP reloads the config and policies.", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	level := new(slog.LevelVar)
	log, err := newLogger(cfg.Log, stderr, level)
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm run: %v\n", err)
		return 1
	}
	d := &daemon{path: path, cfg: cfg, log: log, level: level, rules: rules.Exec{}}
	if err := d.run(); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// newLogger builds the [log] logger; its level can be changed on reload.
func newLogger(c config.Log, w io.Writer, level *slog.LevelVar) (*slog.Logger, error) {
	l, err := parseLevel(c.Level)
	if err != nil {
		return nil, err
	}
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", c.Format)
}

func parseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info", "":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}

type daemon struct {
	path     string
	cfg      *config.Config
	log      *slog.Logger
	level    *slog.LevelVar
	rules    rules.Runner
	evidence *evidence.Recorder // reconfigured on reload
}

func evidenceSettings(cfg *config.Config) evidence.Settings {
	return evidence.Settings{Dir: cfg.Evidence.Dir, MaxBytes: cfg.Evidence.MaxBytes, Keep: cfg.Evidence.Keep}
}

// run is the daemon's life: start-up, the signal loop, shutdown. Whatever
// ends it (error, signal, panic), rules it installed are removed.
func (d *daemon) run() error {
	cfg, log := d.cfg, d.log
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	started := time.Now()
	m := metrics.New(version)
	mgr := config.NewManager(cfg, log)
	mgr.Start(ctx)

	// The recorder outlives the workers (deferred before them): what they
	// queued is written before exit.
	rec := evidence.NewRecorder(evidenceSettings(cfg), log,
		evidence.Counters{Packets: m.EvidencePackets, Dropped: m.EvidenceDropped, Errors: m.EvidenceErrors})
	recCtx, recStop := context.WithCancel(context.Background())
	recDone := make(chan struct{})
	go func() {
		defer close(recDone)
		rec.Run(recCtx)
	}()
	defer func() {
		recStop()
		<-recDone
	}()
	d.evidence = rec

	var ready atomic.Bool
	// The policies' re-tests (policy key probe).
	retests, err := startRetests(cfg, mgr, log, ready.Load, d.rules)
	if err != nil {
		for _, pf := range cfg.Policies {
			if pf.Probe != 0 {
				log.Error("policy probes are off", "err", err)
				break
			}
		}
	} else {
		rctx, rstop := context.WithCancel(ctx)
		rdone := make(chan struct{})
		go func() {
			defer close(rdone)
			retests.Run(rctx)
		}()
		// On exit a probe in progress ends and removes its own rules.
		defer func() {
			rstop()
			<-rdone
		}()
	}
	policies := func() []config.PolicyStatus {
		ps := mgr.Status()
		if retests != nil {
			retests.Annotate(ps)
		}
		return ps
	}
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		h := status.Handler(m, status.Source{
			Version:    version,
			Started:    started,
			Ready:      ready.Load,
			First:      cfg.Queue.First,
			Count:      cfg.Queue.Count,
			Kernel:     metrics.NewKernelCollector("", cfg.Queue.First, 2*cfg.Queue.Count),
			Policies:   policies,
			Evidence:   rec.Settings,
			Privileges: status.ReadPrivileges,
		})
		go func() {
			if err := metrics.Serve(ctx, ln, h); err != nil {
				log.Error("metrics server failed", "err", err)
			}
		}()
		log.Info("metrics listening", "addr", ln.Addr().String())
	}

	connLog := nfq.NewConnLog(log, logLinesPerSecond, m.Suppressed)
	go connLog.Run(ctx, logSummaryEvery)

	// Queues are bound before the rules exist, so the first queued
	// handshake already has a worker.
	base := nfq.Config{
		MaxLen:      copyRange,
		MaxQueueLen: cfg.Queue.MaxLen,
		FailOpen:    cfg.Queue.FailOpen,
		MarkMask:    cfg.Rules.Mark,
		FlowSlots:   max(1, cfg.Flows.Max/cfg.Queue.Count),
		FlowIdle:    cfg.Flows.IdleTimeout,
		TSRateMax:   cfg.Flows.TSRateMax,
		Table:       mgr.Table,
		Metrics:     m,
		Log:         log,
		ConnLog:     connLog,
		Evidence:    rec,
	}
	var flows *nfq.Pool
	if ruleSpec(cfg).Stateful() {
		// The later segments of clamped and repaired flows: whole
		// packets (a rewrite needs the whole segment), and fail-open off,
		// since a repaired segment that bypassed tcpnorm would poison the
		// local host's PAWS state.
		st := base
		st.MaxQueueLen, st.FailOpen, st.Stateful, st.ConnLog, st.Evidence = statefulQueueFactor*cfg.Queue.MaxLen, false, true, nil, nil
		flows, err = nfq.StartPool(ctx, st, ruleSpec(cfg).StatefulFirst(), cfg.Queue.Count)
		if err != nil {
			return err
		}
		defer flows.Close()
		base.SeedSink = flows
	}
	pool, err := nfq.StartPool(ctx, base, cfg.Queue.First, cfg.Queue.Count)
	if err != nil {
		return err
	}
	defer pool.Close()
	flowsFailed := make(<-chan error)
	if flows != nil {
		flowsFailed = flows.Failed()
	}
	// The queues are bound and no rule sends them a packet yet: from here
	// on the process needs CAP_NET_ADMIN and CAP_NET_RAW only.
	if err := dropPrivileges(cfg); err != nil {
		return fmt.Errorf("dropping privileges: %w", err)
	}
	priv := status.ReadPrivileges()
	log.Info("privileges dropped", "uid", priv.UID, "gid", priv.GID, "capabilities", strings.Join(priv.Effective, ","),
		"bounding", strings.Join(priv.Bounding, ","), "threads", priv.Threads)

	spec := ruleSpec(cfg)
	sets := rules.NewSetUpdater(spec, d.rules, log, m)
	if cfg.Rules.Install {
		rs, err := rules.Build(spec)
		if err != nil {
			return err
		}
		rctx, rcancel := context.WithTimeout(ctx, rulesTimeout)
		err = rules.Install(rctx, d.rules, rs)
		rcancel()
		if err != nil {
			return err
		}
		// Deferred after pool.Close, so it runs first: handshakes bypass
		// the queues before the workers go away.
		defer d.removeRules(spec)
		log.Info("rules installed", "mode", cfg.Rules.Mode, "queues", queueRange(cfg))
		// A killed probe's rules (a running probe holds its lock).
		rctx, rcancel = context.WithTimeout(ctx, rulesTimeout)
		if err := rules.RemoveProbeLeftovers(rctx, d.rules); err != nil {
			log.Warn("removing a killed probe's rules failed", "err", err)
		}
		rcancel()
	} else {
		// The operator installs the printed rules, which match the sets:
		// they are still tcpnorm's to fill, and stay in place on exit
		// because those rules hold them.
		rctx, rcancel := context.WithTimeout(ctx, rulesTimeout)
		if err := rules.CreateSets(rctx, d.rules, spec); err != nil {
			m.SetUpdates.WithLabelValues("error").Inc()
			log.Error("creating the address sets failed; retrying", "err", err)
		}
		rcancel()
		log.Info("rules not installed ([rules] install = false); address sets maintained",
			"ipv4", spec.SetName(rules.IPv4), "ipv6", spec.SetName(rules.IPv6))
	}
	// The sets follow every swap of the table; the updater stops before
	// the deferred removal destroys them, which it would undo.
	sctx, scancel := context.WithCancel(ctx)
	setsDone := make(chan struct{})
	sets.Sync(sctx, mgr.Prefixes())
	go func() {
		defer close(setsDone)
		sets.Run(sctx, mgr.Changed(), mgr.Prefixes)
	}()
	defer func() {
		scancel()
		<-setsDone
	}()

	readyCh := mgr.Ready()
	if readyCh == nil {
		closed := make(chan struct{})
		close(closed)
		readyCh = closed
	}
	for {
		select {
		case <-readyCh:
			readyCh = nil
			// Ready means in force: the sets hold every resolved address.
			sets.Sync(ctx, mgr.Prefixes())
			ready.Store(true)
			m.Ready.Set(1)
			log.Info("ready", "queues", queueRange(cfg), "mode", cfg.Rules.Mode, "rules", cfg.Rules.Install,
				"policies", len(cfg.Policies), "version", version)
			if ok, err := sdNotify("READY=1\nSTATUS=normalizing, queues " + queueRange(cfg)); err != nil {
				log.Warn("sd_notify failed", "err", err)
			} else if ok {
				log.Debug("sd_notify READY=1 sent")
			}
		case err := <-pool.Failed():
			return err
		case err := <-flowsFailed:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				d.reload(mgr, m)
				continue
			}
			log.Info("stopping", "signal", sig.String())
			if _, err := sdNotify("STOPPING=1"); err != nil {
				log.Warn("sd_notify failed", "err", err)
			}
			return nil
		}
	}
}

// reload applies the config file again. On any error the running config
// and policy table stay in force.
func (d *daemon) reload(mgr *config.Manager, m *metrics.Metrics) {
	cfg, err := config.Load(d.path)
	if err == nil {
		err = mgr.Reload(cfg)
	}
	if err != nil {
		m.Reloads.WithLabelValues("error").Inc()
		d.log.Error("reload failed; previous config stays in force", "file", d.path, "err", err)
		return
	}
	m.Reloads.WithLabelValues("ok").Inc()
	if d.evidence != nil {
		d.evidence.Configure(evidenceSettings(cfg))
	}
	if l, err := parseLevel(cfg.Log.Level); err == nil {
		d.level.Set(l)
	}
	if cfg.Log.Format != d.cfg.Log.Format {
		d.log.Warn("log format change needs a restart", "running", d.cfg.Log.Format, "configured", cfg.Log.Format)
	}
	d.log.Info("reloaded", "file", d.path, "policies", len(cfg.Policies))
}

// removeRules removes the rules, then the address sets they match.
func (d *daemon) removeRules(spec rules.Spec) {
	ctx, cancel := context.WithTimeout(context.Background(), rulesTimeout)
	defer cancel()
	if err := rules.Uninstall(ctx, d.rules, spec); err != nil {
		d.log.Error("removing rules failed", "err", err)
		return
	}
	d.log.Info("rules and address sets removed")
}

// copyRange is how much of each packet the kernel copies to tcpnorm: all of
// it (the kernel caps the range just below 64 KiB). Handshakes are small,
// and a later segment must come whole to be rewritten.
const copyRange = 0xffff

// statefulQueueFactor sizes the stateful queues relative to [queue]
// max_len: they carry whole flows, in bursts of a window, and have no
// fail-open, so a full queue means lost segments.
const statefulQueueFactor = 8

func queueRange(cfg *config.Config) string {
	if cfg.Queue.Count == 1 {
		return fmt.Sprint(cfg.Queue.First)
	}
	return fmt.Sprintf("%d-%d", cfg.Queue.First, int(cfg.Queue.First)+cfg.Queue.Count-1)
}

// sdNotify sends state to the service manager at $NOTIFY_SOCKET (a path, or
// an abstract socket written with a leading '@'). It reports false without
// error when NOTIFY_SOCKET is unset.
func sdNotify(state string) (bool, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return false, nil
	}
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return false, fmt.Errorf("NOTIFY_SOCKET=%q: want an absolute path or @abstract name", addr)
	}
	// Go maps a leading '@' to the abstract namespace (a leading NUL).
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return false, err
	}
	return true, nil
}
