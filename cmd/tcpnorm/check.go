package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
)

// checkDNSWait bounds how long check waits for DNS: a dead resolver makes
// check warn, not hang.
const checkDNSWait = 5 * time.Second

// runCheck is `tcpnorm check [-c FILE]`.
func runCheck(args []string, stdout, stderr io.Writer, wait time.Duration) int {
	path, code, ok := parseConfigFlag("check", "Validates the config and every policy file, resolves the policies' domains\nand prints each policy with its addresses, ports, direction, mode, actions\nand time to expiry. Errors are printed as FILE:LINE:COL: key: message and\nmake the exit status 1. Warnings (DNS failures, policies expiring within\n7 days or expired, inbound policies with neither cidrs nor spf) do not.", args, stdout, stderr)
	if !ok {
		return code
	}
	cfg, err := config.Load(path)
	if err != nil {
		var errs *config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs.List {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "tcpnorm check: %d error(s)\n", len(errs.List))
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	now := time.Now()
	warnings := cfg.Warnings(now)

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	mgr := config.NewManager(cfg, slog.New(slog.DiscardHandler))
	mgr.Start(ctx)
	select {
	case <-mgr.Ready():
	case <-ctx.Done():
	}
	st := mgr.Status()
	// What the daemon's re-tests found (policy key probe), as it saved it.
	if probes, err := config.ReadProbeStates(config.ProbeStateFile(cfg)); err != nil {
		warnings = append(warnings, "probe states: "+err.Error())
	} else {
		for i := range st {
			if p, ok := probes[st[i].Name]; ok && st[i].ProbeEvery != 0 {
				st[i].Probe = &p
			}
		}
	}
	config.WriteCheck(stdout, st, now)
	for _, s := range st {
		if s.DNSError != "" {
			warnings = append(warnings, fmt.Sprintf("%s: DNS: %s (addresses may be incomplete; run keeps retrying)", s.File, s.DNSError))
		}
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	fmt.Fprintf(stderr, "tcpnorm check: %s: ok, %d policies, %d warning(s)\n", path, len(st), len(warnings))
	return 0
}
