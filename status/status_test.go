package status

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/metrics"
	"github.com/tcpnorm/tcpnorm/normalize"
)

var (
	now     = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	started = now.Add(-3 * time.Hour)
	exp     = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// fixture is a daemon's metrics after some traffic, and its Source.
func fixture(t *testing.T) (*metrics.Metrics, Source) {
	t.Helper()
	m := metrics.New("1.2.3")
	q := m.Queue(4)
	pol := &normalize.Policy{Name: "example.net"}
	q.Packet(metrics.Accept, normalize.ReasonNoPolicy)
	q.Packet(metrics.Modify, normalize.ReasonApplied)
	q.Packet(metrics.Drop, normalize.ReasonMalformedDrop)
	q.Packet(metrics.Accept, normalize.Reason(200)) // unknown reason: counted as error, no panic
	q.PacketError()
	q.Rewrites(pol, normalize.ChWSStripped|normalize.ChTSStripped, false)
	q.Rewrites(pol, normalize.ChWSStripped, false)
	q.Rewrites(pol, normalize.ChMSSClamped, true)
	q.Matched(pol, now.Add(-90*time.Second))
	q.Matched(pol, now.Add(-30*time.Second))
	for i := 0; i < 100; i++ {
		q.ProcTime.Observe(20e-6) // in the 4..16 us ... 64 us buckets
	}
	q.ENOBUFS.Inc()
	m.EvidencePackets.WithLabelValues("example.net").Add(4)
	m.EvidenceErrors.WithLabelValues("write").Inc()

	proc := filepath.Join(t.TempDir(), "nfnetlink_queue")
	os.WriteFile(proc, []byte("    4  100     0 2  4096     5     6       41  1\n    9  101     0 2  4096     1     1        1  1\n"), 0o644)
	src := Source{
		Version: "1.2.3",
		Started: started,
		Ready:   func() bool { return true },
		First:   4, Count: 1,
		Kernel: metrics.NewKernelCollector(proc, 4, 2),
		Policies: func() []config.PolicyStatus {
			return []config.PolicyStatus{
				{Name: "example.net", File: "/etc/tcpnorm/policies.d/example.net.toml", Domain: "example.net", Mode: "enforce",
					Direction: "both", Actions: "window_scale=strip", Expires: exp, Ticket: "NET-1", Evidence: true,
					Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:2::/48")},
					Loaded:    started, Refreshed: now.Add(-10 * time.Second), Next: now.Add(50 * time.Second),
					ProbeEvery: 12 * time.Hour, Probe: &config.ProbeState{Need: config.NeedNo, Since: now.Add(-36 * time.Hour),
						Last: now.Add(-time.Hour), Next: now.Add(11 * time.Hour), Streak: 4, Detail: "198.18.1.2 no-longer-needed"}},
				{Name: "old.net", Mode: "log-only", Expired: true, Expires: now.Add(-time.Hour), DNSError: "timeout", ProbeEvery: time.Hour},
			}
		},
		Evidence: func() evidence.Settings { return evidence.Settings{Dir: "/var/lib/tcpnorm/evidence"} },
		Now:      func() time.Time { return now },
	}
	return m, src
}

func scrape(t *testing.T, m *metrics.Metrics, src Source) (metricsText string, doc Document) {
	t.Helper()
	srv := httptest.NewServer(Handler(m, src))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	d, err := Fetch(context.Background(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b), *d
}

func TestEndpoints(t *testing.T) {
	m, src := fixture(t)
	text, st := scrape(t, m, src)
	for _, want := range []string{
		`tcpnorm_packets_total{queue="4",reason="no-policy",verdict="accept"} 1`,
		`tcpnorm_packets_total{queue="4",reason="applied",verdict="modify"} 1`,
		`tcpnorm_packets_total{queue="4",reason="malformed-drop",verdict="drop"} 1`,
		`tcpnorm_packets_total{queue="4",reason="error",verdict="accept"} 2`,
		`tcpnorm_packets_total{queue="4",reason="truncated",verdict="drop"} 0`,
		`tcpnorm_rewrites_total{action="strip",option="window_scale",policy="example.net"} 2`,
		`tcpnorm_rewrites_total{action="strip",option="timestamps",policy="example.net"} 1`,
		`tcpnorm_would_rewrite_total{action="clamp",option="mss_max",policy="example.net"} 1`,
		`tcpnorm_policy_connections_total{policy="example.net"} 2`,
		`tcpnorm_enobufs_total{queue="4"} 1`,
		`tcpnorm_kernel_queue_dropped_total{queue="4"} 5`,
		`tcpnorm_kernel_queue_user_dropped_total{queue="4"} 6`,
		`tcpnorm_kernel_queue_enqueued_total{queue="4"} 41`,
		`tcpnorm_kernel_queue_bound{queue="5"} 0`,
		`tcpnorm_policies{state="active"} 1`,
		`tcpnorm_policies{state="expired"} 1`,
		`tcpnorm_policy_addresses{policy="example.net"} 2`,
		`tcpnorm_policy_dns_error{policy="old.net"} 1`,
		`tcpnorm_policy_expiry_timestamp_seconds{policy="example.net"} 1.893553445e+09`,
		`tcpnorm_evidence_errors_total{op="write"} 1`,
		`tcpnorm_evidence_errors_total{op="open"} 0`,
		`tcpnorm_build_info{version="1.2.3"} 1`,
		`tcpnorm_policy_needed{policy="example.net",state="no-longer-needed"} 1`,
		`tcpnorm_policy_needed{policy="example.net",state="still-needed"} 0`,
		`tcpnorm_policy_needed{policy="old.net",state="unknown"} 1`,
		`tcpnorm_policy_unneeded_probes{policy="example.net"} 4`,
		`tcpnorm_policy_unneeded_probes{policy="old.net"} 0`,
		`tcpnorm_policy_probe_timestamp_seconds{policy="example.net"} 1.7962092e+09`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, `queue="9"`) {
		t.Error("/metrics reports a queue that is not tcpnorm's")
	}

	if !st.Ready || st.Version != "1.2.3" || st.Queues.First != 4 || st.Queues.Count != 1 || !st.Started.Equal(started) {
		t.Errorf("/status header = %+v", st)
	}
	if diff := cmp.Diff([]metrics.KernelQueue{{Queue: 4, PortID: 100, CopyMode: 2, CopyRange: 4096, QueueDrops: 5, UserDrops: 6, IDSequence: 41}}, st.Queues.Kernel); diff != "" {
		t.Errorf("/status kernel queues (-want +got):\n%s", diff)
	}
	// 100 samples of 20 us: all in the (16 us, 64 us] bucket.
	wantQ := []Queue{
		{Queue: 4, Range: "handshake", Bound: true, Packets: 5, Modified: 1, Dropped: 1, LatencySamples: 100,
			LatencyP50: 16e-6 + 48e-6*0.5, LatencyP99: 16e-6 + 48e-6*0.99, KernelDropped: 5, KernelUserDrop: 6},
		{Queue: 5, Range: "stateful"},
	}
	approx := cmp.Comparer(func(a, b float64) bool { return a == b || (a-b)*(a-b) < 1e-18 })
	if diff := cmp.Diff(wantQ, st.Queues.PerQueue, approx); diff != "" {
		t.Errorf("/status per_queue (-want +got):\n%s", diff)
	}
	tp := func(t time.Time) *time.Time { return &t }
	left, gone := exp.Sub(now).Seconds(), -3600.0
	wantPol := []Policy{
		{Name: "example.net", File: "/etc/tcpnorm/policies.d/example.net.toml", Domain: "example.net", Mode: "enforce",
			Direction: "both", Ports: []uint16{}, Actions: "window_scale=strip", Ticket: "NET-1",
			Addresses: []string{"198.18.1.0/24", "2001:2::/48"},
			Refreshed: tp(now.Add(-10 * time.Second)), Next: tp(now.Add(50 * time.Second)), Loaded: tp(started),
			Expires: "2030-01-02T03:04:05Z", ExpiresIn: &left,
			Connections: 2, LastMatch: tp(now.Add(-30 * time.Second)),
			Rewrites:     []Rewrite{{"timestamps", "strip", 1}, {"window_scale", "strip", 2}},
			WouldRewrite: []Rewrite{{"mss_max", "clamp", 1}},
			Evidence:     true, EvidenceFile: "/var/lib/tcpnorm/evidence/example.net.pcapng", EvidencePackets: 4,
			Probe: &Probe{Every: "12h", Need: config.NeedNo, Since: tp(now.Add(-36 * time.Hour)), Last: tp(now.Add(-time.Hour)),
				Next: tp(now.Add(11 * time.Hour)), Streak: 4, Detail: "198.18.1.2 no-longer-needed"}},
		{Name: "old.net", Mode: "log-only", Ports: []uint16{}, Addresses: []string{}, Expired: true, DNSError: "timeout",
			Expires: now.Add(-time.Hour).Format(time.RFC3339), ExpiresIn: &gone, Rewrites: []Rewrite{}, WouldRewrite: []Rewrite{},
			Probe: &Probe{Every: "1h"}},
	}
	if diff := cmp.Diff(wantPol, st.Policies, approx); diff != "" {
		t.Errorf("/status policies (-want +got):\n%s", diff)
	}
	if got := st.Counters["tcpnorm_rewrites_total{action=strip,option=window_scale,policy=example.net}"]; got != 2 {
		t.Errorf("/status counter = %v, want 2; all: %v", got, st.Counters)
	}

	var b bytes.Buffer
	Write(&b, &st)
	for _, want := range []string{
		"tcpnorm 1.2.3, ready, up 3h0m (since 2026-12-02T09:00:00Z)",
		"policy example.net\n",
		"  mode       enforce, both, ports all\n",
		"  addresses  2 (198.18.1.0/24, 2001:2::/48); resolved 10s ago, next in 50s\n",
		"  matched    2 connections, last 30s ago (2026-12-02T11:59:30Z)\n",
		"  rewrites   timestamps strip 1, window_scale strip 2\n",
		"  expires    in 1126d15h (2030-01-02T03:04:05Z)\n",
		"  evidence   /var/lib/tcpnorm/evidence/example.net.pcapng (4 packet copies written)\n",
		"WARNING: evidence lost: 0 segments dropped (writer behind), 1 file errors",
		"policy old.net\n",
		"  would      mss_max clamp 1\n",
		"  expires    EXPIRED at 2026-12-02T11:00:00Z: it no longer applies",
		"  addresses  0; cidrs only; DNS error: timeout\n",
		"  ticket     NET-1\n",
		"  probe      NO LONGER NEEDED since 2026-12-01T00:00:00Z (4 probes in a row): the path works as sent; remove the policy; every 12h; last 1h0m ago: 198.18.1.2 no-longer-needed\n",
		"  probe      every 1h; not probed yet\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status text lacks %q:\n%s", want, b.String())
		}
	}
	if !regexpLine(b.String(), `^\s+4\s+handshake\s+yes\s+5\s+1\s+1\s+40us\s+63us\s+0\s+5\s+6$`) {
		t.Errorf("status text lacks queue 4's row:\n%s", b.String())
	}
	if raw, _ := json.Marshal(st); !strings.Contains(string(raw), `"per_queue"`) {
		t.Errorf("JSON lacks per_queue: %s", raw)
	}
}

func regexpLine(text, re string) bool {
	return regexp.MustCompile(`(?m)` + re).MatchString(text)
}

func TestURL(t *testing.T) {
	tests := []struct{ listen, want, wantErr string }{
		{listen: "127.0.0.1:9464", want: "http://127.0.0.1:9464/status"},
		{listen: ":9464", want: "http://127.0.0.1:9464/status"},
		{listen: "0.0.0.0:9464", want: "http://127.0.0.1:9464/status"},
		{listen: "[::]:9464", want: "http://[::1]:9464/status"},
		{listen: "[2001:2::1]:9464", want: "http://[2001:2::1]:9464/status"},
		{listen: "", wantErr: `[metrics] listen is ""`},
	}
	for _, tt := range tests {
		got, err := URL(tt.listen, "/status")
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("URL(%q) = %q, %v; want error %q", tt.listen, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("URL(%q) = %q, %v; want %q", tt.listen, got, err, tt.want)
		}
	}
}

func TestFetchUnreachable(t *testing.T) {
	srv := httptest.NewServer(nil)
	addr := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	_, err := Fetch(context.Background(), nil, addr)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the daemon at http://"+addr+"/status") {
		t.Errorf("Fetch from a closed port: %v", err)
	}
}
