package evidence

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Linux 6.18, finished checksum:
// IP 198.18.7.1.51836 > 198.18.7.2.25: Flags [S], seq 1712211467, win 64240,
// options [mss 1460,sackOK,TS val 1880336144 ecr 0,nop,wscale 10], length 0
const linuxSYN = "4500003c3174400040066f20c6120701c6120702ca7c0019660e460b00000000" +
	"a002faf025110000020405b40402080a7013a710000000000103030a"

func syn(t *testing.T) []byte {
	t.Helper()
	b, err := hex.DecodeString(linuxSYN)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record runs a SYN through a normalizer under pol and fills a record from
// it, as a queue worker does.
func record(t *testing.T, pol *normalize.Policy, at time.Time) *Record {
	t.Helper()
	return recordOf(t, syn(t), pol, at)
}

func recordOf(t *testing.T, pkt []byte, pol *normalize.Policy, at time.Time) *Record {
	t.Helper()
	received := append([]byte(nil), pkt...)
	tab := normalize.ListTable{{Prefix: netip.MustParsePrefix("198.18.7.2/32"), Policy: pol}}
	res := normalize.New(normalize.Config{}).Packet(pkt, tab, normalize.Meta{})
	if !Wanted(&res) {
		t.Fatalf("Wanted(%+v) = false", res)
	}
	var rec Record
	rec.Fill(at, 3, &res, received, pkt)
	return &rec
}

func TestComments(t *testing.T) {
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	head := "policy=example.net ticket=NET-1234 syn outbound 198.18.7.1:51836 > 198.18.7.2:25"
	tests := []struct {
		name               string
		pol                normalize.Policy
		pkt                func([]byte) // edits the SYN
		wantRecv, wantSent string
		wantChanged        bool
	}{
		{
			name:     "rewritten",
			pol:      normalize.Policy{WindowScale: normalize.WSStrip, Timestamps: normalize.TSStrip},
			wantRecv: head + " received", wantSent: head + " sent: applied wscale-strip,ts-strip",
			wantChanged: true,
		},
		{
			name:     "nothing to change",
			pol:      normalize.Policy{MSSMax: 1460},
			wantRecv: head + " received", wantSent: head + " sent unchanged",
		},
		{
			name:     "malformed, dropped",
			pol:      normalize.Policy{DropMalformed: true},
			pkt:      func(b []byte) { b[len(b)-2] = 2 }, // window scale of length 2
			wantRecv: head + " received; dropped: malformed-drop",
		},
		{
			name:     "log-only",
			pol:      normalize.Policy{WindowScale: normalize.WSStrip, Mode: normalize.LogOnly},
			wantRecv: head + " received; log-only, not changed; would rewrite: wscale-strip",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := tt.pol
			pol.Name, pol.Ticket, pol.Direction, pol.Evidence = "example.net", "NET-1234", normalize.Both, true
			pkt := syn(t)
			if tt.pkt != nil {
				tt.pkt(pkt)
			}
			wantRx := hex.EncodeToString(pkt)
			rec := recordOf(t, pkt, &pol, at)
			rc, sc := rec.comments()
			if diff := cmp.Diff([2]string{tt.wantRecv, tt.wantSent}, [2]string{rc, sc}); diff != "" {
				t.Errorf("comments (-want +got):\n%s", diff)
			}
			rx, _ := rec.Received()
			if got := hex.EncodeToString(rx); got != wantRx {
				t.Errorf("received = %s, want the SYN as it came, %s", got, wantRx)
			}
			tx, _ := rec.Sent()
			if got := tx != nil; got != tt.wantChanged {
				t.Errorf("sent copy kept = %v, want %v", got, tt.wantChanged)
			}
			if tt.wantChanged && hex.EncodeToString(tx) == wantRx {
				t.Errorf("sent = received")
			}
		})
	}
}

func newTestRecorder(t *testing.T, s Settings) (*Recorder, *prometheus.CounterVec, *prometheus.CounterVec) {
	packets := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p"}, []string{"policy"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "e"}, []string{"op"})
	return NewRecorder(s, slog.New(slog.DiscardHandler), Counters{Packets: packets, Errors: errs}), packets, errs
}

func TestWriteAndRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "evidence")
	r, packets, _ := newTestRecorder(t, Settings{Dir: dir, MaxBytes: 1 << 20, Keep: 2})
	at := time.Date(2026, 12, 2, 10, 0, 0, 123456789, time.UTC)
	pol := &normalize.Policy{Name: "example.net", Ticket: "NET-1234", Direction: normalize.Both,
		WindowScale: normalize.WSStrip, Evidence: true}
	rec := record(t, pol, at)
	r.write(rec)
	r.write(rec)
	r.closeAll()

	path := File(dir, "example.net")
	pkts, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 4 {
		t.Fatalf("read %d packets, want 4", len(pkts))
	}
	tx, _ := rec.Sent()
	for i, p := range pkts {
		want := syn(t)
		if i%2 == 1 {
			want = tx
		}
		if !p.Time.Equal(at) || p.Length != 60 || string(p.Data) != string(want) {
			t.Errorf("packet %d: %v len %d %x, want %v len 60 %x", i, p.Time, p.Length, p.Data, at, want)
		}
	}
	if !strings.HasSuffix(pkts[0].Comment, " received") || !strings.Contains(pkts[1].Comment, " sent: applied wscale-strip") {
		t.Errorf("comments %q, %q", pkts[0].Comment, pkts[1].Comment)
	}
	if got := sum(packets); got != 4 {
		t.Errorf("packets written = %v, want 4", got)
	}
	for p, want := range map[string]os.FileMode{dir: 0o750 | os.ModeDir, path: 0o640} {
		if st, err := os.Stat(p); err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode(), err, want)
		}
	}

	// tcpdump reads it as raw IP and sees both copies: the window scale
	// option NOP-filled in the second.
	out, err := exec.Command("tcpdump", "-nr", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var pkt []string
	for _, l := range lines {
		if strings.Contains(l, " IP ") {
			pkt = append(pkt, l)
		}
	}
	if len(pkt) != 4 || !strings.Contains(pkt[0], "wscale 10") || strings.Contains(pkt[1], "wscale") ||
		!strings.Contains(pkt[1], "198.18.7.1.51836 > 198.18.7.2.25: Flags [S]") {
		t.Errorf("tcpdump -r:\n%s", out)
	}
	if _, err := exec.LookPath("tshark"); err == nil {
		out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.comment").CombinedOutput()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
		if got := strings.Count(string(out), "policy=example.net ticket=NET-1234"); got != 4 {
			t.Errorf("tshark sees %d comments, want 4:\n%s", got, out)
		}
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	const maxBytes = 2048
	r, _, errs := newTestRecorder(t, Settings{Dir: dir, MaxBytes: maxBytes, Keep: 2})
	pol := &normalize.Policy{Name: "p", Direction: normalize.Both, WindowScale: normalize.WSStrip, Evidence: true}
	rec := record(t, pol, time.Unix(1e9, 0))
	total := 0
	for i := 0; i < 40; i++ {
		r.write(rec)
		total += 2
	}
	r.closeAll()
	files := Files(Settings{Dir: dir, Keep: 2}, "p")
	want := []string{File(dir, "p") + ".2", File(dir, "p") + ".1", File(dir, "p")}
	if diff := cmp.Diff(want, files); diff != "" {
		t.Fatalf("Files (-want +got):\n%s", diff)
	}
	got := 0
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > maxBytes {
			t.Errorf("%s: %d bytes, over max_bytes %d", f, st.Size(), maxBytes)
		}
		pkts, err := ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(pkts) == 0 || len(pkts)%2 != 0 {
			t.Errorf("%s: %d packets, want whole pairs", f, len(pkts))
		}
		got += len(pkts)
	}
	if got >= total || got < 2*(2*maxBytes/700) {
		t.Errorf("%d packets kept of %d written: rotation kept too much or too little", got, total)
	}
	if _, err := os.Stat(File(dir, "p") + ".3"); err == nil {
		t.Errorf("a third rotated file is kept with keep = 2")
	}
	if n := series(errs); n != 0 {
		t.Errorf("%d error series", n)
	}
}

func TestWriteErrorsCounted(t *testing.T) {
	// The directory cannot be created: a regular file is in the way.
	base := t.TempDir()
	blocker := filepath.Join(base, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r, packets, errs := newTestRecorder(t, Settings{Dir: filepath.Join(blocker, "evidence"), MaxBytes: 1 << 20, Keep: 1})
	pol := &normalize.Policy{Name: "p", Direction: normalize.Both, WindowScale: normalize.WSStrip, Evidence: true}
	r.write(record(t, pol, time.Now()))
	if got := sum(errs); got != 1 {
		t.Errorf("open errors = %v, want 1", got)
	}
	if n := series(packets); n != 0 {
		t.Errorf("packets counted although nothing was written")
	}
}

func TestOfferNeverBlocks(t *testing.T) {
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	r := NewRecorder(Settings{Dir: t.TempDir(), MaxBytes: 1 << 20}, slog.New(slog.DiscardHandler), Counters{Dropped: dropped})
	pol := &normalize.Policy{Name: "p", Direction: normalize.Both, WindowScale: normalize.WSStrip, Evidence: true}
	rec := record(t, pol, time.Now())
	// Nobody runs the writer: the queue fills and the rest is dropped.
	for i := 0; i < Backlog+10; i++ {
		r.Offer(rec)
	}
	if got := sum(dropped); got != 10 {
		t.Errorf("dropped = %v, want 10", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { r.Offer(rec) }); allocs != 0 {
		t.Errorf("Offer allocates %v times", allocs)
	}
	// Run drains the queue when stopped.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Run(ctx)
	if pkts, err := ReadFile(File(r.settings.Load().Dir, "p")); err != nil || len(pkts) != 2*Backlog {
		t.Errorf("after Run: %d packets (%v), want %d", len(pkts), err, 2*Backlog)
	}
}

// sum adds up every series of c; series counts them.
func sum(c prometheus.Collector) float64 {
	var total float64
	for _, m := range collect(c) {
		total += m.GetCounter().GetValue()
	}
	return total
}

func series(c prometheus.Collector) int { return len(collect(c)) }

func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	var out []*dto.Metric
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err == nil {
			out = append(out, &d)
		}
	}
	return out
}

// TestReopen: a restarted daemon appends to the file it left; a file that
// is not pcapng is moved aside rather than appended to.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	pol := &normalize.Policy{Name: "p", Direction: normalize.Both, WindowScale: normalize.WSStrip, Evidence: true}
	rec := record(t, pol, time.Unix(1e9, 0))
	for run := 1; run <= 2; run++ {
		r, _, _ := newTestRecorder(t, Settings{Dir: dir, MaxBytes: 1 << 20, Keep: 1})
		r.write(rec)
		r.closeAll()
		pkts, err := ReadFile(File(dir, "p"))
		if err != nil || len(pkts) != 2*run {
			t.Fatalf("run %d: %d packets (%v), want %d", run, len(pkts), err, 2*run)
		}
	}
	if out, err := exec.Command("tcpdump", "-nr", File(dir, "p")).CombinedOutput(); err != nil || strings.Count(string(out), " IP ") != 4 {
		t.Errorf("tcpdump -r after a reopen: %v\n%s", err, out)
	}

	if err := os.WriteFile(File(dir, "q"), []byte("not a capture"), 0o640); err != nil {
		t.Fatal(err)
	}
	r, _, _ := newTestRecorder(t, Settings{Dir: dir, MaxBytes: 1 << 20, Keep: 1})
	r.write(record(t, &normalize.Policy{Name: "q", Direction: normalize.Both, WindowScale: normalize.WSStrip, Evidence: true}, time.Unix(1e9, 0)))
	r.closeAll()
	if b, err := os.ReadFile(File(dir, "q") + ".bad"); err != nil || string(b) != "not a capture" {
		t.Errorf("the foreign file was not moved aside: %q, %v", b, err)
	}
	if pkts, err := ReadFile(File(dir, "q")); err != nil || len(pkts) != 2 {
		t.Errorf("new file: %d packets, %v", len(pkts), err)
	}
}
