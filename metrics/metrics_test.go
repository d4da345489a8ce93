package metrics

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/normalize"
)

func TestParseKernelQueues(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []KernelQueue
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{
			name: "two queues",
			// The kernel's format: "%5u %6u %5u %1u %5u %5u %5u %8u %2d".
			in: "   10  18467     3 2  4096     7     2       41  1\n   11 3947172225     0 2  4096     0     0        0  1\n",
			want: []KernelQueue{
				{Queue: 10, PortID: 18467, Waiting: 3, CopyMode: 2, CopyRange: 4096, QueueDrops: 7, UserDrops: 2, IDSequence: 41},
				{Queue: 11, PortID: 3947172225, CopyMode: 2, CopyRange: 4096},
			},
		},
		{name: "short line", in: "1 2 3\n", wantErr: "3 fields"},
		{name: "not a number", in: "1 2 3 4 5 x 7 8 1\n", wantErr: "field 6"},
		{name: "queue out of range", in: "70000 2 3 4 5 6 7 8 1\n", wantErr: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKernelQueues(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseKernelQueues (-want +got):\n%s", diff)
			}
		})
	}
}

func scrape(t *testing.T, m *Metrics, src Source) (metricsText string, status StatusJSON) {
	t.Helper()
	srv := httptest.NewServer(m.Handler(src))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp, err = srv.Client().Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		t.Fatal(err)
	}
	return string(b), status
}

func TestEndpoints(t *testing.T) {
	m := New("1.2.3")
	q := m.Queue(4)
	if m.Queue(4) != q {
		t.Error("Queue(4) not cached")
	}
	pol := &normalize.Policy{Name: "example.net"}
	q.Packet(Accept, normalize.ReasonNoPolicy)
	q.Packet(Modify, normalize.ReasonApplied)
	q.Packet(Drop, normalize.ReasonMalformedDrop)
	q.Packet(Accept, normalize.Reason(200)) // unknown reason: counted as error, no panic
	q.PacketError()
	q.Rewrites(pol, normalize.ChWSStripped|normalize.ChTSStripped, false)
	q.Rewrites(pol, normalize.ChWSStripped, false)
	q.Rewrites(pol, normalize.ChMSSClamped, true)
	q.ENOBUFS.Inc()

	dir := t.TempDir()
	proc := filepath.Join(dir, "nfnetlink_queue")
	os.WriteFile(proc, []byte("    4  100     0 2  4096     5     6       41  1\n    9  101     0 2  4096     1     1        1  1\n"), 0o644)
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	src := Source{
		Version: "1.2.3",
		Ready:   func() bool { return true },
		First:   4, Count: 2,
		Kernel: NewKernelCollector(proc, 4, 2),
		Policies: func() []config.PolicyStatus {
			return []config.PolicyStatus{
				{Name: "example.net", File: "/etc/tcpnorm/policies.d/example.net.toml", Domain: "example.net", Mode: "enforce",
					Direction: "both", Actions: "window_scale=strip", Expires: exp,
					Addresses: []netip.Prefix{netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("2001:2::/48")}},
				{Name: "old.net", Mode: "log-only", Expired: true, DNSError: "timeout"},
			}
		},
	}
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
		`tcpnorm_build_info{version="1.2.3"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(text, `queue="9"`) {
		t.Error("/metrics reports a queue that is not tcpnorm's")
	}

	if !st.Ready || st.Version != "1.2.3" || st.Queues.First != 4 || st.Queues.Count != 2 {
		t.Errorf("/status header = %+v", st)
	}
	if diff := cmp.Diff([]KernelQueue{{Queue: 4, PortID: 100, CopyMode: 2, CopyRange: 4096, QueueDrops: 5, UserDrops: 6, IDSequence: 41}}, st.Queues.Kernel); diff != "" {
		t.Errorf("/status kernel queues (-want +got):\n%s", diff)
	}
	wantPol := []PolicyJSON{
		{Name: "example.net", File: "/etc/tcpnorm/policies.d/example.net.toml", Domain: "example.net", Mode: "enforce",
			Direction: "both", Ports: []uint16{}, Actions: "window_scale=strip", Addresses: []string{"198.18.1.0/24", "2001:2::/48"},
			Expires: "2030-01-02T03:04:05Z"},
		{Name: "old.net", Mode: "log-only", Ports: []uint16{}, Addresses: []string{}, Expired: true, DNSError: "timeout"},
	}
	if diff := cmp.Diff(wantPol, st.Policies); diff != "" {
		t.Errorf("/status policies (-want +got):\n%s", diff)
	}
	if got := st.Counters["tcpnorm_rewrites_total{action=strip,option=window_scale,policy=example.net}"]; got != 2 {
		t.Errorf("/status counter = %v, want 2; all: %v", got, st.Counters)
	}
}

func TestOptionActionCoversEveryChange(t *testing.T) {
	for _, c := range normalize.Changes() {
		if _, act := OptionAction(c); act == "change" {
			t.Errorf("change %v has no option/action labels", c)
		}
	}
}
