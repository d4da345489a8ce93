package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Fault is a path fault the path box injects.
type Fault uint8

const (
	FaultNone       Fault = iota
	FaultSYNTS            // firewall dropping SYNs that carry timestamps
	FaultWScale           // router raising the window-scale shift in SYN-ACKs to 14
	FaultTSScramble       // box moving some of the server's TSvals into the past
	FaultPMTU             // smaller MTU toward the server, ICMP too-big filtered
	numFaults
)

var faultNames = [numFaults]string{"none", "syn-ts", "wscale", "ts-scramble", "pmtu"}

func (f Fault) String() string {
	if f < numFaults {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", f)
}

// Faults lists the fault classes (not FaultNone).
func Faults() []Fault {
	return []Fault{FaultSYNTS, FaultWScale, FaultTSScramble, FaultPMTU}
}

// ParseFault parses a fault name as String prints it.
func ParseFault(s string) (Fault, error) {
	for i, n := range faultNames {
		if s == n {
			return Fault(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fault %q (want one of %s)", s, strings.Join(faultNames[1:], ", "))
}

// Describe says what the fault does, for people.
func (f Fault) Describe() string {
	switch f {
	case FaultSYNTS:
		return "the path drops every SYN that carries the TCP timestamps option (a SYN-option firewall)"
	case FaultWScale:
		return fmt.Sprintf("the path rewrites the window-scale shift in the server's SYN-ACK to %d; the server really scales by its own shift and has a %d-byte receive buffer, so the client over-reads every window and overruns it", wscaleFaultShift, wscaleServerRmem)
	case FaultTSScramble:
		return "the path moves the TSval of some of the server's data segments into the past; the client's PAWS check silently discards them, again and again"
	case FaultPMTU:
		return fmt.Sprintf("the path's link to the server has MTU %d and the path filters ICMP fragmentation-needed / packet-too-big: full-size segments vanish", blackholeMT)
	}
	return "no fault: a clean path"
}

// Direction is the transfer direction that shows the fault.
func (f Fault) Direction() Direction {
	switch f {
	case FaultTSScramble:
		return Download
	}
	return Upload
}

// FixOptions is the [options] body of the policy that fixes the fault.
func (f Fault) FixOptions(v6 bool) string {
	switch f {
	case FaultSYNTS, FaultTSScramble:
		return `timestamps = "strip"` + "\n"
	case FaultWScale:
		return `window_scale = "strip"` + "\n"
	case FaultPMTU:
		return fmt.Sprintf("mss_max = %d\n", PMTUMSS(v6))
	}
	return ""
}

// PMTUMSS is the largest MSS that fits the black-holed path.
func PMTUMSS(v6 bool) int {
	if v6 {
		return blackholeMT - 60
	}
	return blackholeMT - 40
}

const (
	faultQueue       = 100
	wscaleFaultShift = 14
	wscaleServerRmem = 32768
	tsScrambleBack   = 1 << 20 // TSval ticks (ms on Linux): about 17 minutes
	defaultTCPRmem   = "4096 131072 6291456"
)

// tsScramblePick chooses about one data segment in 16 by its sequence number:
// a retransmission of a chosen segment is chosen again, so it never arrives.
func tsScramblePick(seq uint32) bool {
	return (seq*2654435761)>>28 == 5
}

// SetFault configures the path box for f, replacing any earlier fault, and
// clears cached path MTUs on every box.
func (l *Lab) SetFault(ctx context.Context, f Fault) error {
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
	if _, err := run(ctx, "", "ip", "-n", l.Path, "link", "set", IfPathSrv, "mtu", mtu); err != nil {
		return err
	}
	rmem := defaultTCPRmem
	if f == FaultWScale {
		rmem = fmt.Sprintf("4096 %d %d", wscaleServerRmem, wscaleServerRmem)
	}
	if err := writeSysctl(l.Server, "net.ipv4.tcp_rmem", rmem); err != nil {
		return err
	}
	for _, ns := range l.Namespaces() {
		for _, fam := range []string{"-4", "-6"} {
			run(ctx, "", "ip", fam, "-n", ns, "route", "flush", "cache")
		}
	}
	if f == FaultWScale || f == FaultTSScramble {
		fb, err := startFaultBox(l.Path, f)
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
		if _, err := runInput(ctx, l.Path, faultRules(f, v6), cmd, "--noflush"); err != nil {
			return err
		}
	}
	l.fault = f
	return nil
}

// Fault is the fault in force.
func (l *Lab) Fault() Fault {
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
// flushed and refilled, so changing the fault leaves nothing behind.
func faultRules(f Fault, v6 bool) string {
	var b strings.Builder
	b.WriteString("*mangle\n-F labfault\n")
	q := fmt.Sprintf("-j NFQUEUE --queue-num %d", faultQueue)
	switch f {
	case FaultWScale:
		fmt.Fprintf(&b, "-A labfault -i %s -p tcp --tcp-flags SYN,ACK SYN,ACK %s\n", IfPathSrv, q)
	case FaultTSScramble:
		fmt.Fprintf(&b, "-A labfault -i %s -p tcp -m length --length 200:65535 %s\n", IfPathSrv, q)
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

// faultBox is the NFQUEUE fault injector in the path namespace.
type faultBox struct {
	nf      *nfqueue.Nfqueue
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	changed atomic.Uint64
}

func startFaultBox(ns string, f Fault) (*faultBox, error) {
	fd, err := unix.Open(netnsDir+"/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fault box: %w", err)
	}
	defer unix.Close(fd)
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        fd,
		NfQueue:      faultQueue,
		MaxPacketLen: 0xffff,
		MaxQueueLen:  4096,
		Copymode:     nfqueue.NfQnlCopyPacket,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("fault box: open queue %d in %s: %w", faultQueue, ns, err)
	}
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close()
		return nil, fmt.Errorf("fault box: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	fb := &faultBox{nf: nf, cancel: cancel}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		id := *a.PacketID
		if a.Payload == nil {
			nf.SetVerdict(id, nfqueue.NfAccept)
			return 0
		}
		pkt := *a.Payload
		var changed bool
		switch f {
		case FaultWScale:
			changed = raiseWScale(pkt, wscaleFaultShift)
		case FaultTSScramble:
			changed = scrambleTSval(pkt, tsScrambleBack, tsScramblePick)
		}
		if changed {
			fb.changed.Add(1)
			nf.SetVerdictModPacket(id, nfqueue.NfAccept, pkt)
		} else {
			nf.SetVerdict(id, nfqueue.NfAccept)
		}
		return 0
	}
	errFn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
		cancel()
		nf.Close()
		return nil, fmt.Errorf("fault box: %w", err)
	}
	return fb, nil
}

func (fb *faultBox) stop() {
	fb.cancel()
	fb.nf.Close()
}
