//go:build linux

package bench

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/metrics"
)

func TestParseNFQueue(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    map[uint16]metrics.KernelQueue
		wantErr string
	}{
		{name: "empty", text: "", want: map[uint16]metrics.KernelQueue{}},
		{
			name: "two queues",
			text: "    0  12345     0 2  4096     0     0       17  1\n    3  12346     2 2 65535     5     7   900000  1\n",
			want: map[uint16]metrics.KernelQueue{
				0: {Queue: 0, PortID: 12345, CopyMode: 2, CopyRange: 4096, IDSequence: 17},
				3: {Queue: 3, PortID: 12346, Waiting: 2, CopyMode: 2, CopyRange: 65535, QueueDrops: 5, UserDrops: 7, IDSequence: 900000},
			},
		},
		{name: "short line", text: "0 1 2\n", wantErr: "3 fields"},
		{name: "not a number", text: "0 1 2 2 x 0 0 0 1\n", wantErr: "field 5"},
		{name: "queue out of range", text: "70000 1 0 2 4096 0 0 0 1\n", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNFQueue(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseNFQueue (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffQueues(t *testing.T) {
	before := map[uint16]metrics.KernelQueue{
		0: {Queue: 0, PortID: 1, IDSequence: 10, QueueDrops: 1},
		1: {Queue: 1, PortID: 2, IDSequence: 50},
	}
	after := map[uint16]metrics.KernelQueue{
		0: {Queue: 0, PortID: 1, IDSequence: 25, QueueDrops: 3, UserDrops: 4},
		1: {Queue: 1, PortID: 9, IDSequence: 5}, // rebound: counts from 0
		2: {Queue: 2, PortID: 3, IDSequence: 7},
	}
	want := QueueDelta{Packets: 15 + 5 + 7, Drops: 2 + 4, PerQueue: map[uint16]uint64{0: 15, 1: 5, 2: 7}}
	if diff := cmp.Diff(want, DiffQueues(before, after)); diff != "" {
		t.Errorf("DiffQueues (-want +got):\n%s", diff)
	}
}

func TestParseProcCPU(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    float64
		wantErr bool
	}{
		{name: "plain", text: "42 (tcpnorm) S 1 42 42 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 8 0 100 0 0", want: 3.8},
		{name: "comm with spaces and parens", text: "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 0 0", want: 0.03},
		{name: "no comm", text: "7 R 1", wantErr: true},
		{name: "short", text: "7 (x) R 1 2 3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcCPU(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("ParseProcCPU = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMetricSum(t *testing.T) {
	text := `# HELP tcpnorm_packets_total Packets.
# TYPE tcpnorm_packets_total counter
tcpnorm_packets_total{queue="0",reason="strip",verdict="modify"} 10
tcpnorm_packets_total{queue="1",reason="a}b",verdict="accept"} 5.5
tcpnorm_packets_total_other 100
go_memstats_mallocs_total 1.234e+06
`
	tests := []struct {
		name  string
		want  float64
		found bool
	}{
		{name: "tcpnorm_packets_total", want: 15.5, found: true},
		{name: "go_memstats_mallocs_total", want: 1.234e6, found: true},
		{name: "absent_total", want: 0, found: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found := MetricSum(text, tt.name)
			if got != tt.want || found != tt.found {
				t.Errorf("MetricSum = %v, %v, want %v, %v", got, found, tt.want, tt.found)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{name: "odd", in: []float64{3, 1, 2}, want: 2},
		{name: "even", in: []float64{4, 1, 3, 2}, want: 2.5},
		{name: "one", in: []float64{7}, want: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Median(tt.in); got != tt.want {
				t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestReplaceSection(t *testing.T) {
	sec := "## Daemon benchmarks\n\nnew\n"
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{name: "no file", doc: "", want: "# Benchmarks\n\n## Daemon benchmarks\n\nnew\n"},
		{name: "appended", doc: "# B\n\n## Normalize\n\nx\n", want: "# B\n\n## Normalize\n\nx\n\n## Daemon benchmarks\n\nnew\n"},
		{
			name: "replaced in the middle",
			doc:  "# B\n\n## Daemon benchmarks\n\nold\n```\n## not a heading\n```\n\n## Normalize\n\nx\n",
			want: "# B\n\n## Daemon benchmarks\n\nnew\n\n## Normalize\n\nx\n",
		},
		{name: "replaced at the end", doc: "# B\n\n## Normalize\n\nx\n\n## Daemon benchmarks\n\nold\n", want: "# B\n\n## Normalize\n\nx\n\n## Daemon benchmarks\n\nnew\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ReplaceSection(tt.doc, sec)); diff != "" {
				t.Errorf("ReplaceSection (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTargets(t *testing.T) {
	r := &Results{Options: Options{Configs: DefaultConfigs}}
	for round := 0; round < 3; round++ {
		r.Samples = append(r.Samples,
			Sample{Config: "C0", Round: round, BulkGbps: 10, ConnPerS: 1000, LatP50us: 100},
			Sample{Config: "C1", Round: round, BulkGbps: 8, ConnPerS: 1000, LatP50us: 110},
			Sample{Config: "T1", Round: round, BulkGbps: 7.9, ConnPerS: 950, LatP50us: 140},
			Sample{Config: "T0", Round: round, BulkGbps: 9.9, ConnPerS: 970, LatP50us: 101 + float64(round)},
			Sample{Config: "C3-syn-1p", Round: round, ConnPerS: 800},
			Sample{Config: "T1-1p", Round: round, ConnPerS: 790},
		)
	}
	r.Samples = append(r.Samples, Sample{Config: "T1", Round: 3, Err: "failed"})
	got := map[string]Target{}
	for _, tg := range r.Targets() {
		got[tg.Name] = tg
	}
	want := map[string]bool{
		"T1 bulk >= 0.97 x C1":                    true,
		"T1 conn/s >= 0.90 x C1":                  true,
		"T1 added handshake p50 <= 50 us over C0": true,
		"T0 bulk >= 0.98 x C0":                    true,
		"T0 conn/s >= 0.98 x C0":                  false,
		"T0 0 packets queued":                     true,
		"T1-1p conn/s >= 1.0 x C3-syn-1p (the C consumer on the same queue)": false,
	}
	for name, pass := range want {
		if tg, ok := got[name]; !ok || !tg.Known || tg.Pass != pass {
			t.Errorf("target %q = %+v, want known and pass %v", name, tg, pass)
		}
	}
	// C0's p50 is the same every round: no noise, so T0's 1-3 us is out.
	for name, tg := range got {
		if strings.HasPrefix(name, "T0 added handshake p50 over C0 within noise") && (!tg.Known || tg.Pass || tg.Measured != "2.0 us") {
			t.Errorf("target %q = %+v, want known, missed, 2.0 us", name, tg)
		}
	}
	if _, ok := got["T0 added handshake p50 over C0 within noise (C0's own p50 spread over rounds: 0.0 us)"]; !ok {
		t.Errorf("no T0 latency target naming C0's spread: %v", got)
	}
	if tg := got["T2 bulk >= 1.0 x C3 rewrite"]; tg.Known {
		t.Errorf("T2 target known without T2 samples: %+v", tg)
	}
	if md := r.Markdown(); !strings.HasPrefix(md, "## Daemon benchmarks\n") || !strings.Contains(md, "T1 (1 failed)") {
		t.Errorf("Markdown lacks the header or the failure count:\n%s", md)
	}
}

// TestTcpnormPolicy: the policies T1 and T2 run with load, with the options
// the report names.
func TestTcpnormPolicy(t *testing.T) {
	for name, want := range map[string]string{"T1": "window_scale=strip timestamps=strip", "T2": "window_scale=clamp window_scale_max=8"} {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, "policies.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		cfgPath := filepath.Join(dir, "tcpnorm.toml")
		if err := os.WriteFile(cfgPath, []byte(TcpnormConfig(2)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "policies.d", "bench.toml"), []byte(TcpnormPolicy(name)), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, TcpnormPolicy(name))
		}
		m := config.NewManager(cfg, nil)
		if got := m.Status()[0].Actions; got != want {
			t.Errorf("%s: actions %q, want %q", name, got, want)
		}
	}
}
