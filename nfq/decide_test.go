//go:build linux

package nfq

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		res  normalize.Result
		meta normalize.Meta
		want action
	}{
		{
			name: "no policy: plain accept",
			res:  normalize.Result{Why: normalize.Why{Reason: normalize.ReasonNoPolicy}},
			want: action{verdict: nfqueue.NfAccept},
		},
		{
			name: "modified: accept with bytes",
			res:  normalize.Result{Modified: true},
			want: action{verdict: nfqueue.NfAccept, packet: true},
		},
		{
			name: "modified and mark",
			res:  normalize.Result{Modified: true, SetMark: true, Mark: 0x01000007},
			want: action{verdict: nfqueue.NfAccept, packet: true, setMark: true, mark: 0x01000007},
		},
		{
			name: "mark only",
			res:  normalize.Result{SetMark: true, Mark: 0x7},
			want: action{verdict: nfqueue.NfAccept, setMark: true, mark: 0x7},
		},
		{
			name: "mark zero is still set",
			res:  normalize.Result{SetMark: true},
			want: action{verdict: nfqueue.NfAccept, setMark: true},
		},
		{
			name: "drop",
			res:  normalize.Result{Verdict: normalize.Drop, Modified: true, SetMark: true, Mark: 1},
			want: action{verdict: nfqueue.NfDrop},
		},
		{
			name: "truncated copy never returned",
			res:  normalize.Result{Modified: true},
			meta: normalize.Meta{Truncated: true},
			want: action{verdict: nfqueue.NfAccept},
		},
		{
			name: "truncated copy keeps its mark",
			res:  normalize.Result{Modified: true, SetMark: true, Mark: 9},
			meta: normalize.Meta{Truncated: true},
			want: action{verdict: nfqueue.NfAccept, setMark: true, mark: 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.res, tt.meta)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(action{})); diff != "" {
				t.Errorf("decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMetricVerdict(t *testing.T) {
	tests := []struct {
		name string
		act  action
		want metrics.Verdict
	}{
		{name: "accept", act: action{verdict: nfqueue.NfAccept}, want: metrics.Accept},
		{name: "accept with mark", act: action{verdict: nfqueue.NfAccept, setMark: true}, want: metrics.Accept},
		{name: "modify", act: action{verdict: nfqueue.NfAccept, packet: true}, want: metrics.Modify},
		{name: "drop", act: action{verdict: nfqueue.NfDrop}, want: metrics.Drop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.act.metricVerdict(); got != tt.want {
				t.Errorf("metricVerdict() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetaOf(t *testing.T) {
	tests := []struct {
		name string
		q    queued
		want normalize.Meta
	}{
		{name: "nothing", want: normalize.Meta{}},
		{
			name: "checksum not ready",
			q:    queued{skbInfo: 1},
			want: normalize.Meta{CsumNotReady: true},
		},
		{
			name: "gso only",
			q:    queued{skbInfo: 2},
			want: normalize.Meta{},
		},
		{
			name: "cap len means truncated",
			q:    queued{truncated: true},
			want: normalize.Meta{Truncated: true},
		},
		{
			name: "mark",
			q:    queued{mark: 0xff000001, skbInfo: 3},
			want: normalize.Meta{Mark: 0xff000001, CsumNotReady: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, metaOf(&tt.q)); diff != "" {
				t.Errorf("metaOf (-want +got):\n%s", diff)
			}
		})
	}
}

func testWorker(t *testing.T, logw *bytes.Buffer) (*Worker, *metrics.Metrics) {
	t.Helper()
	m := metrics.New("test")
	w, err := newWorker(Config{Queue: 5, Metrics: m, Log: slog.New(slog.NewTextHandler(logw, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.release() })
	return w, m
}

// counter returns the value of one series of m, 0 if absent.
func counter(t *testing.T, m *metrics.Metrics, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, mt := range f.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			if f.GetType() == dto.MetricType_COUNTER {
				return mt.GetCounter().GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	return 0
}

func TestHandlePanicAcceptsUnchanged(t *testing.T) {
	var logs bytes.Buffer
	w, m := testWorker(t, &logs)
	w.norm = func(pkt []byte, _ normalize.Table, _ normalize.Meta) normalize.Result {
		pkt[0] = 0xEE // half-edited, then fails
		var p *normalize.Policy
		_ = p.Name // nil dereference
		return normalize.Result{Modified: true}
	}
	for i := 0; i < 3; i++ {
		res, act, ok := w.handle([]byte{0x45, 0, 0, 20}, normalize.Meta{})
		if ok {
			t.Fatalf("handle ok after a panic: %+v", res)
		}
		if act != acceptUnchanged {
			t.Errorf("action after panic = %+v, want plain accept", act)
		}
	}
	if got := counter(t, m, "tcpnorm_worker_panics_total", map[string]string{"queue": "5"}); got != 3 {
		t.Errorf("panics counted = %v, want 3", got)
	}
	// Logged once, not once per packet.
	if n := strings.Count(logs.String(), "panicked"); n != 1 {
		t.Errorf("panic logged %d times, want 1:\n%s", n, logs.String())
	}
}

type oneTable struct {
	addr netip.Addr
	p    *normalize.Policy
}

func (o oneTable) Lookup(a netip.Addr, _ uint16, _ normalize.Direction) *normalize.Policy {
	if a == o.addr {
		return o.p
	}
	return nil
}

func TestHandlePassesTableAndMeta(t *testing.T) {
	var logs bytes.Buffer
	w, _ := testWorker(t, &logs)
	tbl := oneTable{addr: netip.MustParseAddr("198.18.1.2"), p: &normalize.Policy{Name: "x"}}
	w.cfg.Table = func() normalize.Table { return tbl }
	var gotT normalize.Table
	var gotM normalize.Meta
	w.norm = func(pkt []byte, tb normalize.Table, m normalize.Meta) normalize.Result {
		gotT, gotM = tb, m
		return normalize.Result{Modified: true, SetMark: true, Mark: 3}
	}
	meta := normalize.Meta{CsumNotReady: true, Mark: 7}
	_, act, ok := w.handle([]byte{0x45}, meta)
	if !ok || act != (action{verdict: nfqueue.NfAccept, packet: true, setMark: true, mark: 3}) {
		t.Errorf("handle = %+v, %v", act, ok)
	}
	if gotT != normalize.Table(tbl) || gotM != meta {
		t.Errorf("normalizer got table %v meta %+v, want %v %+v", gotT, gotM, tbl, meta)
	}

	// A nil table from the manager becomes an empty one, not a crash.
	w.cfg.Table = func() normalize.Table { return nil }
	w.norm = func(pkt []byte, tb normalize.Table, m normalize.Meta) normalize.Result {
		if tb.Lookup(netip.MustParseAddr("198.18.1.2"), 25, normalize.Outbound) != nil {
			t.Error("empty table matched")
		}
		return normalize.Result{}
	}
	if _, _, ok := w.handle([]byte{0x45}, normalize.Meta{}); !ok {
		t.Error("handle with nil table failed")
	}
}

// TestCountRewrites: the stateful rewrites of later segments, which carry
// no policy, are counted too.
func TestCountRewrites(t *testing.T) {
	tests := []struct {
		name   string
		res    normalize.Result
		labels map[string]string
		want   float64
	}{
		{
			name:   "handshake clamp",
			res:    normalize.Result{Policy: &normalize.Policy{Name: "example.net"}, Why: normalize.Why{Changes: normalize.ChWSClamped}},
			labels: map[string]string{"policy": "example.net", "option": "window_scale", "action": "clamp"},
			want:   1,
		},
		{
			name:   "stateful window rewrite",
			res:    normalize.Result{Why: normalize.Why{Reason: normalize.ReasonApplied, Changes: normalize.ChWindowRewritten}},
			labels: map[string]string{"policy": "(stateful)", "option": "window_scale", "action": "window-rewrite"},
			want:   1,
		},
		{
			name:   "stateful ts repair",
			res:    normalize.Result{Why: normalize.Why{Reason: normalize.ReasonApplied, Changes: normalize.ChTSRepaired}},
			labels: map[string]string{"policy": "(stateful)", "option": "timestamps", "action": "repair"},
			want:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			w, m := testWorker(t, &logs)
			w.countRewrites(tt.res)
			w.countRewrites(normalize.Result{}) // nothing changed: nothing counted
			if got := counter(t, m, "tcpnorm_rewrites_total", tt.labels); got != tt.want {
				t.Errorf("tcpnorm_rewrites_total%v = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
}

func TestConnLog(t *testing.T) {
	var logs bytes.Buffer
	m := metrics.New("test")
	c := NewConnLog(slog.New(slog.NewTextHandler(&logs, nil)), 2, m.Suppressed)
	now := time.Unix(1000, 0)
	c.now = func() time.Time { return now }
	pol := &normalize.Policy{Name: "example.net", Ticket: "NET-1"}
	res := normalize.Result{
		Kind: normalize.KindSYN, Dir: normalize.Outbound, Policy: pol,
		Flow: normalize.Flow{
			Client: netip.MustParseAddr("198.18.0.2"), ClientPort: 40000,
			Server: netip.MustParseAddr("2001:2::25"), ServerPort: 25,
		},
		Why: normalize.Why{Reason: normalize.ReasonApplied, Changes: normalize.ChWSStripped},
	}
	// Burst of 4 (2 per second), then the rest suppressed.
	for i := 0; i < 10; i++ {
		c.offer(0, res)
	}
	if got := len(c.ch); got != 4 {
		t.Errorf("queued %d lines, want 4", got)
	}
	now = now.Add(time.Second) // two more tokens
	for i := 0; i < 3; i++ {
		c.offer(0, res)
	}
	if got := len(c.ch); got != 6 {
		t.Errorf("queued %d lines after 1s, want 6", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, time.Hour); close(done) }()
	for len(c.ch) > 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond)
	cancel()
	<-done
	out := logs.String()
	if n := strings.Count(out, "msg=rewrite "); n != 6 {
		t.Errorf("%d rewrite lines, want 6:\n%s", n, out)
	}
	for _, want := range []string{
		"policy=example.net", "kind=syn", "dir=outbound", "client=198.18.0.2:40000",
		"server=[2001:2::25]:25", `why="applied wscale-strip"`, "verdict=accept",
		"msg=suppressed lines=7",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if got := counter(t, m, "tcpnorm_log_suppressed_total", nil); got != 7 {
		t.Errorf("suppressed counter = %v, want 7", got)
	}
}

func TestLoggable(t *testing.T) {
	pol := &normalize.Policy{Name: "p"}
	tests := []struct {
		name string
		res  normalize.Result
		want bool
	}{
		{name: "no policy", res: normalize.Result{Kind: normalize.KindSYN, Why: normalize.Why{Changes: normalize.ChWSStripped}}},
		{name: "policy, nothing changed", res: normalize.Result{Kind: normalize.KindSYN, Policy: pol}},
		{name: "syn changed", res: normalize.Result{Kind: normalize.KindSYN, Policy: pol, Why: normalize.Why{Changes: normalize.ChTSStripped}}, want: true},
		{name: "log-only would change", res: normalize.Result{Kind: normalize.KindSYNACK, Policy: pol, Why: normalize.Why{Reason: normalize.ReasonLogOnly, Changes: normalize.ChTSStripped}}, want: true},
		{name: "malformed drop", res: normalize.Result{Kind: normalize.KindSYN, Policy: pol, Verdict: normalize.Drop}, want: true},
		{name: "later segment rewrite: counted only", res: normalize.Result{Kind: normalize.KindOther, Policy: pol, Why: normalize.Why{Changes: normalize.ChWindowRewritten}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loggable(tt.res); got != tt.want {
				t.Errorf("loggable = %v, want %v", got, tt.want)
			}
		})
	}
}
