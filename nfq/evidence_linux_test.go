package nfq

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// TestLoopEvidence: the handshakes of an evidence policy reach the
// recorder as received and as sent, after their verdicts; those of a
// policy without evidence do not.
func TestLoopEvidence(t *testing.T) {
	littleEndian(t)
	var logs bytes.Buffer
	m := metrics.New("test")
	dir := t.TempDir()
	rec := evidence.NewRecorder(evidence.Settings{Dir: dir, MaxBytes: 1 << 20, Keep: 1}, slog.New(slog.DiscardHandler),
		evidence.Counters{Packets: m.EvidencePackets, Dropped: m.EvidenceDropped, Errors: m.EvidenceErrors})
	with := &normalize.Policy{Name: "with", Direction: normalize.Both, WindowScale: normalize.WSStrip, Evidence: true}
	without := &normalize.Policy{Name: "without", Direction: normalize.Both, WindowScale: normalize.WSStrip}
	tab := normalize.ListTable{
		{Prefix: netip.MustParsePrefix("198.18.2.2/32"), Policy: with},
		{Prefix: netip.MustParsePrefix("198.18.2.3/32"), Policy: without},
	}
	w, err := newWorker(Config{Queue: 3, MaxLen: 4096, FailOpen: true, Metrics: m, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Evidence: rec, Table: func() normalize.Table { return tab }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.release() })
	k, stop := loopWorker(t, w)
	syn := unhex(t, hookBenchSYN) // 198.18.1.10 > 198.18.2.2, with window scale
	other := append([]byte(nil), syn...)
	other[19] = 3 // to 198.18.2.3 (the checksum does not matter here)
	const n = 40  // more than one receive's slots
	for i := 0; i < n; i++ {
		pkt := syn
		if i%2 == 1 {
			pkt = other
		}
		pkt = append([]byte(nil), pkt...)
		pkt[21] = byte(i) // a source port each
		k.send(appendPacketMsg(nil, 3, uint32(i+1), 0, 0, pkt))
	}
	k.startLoop()
	k.verdicts(n)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec.Run(ctx) // writes what was queued
	pkts, err := evidence.ReadFile(evidence.File(dir, "with"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != n {
		t.Fatalf("%d packets recorded, want %d (each of %d SYNs as received and as sent)", len(pkts), n, n/2)
	}
	for i := 0; i < len(pkts); i += 2 {
		if !strings.HasPrefix(pkts[i].Comment, "policy=with syn outbound 198.18.1.10:") || !strings.HasSuffix(pkts[i].Comment, " received") {
			t.Errorf("packet %d: comment %q", i, pkts[i].Comment)
		}
		if bytes.Equal(pkts[i].Data, pkts[i+1].Data) || !strings.Contains(pkts[i+1].Comment, "sent: applied wscale-strip") {
			t.Errorf("pair %d: received %x, sent %x (%q)", i/2, pkts[i].Data, pkts[i+1].Data, pkts[i+1].Comment)
		}
	}
	if _, err := os.Stat(evidence.File(dir, "without")); err == nil {
		t.Error("a policy without evidence has an evidence file")
	}
}
