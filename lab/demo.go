//go:build linux

package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// DemoOptions configures RunDemo, the body of `tcpnorm lab`.
type DemoOptions struct {
	Fault   Fault
	V6      bool
	Size    int           // bytes; default DefaultSize
	Timeout time.Duration // per transfer; default DefaultTimeout
	Binary  string        // the tcpnorm executable to run on the gateway
	Keep    bool          // leave the namespaces in place afterwards
}

// DemoResult is what RunDemo measured.
type DemoResult struct {
	Without, With TransferResult
}

// RunDemo builds a lab with opt.Fault, runs a transfer without tcpnorm, then
// with the tcpnorm daemon on the gateway under the policy that fixes the
// fault, and writes a report for network administrators to w. The error
// says why the demonstration itself could not run; a transfer that failed
// is in the result.
func RunDemo(ctx context.Context, w io.Writer, opt DemoOptions) (res DemoResult, err error) {
	if opt.Size <= 0 {
		opt.Size = DefaultSize
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	fam := "IPv4"
	if opt.V6 {
		fam = "IPv6"
	}
	dir := opt.Fault.Direction()
	arrow := "client -> server, like outgoing mail"
	if dir == Download {
		arrow = "server -> client, like incoming mail"
	}
	fmt.Fprintf(w, "tcpnorm lab: fault %q, %s, %s %s (%s), timeout %s per transfer\n\n",
		opt.Fault, fam, fmtBytes(opt.Size), dir, arrow, opt.Timeout)

	l, err := New(ctx, Options{})
	if err != nil {
		return res, err
	}
	defer func() {
		if opt.Keep && ctx.Err() == nil {
			fmt.Fprintf(w, "\nKept the lab (--keep). Enter a box with `ip netns exec NAME bash`; remove it with:\n")
			for _, ns := range l.Namespaces() {
				fmt.Fprintf(w, "  ip netns del %s\n", ns)
			}
			return
		}
		if cerr := l.Close(); cerr != nil && err == nil {
			err = cerr
		}
		fmt.Fprintf(w, "\nLab removed (namespaces %s-*).\n", l.Name)
	}()
	fmt.Fprintf(w, "topology (each box is a network namespace):\n%s\n", l.topology())
	if err := l.SetFault(ctx, opt.Fault); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "Fault on the path box: %s\n\n", opt.Fault.describe())

	t := Transfer{Dst: ServerAddr(opt.V6), Size: opt.Size, Dir: dir, Timeout: opt.Timeout}

	fmt.Fprintf(w, "1. Without tcpnorm\n")
	res.Without, err = l.demoTransfer(ctx, w, t)
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	fmt.Fprintf(w, "\n2. With tcpnorm on the gateway\n")
	pol := FixPolicy(opt.Fault, opt.V6, normalize.Enforce)
	fmt.Fprintf(w, "   policy file policies.d/%s.toml:\n%s\n", pol.Name, indent(pol.Text(), "     | "))
	started := time.Now()
	d, err := l.StartDaemon(ctx, opt.Binary, os.TempDir(), []Policy{pol}, 20*time.Second)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(d.Dir)
	fmt.Fprintf(w, "   started `tcpnorm run -c %s/tcpnorm.toml` in %s: ready after %.2fs\n",
		d.Dir, l.Gateway, time.Since(started).Seconds())
	_, mark := d.LogLines(0)
	res.With, err = l.demoTransfer(ctx, w, t)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		d.Stop()
		return res, err
	}

	fmt.Fprintf(w, "\n3. What tcpnorm changed\n")
	time.Sleep(200 * time.Millisecond) // the connection log is written asynchronously
	lines, _ := d.LogLines(mark)
	n := 0
	for _, ln := range lines {
		if strings.Contains(ln, Domain) || strings.Contains(ln, ServerAddr(opt.V6).String()) {
			fmt.Fprintf(w, "   log: %s\n", ln)
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(w, "   log: (no line for this connection)\n")
	}
	if m, err := d.Get(ctx, "/metrics"); err == nil {
		for _, ln := range interestingMetrics(m) {
			fmt.Fprintf(w, "   metric: %s\n", ln)
		}
	} else {
		fmt.Fprintf(w, "   metrics: %v\n", err)
	}
	serr := d.Stop()
	left, rerr := l.TcpnormRules(ctx)
	switch {
	case serr != nil:
		fmt.Fprintf(w, "   daemon exit: %v\n", serr)
	case rerr != nil:
		fmt.Fprintf(w, "   rules check: %v\n", rerr)
	case len(left) == 0:
		fmt.Fprintf(w, "   daemon stopped (SIGTERM); its iptables/ip6tables rules are gone\n")
	default:
		fmt.Fprintf(w, "   daemon stopped but left rules behind:\n     %s\n", strings.Join(left, "\n     "))
	}

	fmt.Fprintf(w, "\nResult (%s, %s %s):\n", opt.Fault, fam, dir)
	fmt.Fprintf(w, "   without tcpnorm: %s\n", res.Without)
	fmt.Fprintf(w, "   with tcpnorm:    %s\n", res.With)
	return res, nil
}

// demoTransfer runs t with captures at client and server and prints the
// handshake each end received and the outcome.
func (l *Lab) demoTransfer(ctx context.Context, w io.Writer, t Transfer) (TransferResult, error) {
	cc, err := netns.StartCapture(l.Client, IfClient)
	if err != nil {
		return TransferResult{}, err
	}
	defer cc.Stop()
	sc, err := netns.StartCapture(l.Server, IfServer)
	if err != nil {
		return TransferResult{}, err
	}
	defer sc.Stop()
	faulted := l.FaultPackets()
	r, err := l.Transfer(ctx, t)
	if err != nil {
		return r, err
	}
	faulted = l.FaultPackets() - faulted
	cseg := Segments(cc.Stop())
	sseg := Segments(sc.Stop())
	syns := 0
	for _, s := range cseg {
		if s.Outgoing && s.SYN && !s.ACK {
			if syns == 0 {
				fmt.Fprintf(w, "   client sent    SYN     [%s]\n", s.Options)
			}
			syns++
		}
	}
	if syns > 1 {
		fmt.Fprintf(w, "                  (%d SYNs: %d retransmitted)\n", syns, syns-1)
	}
	printFirst(w, sseg, "server received SYN    ", func(s Segment) bool { return !s.Outgoing && s.SYN && !s.ACK })
	printFirst(w, cseg, "client received SYN-ACK", func(s Segment) bool { return !s.Outgoing && s.SYN && s.ACK })
	if faulted > 0 {
		what := "rewrote"
		if l.currentFault() == FaultWScaleCap {
			what = "dropped"
		}
		fmt.Fprintf(w, "   path box %s %d packets\n", what, faulted)
	}
	fmt.Fprintf(w, "   transfer: %s\n", r)
	return r, nil
}

func printFirst(w io.Writer, segs []Segment, label string, pick func(Segment) bool) {
	for _, s := range segs {
		if pick(s) {
			fmt.Fprintf(w, "   %s [%s]\n", label, s.Options)
			return
		}
	}
	fmt.Fprintf(w, "   %s (none arrived)\n", label)
}

// interestingMetrics picks tcpnorm's non-zero counters from a Prometheus
// text exposition, leaving out histograms and Go runtime metrics.
func interestingMetrics(text string) []string {
	var out []string
	for _, ln := range strings.Split(text, "\n") {
		if !strings.HasPrefix(ln, "tcpnorm_") || strings.Contains(ln, "_bucket") ||
			strings.Contains(ln, "_seconds") {
			continue
		}
		f := strings.Fields(ln)
		if len(f) < 2 || f[len(f)-1] == "0" {
			continue
		}
		if strings.Contains(ln, "rewrite") || strings.Contains(ln, "packets") || strings.Contains(ln, "verdict") {
			out = append(out, ln)
		}
	}
	return out
}

func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
