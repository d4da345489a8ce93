package nfq

import (
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// The hook benchmarks drive a worker's whole per-packet path (metadata,
// normalizer, metrics, verdict) with a fake queue attribute, on a real
// netlink socket that is never bound to a queue: the verdicts go to the
// kernel, which refuses them, so the go-nfqueue send path runs in full. The
// Verdict benchmarks run go-nfqueue's part alone; the difference is
// tcpnorm's own code. go-nfqueue's receive path (netlink read and attribute
// parsing) is not in either: it shows in the daemon-wide figure of
// `make bench`.

// IP 198.18.1.10.51836 > 198.18.2.2.25: Flags [S], seq 1712211467, win 64240,
// options [mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10], length 0
const hookBenchSYN = `4500 003c 3174 4000 4006 0000 c612 010a
	c612 0202 ca7c 0019 660e 460b 0000 0000
	a002 faf0 0000 0000 0204 05b4 0402 080a
	7013 a710 0000 0000 0103 030a`

func benchQueue(b *testing.B) *nfqueue.Nfqueue {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("skipping: needs root for a netlink queue socket in its own namespace")
	}
	name := fmt.Sprintf("tcpnorm-nfqb-%d-%x", os.Getpid(), rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	nf, err := nfqueue.Open(&nfqueue.Config{NetNS: fd, NfQueue: 0, MaxPacketLen: 0xffff, Copymode: nfqueue.NfQnlCopyPacket, AfFamily: unix.AF_UNSPEC})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { nf.Con.Close() })
	return nf
}

func hookBenchPacket(b *testing.B) []byte {
	b.Helper()
	p, err := hex.DecodeString(strings.Join(strings.Fields(hookBenchSYN), ""))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchWorker(b *testing.B, cfg Config) *Worker {
	cfg.Metrics = metrics.New("bench")
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	w := newWorker(cfg)
	w.nf = benchQueue(b)
	return w
}

func runHook(b *testing.B, w *Worker, pkt []byte, mark *uint32, reset func([]byte)) {
	buf := make([]byte, len(pkt))
	id := uint32(1)
	a := nfqueue.Attribute{PacketID: &id, Payload: &buf, Mark: mark}
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, pkt)
		if reset != nil {
			reset(buf)
		}
		id++
		w.hook(a)
	}
}

// BenchmarkHookStripSYN: a SYN a strip policy rewrites (T1's handshakes).
func BenchmarkHookStripSYN(b *testing.B) {
	pol := &normalize.Policy{Name: "bench", Direction: normalize.Both, WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip}
	tbl := oneTable{addr: netip.MustParseAddr("198.18.2.2"), p: pol}
	w := benchWorker(b, Config{Table: func() normalize.Table { return tbl }})
	runHook(b, w, hookBenchPacket(b), nil, nil)
}

// BenchmarkHookNoPolicy: a SYN no policy matches (plain accept).
func BenchmarkHookNoPolicy(b *testing.B) {
	w := benchWorker(b, Config{})
	runHook(b, w, hookBenchPacket(b), nil, nil)
}

// BenchmarkHookClampSegment: a later segment of a clamped flow on a
// stateful worker (T2's data path): window rewritten, packet returned.
func BenchmarkHookClampSegment(b *testing.B) {
	pkt := hookBenchPacket(b)
	pkt[33] = 0x10 // ACK instead of SYN
	mb, err := normalize.NewMarkBits(0xff000000)
	if err != nil {
		b.Fatal(err)
	}
	mark := mb.Original() | 0x25000000 // local client, shift delta 5
	w := benchWorker(b, Config{Stateful: true, MarkMask: 0xff000000})
	runHook(b, w, pkt, &mark, func(p []byte) { p[34], p[35] = 0, 100 })
}

// BenchmarkVerdictAccept: go-nfqueue's plain accept alone.
func BenchmarkVerdictAccept(b *testing.B) {
	nf := benchQueue(b)
	b.ReportAllocs()
	id := uint32(1)
	for b.Loop() {
		id++
		nf.SetVerdict(id, nfqueue.NfAccept)
	}
}

// BenchmarkVerdictAltered: go-nfqueue's accept with the packet's new bytes.
func BenchmarkVerdictAltered(b *testing.B) {
	nf := benchQueue(b)
	pkt := hookBenchPacket(b)
	b.ReportAllocs()
	id := uint32(1)
	for b.Loop() {
		id++
		nf.SetVerdictWithOption(id, nfqueue.NfAccept, nfqueue.WithAlteredPacket(pkt))
	}
}
