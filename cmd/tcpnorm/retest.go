//go:build linux

package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/probe"
	"github.com/tcpnorm/tcpnorm/rules"
)

// probeTargets lists the policies with a probe interval that are in force,
// with what each probe sends: to the policy's first port (25 if it has
// none), an SMTP session on 25 and 587 and raw bytes elsewhere, to its
// single addresses (a prefix wider than one address is not probed).
func probeTargets(mgr *config.Manager) func() []probe.Target {
	return func() []probe.Target {
		var ts []probe.Target
		for _, p := range mgr.Probed() {
			if p.Expired || p.Policy == nil {
				continue
			}
			w := probe.Workload{Port: 25, Proto: probe.SMTP, Bytes: 2 << 20, RcptTo: "Postmaster",
				Stall: min(max(p.ProbeEvery/2, 2*time.Second), 10*time.Second)}
			if len(p.Ports) > 0 {
				w.Port = p.Ports[0]
			}
			if w.Port != 25 && w.Port != 587 {
				w.Proto = probe.TCP
			}
			if p.Domain != "" {
				w.RcptTo = "postmaster@" + p.Domain
			}
			t := probe.Target{Name: p.Name, Every: p.ProbeEvery, Workload: w, Policy: p.Policy}
			for _, a := range p.Addresses {
				if a.IsSingleIP() {
					t.Addrs = append(t.Addrs, a.Addr())
				}
			}
			if len(t.Addrs) == 0 {
				t.Why = "no single address to probe (prefixes wider than one address are not probed)"
			}
			ts = append(ts, t)
		}
		return ts
	}
}

// startRetests makes the scheduler of the policies' re-tests, or says why
// it cannot run beside this config's queues and marks.
func startRetests(cfg *config.Config, mgr *config.Manager, log *slog.Logger, ready func() bool, r rules.Runner) (*probe.Scheduler, error) {
	first, last := int(cfg.Queue.First), int(cfg.Queue.First)+2*cfg.Queue.Count-1
	if probe.DefaultQueue+1 >= first && probe.DefaultQueue <= last {
		return nil, fmt.Errorf("policy probes need queues %d and %d, inside the daemon's %d..%d", probe.DefaultQueue, probe.DefaultQueue+1, first, last)
	}
	if cfg.Rules.Mark&rules.ProbeMarks != 0 {
		return nil, fmt.Errorf("policy probes need mark bits %#x, which [rules] mark %#x overlaps", rules.ProbeMarks, cfg.Rules.Mark)
	}
	return &probe.Scheduler{
		Targets:   probeTargets(mgr),
		Options:   probe.Options{Trials: 2, Log: log, Runner: r},
		StateFile: config.ProbeStateFile(cfg),
		Ready:     ready,
		Log:       log,
	}, nil
}
