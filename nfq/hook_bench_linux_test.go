package nfq

import (
	"encoding/binary"
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

// The hook benchmarks drive a worker's whole per-packet path as its receive
// loop runs it (message decoding, metadata, normalizer, metrics, verdict
// message, sendmsg) on packet messages placed in its receive buffer, with
// a real netlink socket that is never bound to a queue: the verdicts go to
// the kernel, which refuses them, so the send path runs in full. The
// single-packet ones send one verdict per sendmsg (a lone packet); the
// Batch ones answer 32 packets per sendmsg, as under load, and report
// ns/pkt. The Verdict benchmarks build and send one verdict alone; the
// difference is tcpnorm's own code. The recvmmsg call itself is not in
// either: it shows in the daemon-wide figure of `make bench`.

// IP 198.18.1.10.51836 > 198.18.2.2.25: Flags [S], seq 1712211467, win 64240,
// options [mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10], length 0
const hookBenchSYN = `4500 003c 3174 4000 4006 0000 c612 010a
	c612 0202 ca7c 0019 660e 460b 0000 0000
	a002 faf0 0000 0000 0204 05b4 0402 080a
	7013 a710 0000 0000 0103 030a`

// benchSocket opens a netlink queue socket in a namespace of its own.
func benchSocket(b *testing.B) int {
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
	sock, err := socketIn(fd)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(sock) })
	return sock
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
	w, err := newWorker(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.rx.close() })
	w.fd = benchSocket(b)
	return w
}

// runHook answers batch copies of the packet message per b.Loop iteration.
func runHook(b *testing.B, w *Worker, pkt []byte, mark uint32, batch int) {
	msg := appendPacketMsg(nil, w.cfg.Queue, 1, mark, 0, pkt)
	b.ReportAllocs()
	id := uint32(1)
	for b.Loop() {
		for i := 0; i < batch; i++ {
			slot := w.rx.buf[i*w.rx.slotLen:]
			copy(slot, msg)
			binary.BigEndian.PutUint32(slot[unix.NLMSG_HDRLEN+nfgenHdrLen+unix.NLA_HDRLEN:], id)
			w.rx.msgs[i].len = uint32(len(msg))
			id++
		}
		w.batch(w.fd, batch)
	}
	if batch > 1 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/pkt")
	}
}

// BenchmarkHookStripSYN: a SYN a strip policy rewrites (T1's handshakes).
func BenchmarkHookStripSYN(b *testing.B) {
	pol := &normalize.Policy{Name: "bench", Direction: normalize.Both, WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip}
	// An interface value made once, as config.Manager.Table returns one.
	var tbl normalize.Table = oneTable{addr: netip.MustParseAddr("198.18.2.2"), p: pol}
	w := benchWorker(b, Config{Table: func() normalize.Table { return tbl }, FailOpen: true})
	runHook(b, w, hookBenchPacket(b), 0, 1)
}

// BenchmarkHookNoPolicy: a SYN no policy matches (plain accept).
func BenchmarkHookNoPolicy(b *testing.B) {
	w := benchWorker(b, Config{FailOpen: true})
	runHook(b, w, hookBenchPacket(b), 0, 1)
}

// BenchmarkHookNoPolicyBatch: 32 of them per receive, on a fail-open queue:
// one NFQNL_MSG_VERDICT_BATCH answers them all.
func BenchmarkHookNoPolicyBatch(b *testing.B) {
	w := benchWorker(b, Config{FailOpen: true})
	runHook(b, w, hookBenchPacket(b), 0, 32)
}

// BenchmarkHookClampSegment: a later segment of a clamped flow on a
// stateful worker (T2's data path): window rewritten, packet returned.
func BenchmarkHookClampSegment(b *testing.B) {
	benchClamp(b, 1)
}

// BenchmarkHookClampSegmentBatch: 32 of them per receive and sendmsg.
func BenchmarkHookClampSegmentBatch(b *testing.B) {
	benchClamp(b, 32)
}

func benchClamp(b *testing.B, batch int) {
	pkt := hookBenchPacket(b)
	pkt[33] = 0x10 // ACK instead of SYN
	mb, err := normalize.NewMarkBits(0xff000000)
	if err != nil {
		b.Fatal(err)
	}
	mark := mb.Original() | 0x25000000 // local client, shift delta 5
	w := benchWorker(b, Config{Stateful: true, MarkMask: 0xff000000})
	runHook(b, w, pkt, mark, batch)
}

// BenchmarkVerdictAccept: a plain accept built and sent alone.
func BenchmarkVerdictAccept(b *testing.B) {
	benchVerdict(b, action{verdict: nfqueue.NfAccept})
}

// BenchmarkVerdictAltered: an accept with the packet's new bytes.
func BenchmarkVerdictAltered(b *testing.B) {
	benchVerdict(b, action{verdict: nfqueue.NfAccept, packet: true})
}

func benchVerdict(b *testing.B, act action) {
	fd := benchSocket(b)
	pkt := hookBenchPacket(b)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	id := uint32(1)
	for b.Loop() {
		id++
		buf = appendVerdictMsg(buf[:0], 0, false, id, act, pkt)
		send(fd, buf)
	}
}
