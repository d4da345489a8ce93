package nfq

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// netns is a throw-away network namespace with loopback up.
type netns struct {
	name string
	fd   int
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create a network namespace and bind an NFQUEUE")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: %v", tool, err)
		}
	}
	ns := &netns{name: fmt.Sprintf("tcpnorm-nfq-%d-%x", os.Getpid(), rand.Uint32())}
	if out, err := exec.Command("ip", "netns", "add", ns.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns.name, err, out)
		}
	})
	fd, err := unix.Open("/run/netns/"+ns.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	ns.fd = fd
	ns.run(t, "ip", "link", "set", "lo", "up")
	return ns
}

func (ns *netns) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// do runs fn on a thread switched into the namespace, so sockets fn
// creates live there.
func (ns *netns) do(t *testing.T, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left locked and so discarded when this goroutine
		// ends: it never returns to the pool in the wrong namespace.
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns: %v", err)
			return
		}
		fn()
	}()
	<-done
}

// connect opens a TCP connection to a listener, both in the namespace, and
// echoes one message over it.
func (ns *netns) connect(t *testing.T, network, addr string) error {
	t.Helper()
	var err error
	ns.do(t, func() {
		var ln net.Listener
		ln, err = net.Listen(network, addr)
		if err != nil {
			return
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.Copy(c, c)
		}()
		var c net.Conn
		c, err = net.DialTimeout(network, ln.Addr().String(), 3*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err = c.Write([]byte("hello")); err != nil {
			return
		}
		buf := make([]byte, 5)
		_, err = io.ReadFull(c, buf)
	})
	return err
}

// TestWorkerAnswers binds a real queue in a namespace. Handshakes on
// loopback are queued without --queue-bypass, so a connection completes
// only if the worker gives its verdicts; the rewrite path returns the bytes
// with a mark, which a counting rule then sees.
func TestWorkerAnswers(t *testing.T) {
	ns := newNetns(t)
	const queue = 7
	for _, tool := range []string{"iptables", "ip6tables"} {
		ns.run(t, tool, "-w", "-t", "mangle", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "SYN", "SYN", "-j", "NFQUEUE", "--queue-num", fmt.Sprint(queue))
		ns.run(t, tool, "-w", "-t", "mangle", "-A", "POSTROUTING", "-p", "tcp", "-m", "mark", "--mark", "0x42")
	}
	m := metrics.New("test")
	var logs bytes.Buffer
	w, err := Open(Config{
		Queue: queue, MaxLen: 4096, FailOpen: true, NetNS: ns.fd,
		Metrics: m, Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var modified, notReady int
	w.norm = func(pkt []byte, _ normalize.Table, m normalize.Meta) normalize.Result {
		// Every second packet goes back "modified" with a mark. The kernel
		// treats returned bytes as CHECKSUM_NONE, so an unfinished
		// checksum (loopback: CHECKSUM_PARTIAL) must be completed, as the
		// normalizer does.
		modified++
		if m.CsumNotReady {
			notReady++
		}
		if modified%2 == 0 {
			if m.CsumNotReady {
				fullTCPChecksum(t, pkt)
			}
			return normalize.Result{Modified: true, SetMark: true, Mark: 0x42, Why: normalize.Why{Reason: normalize.ReasonApplied}}
		}
		return normalize.Result{Why: normalize.Why{Reason: normalize.ReasonNoPolicy}}
	}
	if err := w.Start(ctx); err != nil {
		w.Close()
		t.Fatalf("Start: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			w.Close()
		}
	}()

	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		for i := 0; i < 3; i++ {
			if err := ns.connect(t, tc.network, tc.addr); err != nil {
				t.Fatalf("%s connection %d through the queue: %v\nlogs:\n%s", tc.network, i, err, logs.String())
			}
		}
	}
	// 6 connections: a SYN and a SYN-ACK each.
	total := counter(t, m, "tcpnorm_packets_total", map[string]string{"queue": "7", "verdict": "accept", "reason": "no-policy"}) +
		counter(t, m, "tcpnorm_packets_total", map[string]string{"queue": "7", "verdict": "modify", "reason": "applied"})
	if total != 12 {
		t.Errorf("packets counted = %v, want 12", total)
	}
	if notReady == 0 {
		t.Errorf("no packet arrived with NFQA_SKB_CSUMNOTREADY; loopback segments should")
	}
	marked := 0
	for _, tool := range []string{"iptables", "ip6tables"} {
		out := ns.run(t, tool, "-w", "-t", "mangle", "-nvxL", "POSTROUTING")
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "mark match 0x42") {
				var pk int
				fmt.Sscan(strings.Fields(line)[0], &pk)
				marked += pk
			}
		}
	}
	if marked != 6 {
		t.Errorf("packets seen with the verdict's mark = %d, want 6", marked)
	}
	// The kernel lists the queue as bound to our socket. /proc/net is the
	// main thread's namespace; thread-self is the one ns.do switched to.
	kq := metrics.NewKernelCollector("/proc/thread-self/net/netfilter/nfnetlink_queue", queue, 1)
	var qs []metrics.KernelQueue
	ns.do(t, func() { qs, err = kq.Read() })
	if err != nil || len(qs) != 1 || qs[0].Queue != queue || qs[0].CopyRange != 4096 {
		t.Errorf("kernel queues = %+v, %v; want queue %d with copy range 4096", qs, err, queue)
	}

	if err := w.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	closed = true
	ns.do(t, func() { qs, err = kq.Read() })
	if err != nil || len(qs) != 0 {
		t.Errorf("after Close kernel queues = %+v, %v; want none", qs, err)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", logs.String())
	}
}

// fullTCPChecksum recomputes the TCP checksum of an IPv4 or IPv6 packet
// without extension headers.
func fullTCPChecksum(t *testing.T, pkt []byte) {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	var tcp []byte
	switch pkt[0] >> 4 {
	case 4:
		ihl := int(pkt[0]&0xf) * 4
		tcp = pkt[ihl:]
		add(pkt[12:20])
	case 6:
		if pkt[6] != 6 {
			t.Errorf("IPv6 next header %d, want TCP", pkt[6])
			return
		}
		tcp = pkt[40:]
		add(pkt[8:40])
	default:
		t.Errorf("not IP: %x", pkt[:1])
		return
	}
	sum += 6 + uint32(len(tcp))
	tcp[16], tcp[17] = 0, 0
	add(tcp)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	tcp[16], tcp[17] = byte(c>>8), byte(c)
}
