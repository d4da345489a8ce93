//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
)

var labUsage = `usage: tcpnorm lab [--fault ` + strings.Join(lab.FaultNames(), "|") + `] [--ipv6] [--size BYTES] [--timeout DUR] [--keep]

Builds a throw-away network namespace lab (client -- gateway -- path -- server),
makes the path box inject the fault, runs a transfer without tcpnorm, then with
the tcpnorm daemon on the gateway under the policy that fixes the fault, and
prints both outcomes. Needs root. Cleans up on exit, including Ctrl-C.
`

func cmdLab(args []string) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), labUsage+"\nflags:\n"); fs.PrintDefaults() }
	faultName := fs.String("fault", lab.FaultWScale.String(), "path fault: "+strings.Join(lab.FaultNames(), ", "))
	v6 := fs.Bool("ipv6", false, "use IPv6 instead of IPv4")
	size := fs.Int("size", lab.DefaultSize, "transfer size in bytes")
	timeout := fs.Duration("timeout", lab.DefaultTimeout, "a transfer not done by then has failed")
	keep := fs.Bool("keep", false, "keep the namespaces afterwards (the daemon is always stopped)")
	pos, code, ok := parseFlags(fs, args, os.Stdout, os.Stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(os.Stderr, "tcpnorm lab: unexpected argument %q\n", pos[0])
		return 2
	}
	f, err := lab.ParseFault(*faultName)
	if err != nil || f == lab.FaultNone {
		fmt.Fprintf(os.Stderr, "tcpnorm lab: --fault: unknown fault %q (want one of %s)\n", *faultName, strings.Join(lab.FaultNames(), ", "))
		return 2
	}
	if *size <= 0 || *size > 1<<30 {
		fmt.Fprintf(os.Stderr, "tcpnorm lab: --size must be between 1 and %d bytes\n", 1<<30)
		return 2
	}
	if *timeout <= 0 || *timeout > time.Hour {
		fmt.Fprintln(os.Stderr, "tcpnorm lab: --timeout must be between 0 and 1h")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "tcpnorm lab: needs root (network namespaces, iptables)")
		return 1
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpnorm lab: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	res, err := lab.RunDemo(ctx, os.Stdout, lab.DemoOptions{
		Fault: f, V6: *v6, Size: *size, Timeout: *timeout, Binary: bin, Keep: *keep,
	})
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "tcpnorm lab: interrupted; lab removed")
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcpnorm lab: %v\n", err)
		return 1
	}
	if !res.With.OK {
		fmt.Fprintln(os.Stderr, "tcpnorm lab: the transfer failed with tcpnorm too")
		return 1
	}
	return 0
}
