//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

const (
	faultQueue       = 100
	wscaleFaultShift = 14
	wscaleServerRmem = 32768
	tsScrambleBack   = 1 << 20 // TSval ticks (ms on Linux): about 17 minutes
	tsScrambleAhead  = 1 << 20
)

// DefaultTCPRmem is Debian's net.ipv4.tcp_rmem, which the lab's server
// runs with (except under FaultWScale): its maximum makes a window-scale
// shift of 7. A namespace otherwise inherits the host's.
const DefaultTCPRmem = "4096 131072 6291456"

// PathOptions are the path box's settings beyond its fault.
type PathOptions struct {
	// WScaleCap is the largest shift a wscale-cap path honours (1..14,
	// or WScaleCapZero for a box that ignores scaling altogether); 0 means
	// the default, 2 (defaultWScaleCap).
	WScaleCap int
	// RTT is added to every TCP round trip through the path: the box holds
	// each TCP packet RTT/2, in order, in both directions. 0: none.
	RTT time.Duration
}

// SetFault configures the path box for f, replacing any earlier fault, and
// clears cached path MTUs on every box.
func (l *Lab) SetFault(ctx context.Context, f Fault) error {
	return l.SetPath(ctx, f, PathOptions{})
}

// SetPath configures the path box for f with opt, replacing any earlier
// fault and options, and clears cached path MTUs on every box.
func (l *Lab) SetPath(ctx context.Context, f Fault, opt PathOptions) error {
	switch opt.WScaleCap {
	case 0:
		opt.WScaleCap = defaultWScaleCap
	case WScaleCapZero:
		opt.WScaleCap = 0
	}
	if opt.WScaleCap < 0 || opt.WScaleCap > 14 || opt.RTT < 0 || opt.RTT > 10*time.Second {
		return fmt.Errorf("lab: path options %+v: want a cap of 0..14 and an RTT of 0..10s", opt)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab closed")
	}
	if l.faultbx != nil {
		l.faultbx.stop()
		l.faultbx = nil
	}
	mtu := fmt.Sprint(serverMTU)
	if f == FaultPMTU {
		mtu = fmt.Sprint(blackholeMT)
	}
	if _, err := netns.Run(ctx, "", "ip", "-n", l.Path, "link", "set", ifPathSrv, "mtu", mtu); err != nil {
		return err
	}
	rmem := DefaultTCPRmem
	if f == FaultWScale {
		rmem = fmt.Sprintf("4096 %d %d", wscaleServerRmem, wscaleServerRmem)
	}
	if err := netns.WriteSysctl(l.Server, "net.ipv4.tcp_rmem", rmem); err != nil {
		return err
	}
	for _, ns := range l.Namespaces() {
		for _, fam := range []string{"-4", "-6"} {
			netns.Run(ctx, "", "ip", fam, "-n", ns, "route", "flush", "cache")
		}
	}
	if f == FaultWScale || f == FaultTSScramble || f == FaultTSScramble2 || f == FaultWScaleCap || opt.RTT > 0 {
		fb, err := startFaultBox(l.Path, f, opt)
		if err != nil {
			return err
		}
		l.faultbx = fb
	}
	for _, v6 := range []bool{false, true} {
		cmd := "iptables-restore"
		if v6 {
			cmd = "ip6tables-restore"
		}
		if _, err := netns.RunInput(ctx, l.Path, faultRules(f, v6, opt.RTT > 0), cmd, "--noflush"); err != nil {
			return err
		}
	}
	l.fault = f
	return nil
}

// currentFault is the fault in force.
func (l *Lab) currentFault() Fault {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fault
}

// FaultPackets counts the packets the fault injector changed.
func (l *Lab) FaultPackets() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.faultbx == nil {
		return 0
	}
	return l.faultbx.changed.Load()
}

// faultHooks creates the path box's fault chains, empty, and hooks them.
const faultHooks = "*mangle\n:labfault - [0:0]\n-A FORWARD -j labfault\nCOMMIT\n" +
	"*filter\n:labfault - [0:0]\n-A FORWARD -j labfault\n-A OUTPUT -j labfault\nCOMMIT\n"

// faultRules is the path box's iptables-restore input for f: its chains
// flushed and refilled, so changing the fault leaves nothing behind. With
// hold, every TCP packet is queued, to be held for the added RTT.
func faultRules(f Fault, v6, hold bool) string {
	var b strings.Builder
	b.WriteString("*mangle\n-F labfault\n")
	q := fmt.Sprintf("-j NFQUEUE --queue-num %d", faultQueue)
	switch {
	case hold || f == FaultWScaleCap:
		fmt.Fprintf(&b, "-A labfault -p tcp %s\n", q)
	case f == FaultWScale:
		fmt.Fprintf(&b, "-A labfault -i %s -p tcp --tcp-flags SYN,ACK SYN,ACK %s\n", ifPathSrv, q)
	case f == FaultTSScramble || f == FaultTSScramble2:
		fmt.Fprintf(&b, "-A labfault -i %s -p tcp -m length --length 200:65535 %s\n", ifPathSrv, q)
	}
	b.WriteString("COMMIT\n*filter\n-F labfault\n")
	switch f {
	case FaultSYNTS:
		b.WriteString("-A labfault -p tcp --syn -m tcp --tcp-option 8 -j DROP\n")
	case FaultPMTU:
		if v6 {
			b.WriteString("-A labfault -p ipv6-icmp --icmpv6-type packet-too-big -j DROP\n")
		} else {
			b.WriteString("-A labfault -p icmp --icmp-type fragmentation-needed -j DROP\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
