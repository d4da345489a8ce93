package status

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

const (
	rulesFile     = "../examples/prometheus/tcpnorm-rules.yml"
	rulesTestFile = "../examples/prometheus/tcpnorm-rules.test.yml"
	dashboardFile = "../examples/grafana/tcpnorm-dashboard.json"
)

// exportedNames scrapes a daemon's /metrics with every collector in use and
// returns the series names it can export (a histogram's with _bucket,
// _sum and _count).
func exportedNames(t *testing.T) map[string]bool {
	m, src := fixture(t)
	m.Queue(5) // every per-queue series exists once its worker starts
	m.EvidencePackets.WithLabelValues("example.net").Inc()
	srv := httptest.NewServer(Handler(m, src))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, l := range strings.Split(string(text), "\n") {
		f := strings.Fields(l)
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+s] = true
				}
			}
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\btcpnorm_[a-z_]+\b`)

// TestExampleMonitoring: the alert rules and the dashboard use only metrics
// tcpnorm exports, the dashboard is valid JSON whose queries parse as
// PromQL, and promtool accepts the rules and passes their unit tests.
func TestExampleMonitoring(t *testing.T) {
	names := exportedNames(t)
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range metricName.FindAllString(string(rules), -1) {
		if !names[n] {
			t.Errorf("%s uses %s, which tcpnorm does not export", rulesFile, n)
		}
	}

	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || len(dash.Panels) < 8 {
		t.Fatalf("%s: title %q, %d panels", dashboardFile, dash.Title, len(dash.Panels))
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			found := metricName.FindAllString(tg.Expr, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: %q names no tcpnorm metric", p.Title, tg.Expr)
			}
			for _, n := range found {
				if !names[n] {
					t.Errorf("panel %q uses %s, which tcpnorm does not export", p.Title, n)
				}
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	alerts := regexp.MustCompile(`(?m)^\s+- alert: (\S+)$`).FindAllStringSubmatch(string(rules), -1)
	var got []string
	for _, a := range alerts {
		got = append(got, a[1])
	}
	sort.Strings(got)
	want := []string{"TcpnormDown", "TcpnormEvidenceErrors", "TcpnormKernelQueueDrops", "TcpnormNotReady", "TcpnormPolicyDNSErrors",
		"TcpnormPolicyExpired", "TcpnormPolicyExpiresSoon", "TcpnormPolicyNeverExpires", "TcpnormPolicyNoLongerNeeded", "TcpnormWorkerPanics"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("alerts %v, want %v", got, want)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("promtool not installed (make test-deps takes it from Debian's prometheus package): %v", err)
		}
		t.Skip("promtool not installed; make test-deps (as root) installs it")
	}
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The dashboard's queries, with Grafana's variables filled in, as
	// recording rules: promtool parses each as PromQL.
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")
	for i, e := range exprs {
		q, _ := json.Marshal(fill.Replace(e))
		fmt.Fprintf(&b, "      - record: dashboard_query_%d\n        expr: %s\n", i, q)
	}
	tmp := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", tmp).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries do not parse as PromQL: %v\n%s", err, out)
	}
}
