package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpnorm/tcpnorm/config"
)

// PolicyCollector exports the state of every policy, read from Status at
// each scrape (config.Manager.Status).
type PolicyCollector struct {
	Status    func() []config.PolicyStatus
	policies  *prometheus.Desc
	addresses *prometheus.Desc
	expired   *prometheus.Desc
	expiry    *prometheus.Desc
	dnsError  *prometheus.Desc
}

// NewPolicyCollector returns a collector reading status.
func NewPolicyCollector(status func() []config.PolicyStatus) *PolicyCollector {
	p := []string{"policy"}
	return &PolicyCollector{
		Status:    status,
		policies:  prometheus.NewDesc("tcpnorm_policies", "Policies by state (active, expired).", []string{"state"}, nil),
		addresses: prometheus.NewDesc("tcpnorm_policy_addresses", "Resolved addresses and prefixes a policy covers.", p, nil),
		expired:   prometheus.NewDesc("tcpnorm_policy_expired", "1 if the policy has expired and no longer applies.", p, nil),
		expiry:    prometheus.NewDesc("tcpnorm_policy_expiry_timestamp_seconds", "When the policy expires (Unix time); absent if it never does.", p, nil),
		dnsError:  prometheus.NewDesc("tcpnorm_policy_dns_error", "1 if the last resolution of the policy's names failed (the last known addresses stay).", p, nil),
	}
}

func (c *PolicyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.policies
	ch <- c.addresses
	ch <- c.expired
	ch <- c.expiry
	ch <- c.dnsError
}

func (c *PolicyCollector) Collect(ch chan<- prometheus.Metric) {
	var active, expired float64
	for _, p := range c.Status() {
		b2f := func(b bool) float64 {
			if b {
				return 1
			}
			return 0
		}
		if p.Expired {
			expired++
		} else {
			active++
		}
		ch <- prometheus.MustNewConstMetric(c.addresses, prometheus.GaugeValue, float64(len(p.Addresses)), p.Name)
		ch <- prometheus.MustNewConstMetric(c.expired, prometheus.GaugeValue, b2f(p.Expired), p.Name)
		ch <- prometheus.MustNewConstMetric(c.dnsError, prometheus.GaugeValue, b2f(p.DNSError != ""), p.Name)
		if !p.Expires.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, float64(p.Expires.Unix()), p.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.policies, prometheus.GaugeValue, active, "active")
	ch <- prometheus.MustNewConstMetric(c.policies, prometheus.GaugeValue, expired, "expired")
}

// Source is what /status reports besides the counters.
type Source struct {
	Version  string
	Ready    func() bool
	First    uint16
	Count    int
	Kernel   *KernelCollector // may be nil
	Policies func() []config.PolicyStatus
}

// StatusJSON is the document /status serves.
type StatusJSON struct {
	Ready    bool               `json:"ready"`
	Version  string             `json:"version"`
	Queues   QueuesJSON         `json:"queues"`
	Policies []PolicyJSON       `json:"policies"`
	Counters map[string]float64 `json:"counters"` // non-zero tcpnorm_* series, keyed name{labels}
}

type QueuesJSON struct {
	First  uint16        `json:"first"`
	Count  int           `json:"count"`
	Kernel []KernelQueue `json:"kernel,omitempty"`
}

type PolicyJSON struct {
	Name      string   `json:"name"`
	File      string   `json:"file"`
	Domain    string   `json:"domain"`
	Mode      string   `json:"mode"`
	Direction string   `json:"direction"`
	Ports     []uint16 `json:"ports"`
	Actions   string   `json:"actions"`
	Addresses []string `json:"addresses"`
	Expires   string   `json:"expires,omitempty"` // RFC 3339
	Expired   bool     `json:"expired"`
	DNSError  string   `json:"dns_error,omitempty"`
}

// Handler serves /metrics and /status. It registers the kernel and policy
// collectors of src with the registry.
func (m *Metrics) Handler(src Source) http.Handler {
	if src.Kernel != nil {
		m.Registry.MustRegister(src.Kernel)
	}
	if src.Policies != nil {
		m.Registry.MustRegister(NewPolicyCollector(src.Policies))
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m.Status(src))
	})
	return mux
}

// Status builds the /status document.
func (m *Metrics) Status(src Source) StatusJSON {
	st := StatusJSON{
		Version:  src.Version,
		Queues:   QueuesJSON{First: src.First, Count: src.Count},
		Policies: []PolicyJSON{},
		Counters: map[string]float64{},
	}
	if src.Ready != nil {
		st.Ready = src.Ready()
	}
	if src.Kernel != nil {
		if qs, err := src.Kernel.Read(); err == nil {
			for _, q := range qs {
				if int(q.Queue) >= int(src.First) && int(q.Queue) < int(src.First)+src.Count {
					st.Queues.Kernel = append(st.Queues.Kernel, q)
				}
			}
		}
	}
	if src.Policies != nil {
		for _, p := range src.Policies() {
			pj := PolicyJSON{
				Name: p.Name, File: p.File, Domain: p.Domain, Mode: p.Mode, Direction: p.Direction,
				Ports: p.Ports, Actions: p.Actions, Addresses: []string{}, Expired: p.Expired, DNSError: p.DNSError,
			}
			if pj.Ports == nil {
				pj.Ports = []uint16{}
			}
			for _, a := range p.Addresses {
				pj.Addresses = append(pj.Addresses, a.String())
			}
			if !p.Expires.IsZero() {
				pj.Expires = p.Expires.UTC().Format(time.RFC3339)
			}
			st.Policies = append(st.Policies, pj)
		}
	}
	fams, _ := m.Registry.Gather()
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "tcpnorm_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				v = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				v = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				v = float64(mt.GetHistogram().GetSampleCount())
			default:
				continue
			}
			if v == 0 {
				continue
			}
			st.Counters[seriesName(f.GetName(), mt.GetLabel())] = v
		}
	}
	return st
}

func seriesName(name string, labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return name
	}
	ls := make([]string, 0, len(labels))
	for _, l := range labels {
		ls = append(ls, l.GetName()+"="+l.GetValue())
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// Serve serves h on ln until ctx is done, then shuts down within 2 seconds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}
