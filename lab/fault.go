package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"github.com/tcpnorm/tcpnorm/normalize"
	"golang.org/x/sys/unix"
)

// Fault is a path fault the path box injects.
type Fault uint8

const (
	FaultNone        Fault = iota
	FaultSYNTS             // firewall dropping SYNs that carry timestamps
	FaultWScale            // router raising the window-scale shift in SYN-ACKs to 14
	FaultTSScramble        // box moving some of the server's TSvals into the past
	FaultPMTU              // smaller MTU toward the server, ICMP too-big filtered
	FaultWScaleCap         // box honouring window-scale shifts only up to a cap
	FaultTSScramble2       // box moving some of the server's TSvals into the past, some into the future
	numFaults
)

var faultNames = [numFaults]string{"none", "syn-ts", "wscale", "ts-scramble", "pmtu", "wscale-cap", "ts-scramble2"}

func (f Fault) String() string {
	if f < numFaults {
		return faultNames[f]
	}
	return fmt.Sprintf("fault(%d)", f)
}

// Faults lists the fault classes a stateless policy fixes (not FaultNone).
func Faults() []Fault {
	return []Fault{FaultSYNTS, FaultWScale, FaultTSScramble, FaultPMTU}
}

// StatefulFaults lists the faults only the stateful actions fix without
// giving up the option: window_scale = "clamp" and timestamps = "repair".
func StatefulFaults() []Fault {
	return []Fault{FaultWScaleCap, FaultTSScramble2}
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
	case FaultWScaleCap:
		return "the path honours window-scale shifts only up to a cap (default 2): it computes every window as field << min(shift, cap), far below the real one, and drops the data segments beyond the window it computed"
	case FaultTSScramble2:
		return "the path moves the TSval of some of the server's data segments about 17 minutes into the past and of others as far into the future; the client's PAWS check discards the old ones, and after a future one every correct one"
	}
	return "no fault: a clean path"
}

// Direction is the transfer direction that shows the fault.
func (f Fault) Direction() Direction {
	switch f {
	case FaultTSScramble, FaultTSScramble2:
		return Download
	}
	return Upload
}

// FixOptions are the options of the policy that fixes the fault (the
// option fields of a normalize.Policy; config.FormatPolicy writes them).
func (f Fault) FixOptions(v6 bool) normalize.Policy {
	switch f {
	case FaultSYNTS, FaultTSScramble:
		return normalize.Policy{Timestamps: normalize.TSStrip}
	case FaultWScale:
		return normalize.Policy{WindowScale: normalize.WSStrip}
	case FaultPMTU:
		return normalize.Policy{MSSMax: uint16(PMTUMSS(v6))}
	case FaultWScaleCap:
		return ClampOptions(DefaultWScaleCap)
	case FaultTSScramble2:
		return normalize.Policy{Timestamps: normalize.TSRepair}
	}
	return normalize.Policy{}
}

// ClampOptions are the options that fix a wscale-cap path honouring
// shifts up to k without giving up window scaling.
func ClampOptions(k int) normalize.Policy {
	return normalize.Policy{WindowScale: normalize.WSClamp, WindowScaleMax: uint8(k)}
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
	tsScrambleAhead  = 1 << 20
	defaultTCPRmem   = "4096 131072 6291456"
)

// tsScramblePick chooses about one data segment in 16 by its sequence number:
// a retransmission of a chosen segment is chosen again, so it never arrives.
func tsScramblePick(seq uint32) bool {
	return (seq*2654435761)>>28 == 5
}

// tsScrambleAheadPick chooses another one in 16, for ts-scramble2's values
// into the future.
func tsScrambleAheadPick(seq uint32) bool {
	return (seq*2654435761)>>28 == 9
}

// PathOptions are the path box's settings beyond its fault.
type PathOptions struct {
	// WScaleCap is the largest shift a wscale-cap path honours (1..14,
	// or WScaleCapZero for a box that ignores scaling altogether); 0 means
	// DefaultWScaleCap.
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
		opt.WScaleCap = DefaultWScaleCap
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
	if _, err := Run(ctx, "", "ip", "-n", l.Path, "link", "set", IfPathSrv, "mtu", mtu); err != nil {
		return err
	}
	rmem := defaultTCPRmem
	if f == FaultWScale {
		rmem = fmt.Sprintf("4096 %d %d", wscaleServerRmem, wscaleServerRmem)
	}
	if err := WriteSysctl(l.Server, "net.ipv4.tcp_rmem", rmem); err != nil {
		return err
	}
	for _, ns := range l.Namespaces() {
		for _, fam := range []string{"-4", "-6"} {
			Run(ctx, "", "ip", fam, "-n", ns, "route", "flush", "cache")
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
		if _, err := RunInput(ctx, l.Path, faultRules(f, v6, opt.RTT > 0), cmd, "--noflush"); err != nil {
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
		fmt.Fprintf(&b, "-A labfault -i %s -p tcp --tcp-flags SYN,ACK SYN,ACK %s\n", IfPathSrv, q)
	case f == FaultTSScramble || f == FaultTSScramble2:
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

// heldPacket is a verdict the box issues once its time has come.
type heldPacket struct {
	id  uint32
	pkt []byte // nil: accepted unchanged
	at  time.Time
}

// holdBacklog bounds the packets held for the added RTT: far above the
// bandwidth-delay product of the lab's transfers (tens of MB/s for tens of
// milliseconds is a few hundred packets), below the kernel queue.
const (
	holdBacklog    = 16384
	faultQueueLen  = 32768
	faultRcvBuffer = 32 << 20
)

func startFaultBox(ns string, f Fault, opt PathOptions) (*faultBox, error) {
	fd, err := unix.Open(netnsDir+"/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fault box: %w", err)
	}
	defer unix.Close(fd)
	var srvIndex uint32
	if err := InNetns(ns, func() error {
		ifi, err := net.InterfaceByName(IfPathSrv)
		if err == nil {
			srvIndex = uint32(ifi.Index)
		}
		return err
	}); err != nil {
		return nil, fmt.Errorf("fault box: %w", err)
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        fd,
		NfQueue:      faultQueue,
		MaxPacketLen: 0xffff,
		MaxQueueLen:  faultQueueLen,
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
	// Held packets wait in the kernel queue, not in the socket; the buffer
	// only has to absorb bursts the hook has not read yet.
	if rc, err := nf.Con.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, faultRcvBuffer)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	fb := &faultBox{nf: nf, cancel: cancel}
	var capBox *windowCap
	if f == FaultWScaleCap {
		capBox = newWindowCap(opt.WScaleCap)
	}
	delay := opt.RTT / 2
	var held chan heldPacket
	if delay > 0 {
		held = make(chan heldPacket, holdBacklog)
		fb.wg.Add(1)
		go fb.release(ctx, held)
	}
	accept := func(id uint32, pkt []byte) {
		if held != nil {
			select {
			case held <- heldPacket{id: id, pkt: pkt, at: time.Now().Add(delay)}:
			case <-ctx.Done():
			}
			return
		}
		if pkt != nil {
			nf.SetVerdictModPacket(id, nfqueue.NfAccept, pkt)
		} else {
			nf.SetVerdict(id, nfqueue.NfAccept)
		}
	}
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID == nil {
			return 0
		}
		id := *a.PacketID
		if a.Payload == nil {
			accept(id, nil)
			return 0
		}
		pkt := *a.Payload
		fromServer := a.InDev != nil && *a.InDev == srvIndex
		var changed bool
		switch f {
		case FaultWScale:
			changed = fromServer && raiseWScale(pkt, wscaleFaultShift)
		case FaultTSScramble:
			changed = fromServer && scrambleTSval(pkt, tsScrambleBack, tsScramblePick)
		case FaultTSScramble2:
			changed = fromServer && (scrambleTSval(pkt, tsScrambleBack, tsScramblePick) ||
				scrambleTSval(pkt, ^uint32(tsScrambleAhead)+1, tsScrambleAheadPick))
		case FaultWScaleCap:
			if !capBox.forward(pkt) {
				fb.changed.Add(1)
				nf.SetVerdict(id, nfqueue.NfDrop)
				return 0
			}
		}
		if changed {
			fb.changed.Add(1)
			accept(id, append([]byte(nil), pkt...))
		} else {
			accept(id, nil)
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
		fb.wg.Wait()
		nf.Close()
		return nil, fmt.Errorf("fault box: %w", err)
	}
	return fb, nil
}

// release issues the held verdicts in order, each at its time.
func (fb *faultBox) release(ctx context.Context, held <-chan heldPacket) {
	defer fb.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		var h heldPacket
		select {
		case h = <-held:
		case <-ctx.Done():
			return
		}
		if d := time.Until(h.at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		if h.pkt != nil {
			fb.nf.SetVerdictModPacket(h.id, nfqueue.NfAccept, h.pkt)
		} else {
			fb.nf.SetVerdict(h.id, nfqueue.NfAccept)
		}
	}
}

func (fb *faultBox) stop() {
	fb.cancel()
	fb.wg.Wait()
	fb.nf.Close()
}
