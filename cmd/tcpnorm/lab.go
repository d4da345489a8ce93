//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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

func cmdLab(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), labUsage+"\nflags:\n"); fs.PrintDefaults() }
	faultName := fs.String("fault", lab.FaultWScale.String(), "path fault: "+strings.Join(lab.FaultNames(), ", "))
	v6 := fs.Bool("ipv6", false, "use IPv6 instead of IPv4")
	size := fs.Int("size", lab.DefaultSize, "transfer size in bytes")
	timeout := fs.Duration("timeout", lab.DefaultTimeout, "a transfer not done by then has failed")
	keep := fs.Bool("keep", false, "keep the namespaces afterwards (the daemon is always stopped)")
	pos, code, ok := parseFlags(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		return usageError(fs, stderr, "unexpected argument %q", pos[0])
	}
	f, err := lab.ParseFault(*faultName)
	if err != nil || f == lab.FaultNone {
		return usageError(fs, stderr, "--fault: unknown fault %q (want one of %s)", *faultName, strings.Join(lab.FaultNames(), ", "))
	}
	if *size <= 0 || *size > 1<<30 {
		return usageError(fs, stderr, "--size must be between 1 and %d bytes", 1<<30)
	}
	if *timeout <= 0 || *timeout > time.Hour {
		return usageError(fs, stderr, "--timeout must be between 0 and 1h")
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "tcpnorm lab: needs root (network namespaces, iptables)")
		return 1
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm lab: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	res, err := lab.RunDemo(ctx, stdout, lab.DemoOptions{
		Fault: f, V6: *v6, Size: *size, Timeout: *timeout, Binary: bin, Keep: *keep,
	})
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "tcpnorm lab: interrupted; lab removed")
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "tcpnorm lab: %v\n", err)
		return 1
	}
	if !res.With.OK {
		fmt.Fprintln(stderr, "tcpnorm lab: the transfer failed with tcpnorm too")
		return 1
	}
	return 0
}
