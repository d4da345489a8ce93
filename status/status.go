package status

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/metrics"
)

// Source is what /status reports besides the counters.
type Source struct {
	Version string
	Started time.Time
	Ready   func() bool
	// First and Count are the handshake queues; the next Count queues
	// are the stateful ones.
	First    uint16
	Count    int
	Kernel   *metrics.KernelCollector // may be nil
	Policies func() []config.PolicyStatus
	Evidence func() evidence.Settings // may be nil
	// Privileges reads the process's user and capabilities (may be nil).
	Privileges func() Privileges
	Now        func() time.Time // default time.Now
}

// Document is what /status serves.
type Document struct {
	Ready    bool           `json:"ready"`
	Version  string         `json:"version"`
	Started  time.Time      `json:"started"`
	Now      time.Time      `json:"now"`
	Evidence EvidenceHealth `json:"evidence"`
	// Privileges are the daemon's user and capabilities, every thread's.
	Privileges *Privileges        `json:"privileges,omitempty"`
	Queues     Queues             `json:"queues"`
	Policies   []Policy           `json:"policies"`
	Counters   map[string]float64 `json:"counters"` // non-zero tcpnorm_* series, keyed name{labels}
}

// EvidenceHealth counts what the evidence recorder lost.
type EvidenceHealth struct {
	Dropped uint64 `json:"dropped"` // the writer's queue was full
	Errors  uint64 `json:"errors"`  // open, write and rotate errors
}

// Queues are the handshake queues' range, the kernel's lines for them, and
// per queue (handshake and stateful) what tcpnorm counted.
type Queues struct {
	First    uint16                `json:"first"`
	Count    int                   `json:"count"`
	Kernel   []metrics.KernelQueue `json:"kernel,omitempty"`
	PerQueue []Queue               `json:"per_queue"`
}

// Queue is one queue's traffic and health.
type Queue struct {
	Queue    uint16 `json:"queue"`
	Range    string `json:"range"` // handshake | stateful
	Bound    bool   `json:"bound"` // the kernel lists it
	Packets  uint64 `json:"packets"`
	Modified uint64 `json:"modified"`
	Dropped  uint64 `json:"dropped"`
	// Verdict latency (receive to verdict) from the sampled histogram:
	// estimated quantiles in seconds; 0 without samples.
	LatencySamples uint64  `json:"latency_samples"`
	LatencyP50     float64 `json:"latency_p50_seconds"`
	LatencyP99     float64 `json:"latency_p99_seconds"`
	KernelWaiting  uint32  `json:"kernel_waiting"`
	KernelDropped  uint64  `json:"kernel_dropped"`      // queue full
	KernelUserDrop uint64  `json:"kernel_user_dropped"` // socket buffer full
}

// Policy is one policy's configuration and what it did.
type Policy struct {
	Name      string     `json:"name"`
	File      string     `json:"file"`
	Domain    string     `json:"domain"`
	Mode      string     `json:"mode"`
	Direction string     `json:"direction"`
	Ports     []uint16   `json:"ports"`
	Actions   string     `json:"actions"`
	Reason    string     `json:"reason,omitempty"`
	Ticket    string     `json:"ticket,omitempty"`
	Addresses []string   `json:"addresses"`
	Refreshed *time.Time `json:"refreshed,omitempty"`    // the last DNS answer for its names
	Next      *time.Time `json:"next_refresh,omitempty"` // the next resolution
	Loaded    *time.Time `json:"loaded,omitempty"`       // first loaded by the running daemon
	Expires   string     `json:"expires,omitempty"`      // RFC 3339
	// ExpiresIn is the time left in seconds (negative: expired).
	ExpiresIn *float64 `json:"expires_in_seconds,omitempty"`
	Expired   bool     `json:"expired"`
	DNSError  string   `json:"dns_error,omitempty"`
	// Connections counts the SYNs it matched; LastMatch is the last one.
	Connections  uint64     `json:"connections"`
	LastMatch    *time.Time `json:"last_match,omitempty"`
	Rewrites     []Rewrite  `json:"rewrites"`      // enforce: done
	WouldRewrite []Rewrite  `json:"would_rewrite"` // log-only: what enforce would do
	Evidence     bool       `json:"evidence"`
	EvidenceFile string     `json:"evidence_file,omitempty"`
	// EvidencePackets counts the packet copies written to its file.
	EvidencePackets uint64 `json:"evidence_packets"`
	// Probe is the daemon's re-testing of the path (policy key probe).
	Probe *Probe `json:"probe,omitempty"`
}

// Probe is what the re-tests of a policy's path found.
type Probe struct {
	Every  string      `json:"every"` // the interval, e.g. "12h"
	Need   config.Need `json:"need"`  // still-needed | no-longer-needed | unknown
	Since  *time.Time  `json:"since,omitempty"`
	Last   *time.Time  `json:"last,omitempty"`
	Next   *time.Time  `json:"next,omitempty"`
	Streak int         `json:"in_a_row"` // probes in a row that found Need
	Detail string      `json:"detail,omitempty"`
}

// State is p as the config's type, for config.ProbeSummary.
func (p *Probe) State() (time.Duration, *config.ProbeState) {
	every, _ := time.ParseDuration(p.Every)
	at := func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	}
	return every, &config.ProbeState{Need: p.Need, Streak: p.Streak, Detail: p.Detail, Since: at(p.Since), Last: at(p.Last), Next: at(p.Next)}
}

// Rewrite is a count of segments rewritten by option and action.
type Rewrite struct {
	Option string `json:"option"`
	Action string `json:"action"`
	Count  uint64 `json:"count"`
}

// Handler serves /metrics and /status. It registers the kernel and policy
// collectors of src with m's registry.
func Handler(m *metrics.Metrics, src Source) http.Handler {
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
		_ = enc.Encode(Build(m, src))
	})
	return mux
}

// series is one gathered sample: its labels and value (a histogram's
// count), and the histogram itself.
type series struct {
	labels map[string]string
	value  float64
	hist   *dto.Histogram
}

// Build puts the /status document together.
func Build(m *metrics.Metrics, src Source) Document {
	now := time.Now()
	if src.Now != nil {
		now = src.Now()
	}
	doc := Document{
		Version:  src.Version,
		Started:  src.Started.UTC(),
		Now:      now.UTC(),
		Queues:   Queues{First: src.First, Count: src.Count, PerQueue: []Queue{}},
		Policies: []Policy{},
		Counters: map[string]float64{},
	}
	if src.Ready != nil {
		doc.Ready = src.Ready()
	}
	if src.Privileges != nil {
		p := src.Privileges()
		doc.Privileges = &p
	}

	byName := map[string][]series{}
	fams, _ := m.Registry.Gather()
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "tcpnorm_") {
			continue
		}
		for _, mt := range f.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range mt.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.value = mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.value = mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.hist = mt.GetHistogram()
				s.value = float64(s.hist.GetSampleCount())
			default:
				continue
			}
			byName[f.GetName()] = append(byName[f.GetName()], s)
			if s.value != 0 {
				doc.Counters[seriesName(f.GetName(), mt.GetLabel())] = s.value
			}
		}
	}

	for _, s := range byName["tcpnorm_evidence_dropped_total"] {
		doc.Evidence.Dropped += uint64(s.value)
	}
	for _, s := range byName["tcpnorm_evidence_errors_total"] {
		doc.Evidence.Errors += uint64(s.value)
	}

	var kernel map[uint16]metrics.KernelQueue
	if src.Kernel != nil {
		if qs, err := src.Kernel.Read(); err == nil {
			kernel = map[uint16]metrics.KernelQueue{}
			for _, q := range qs {
				kernel[q.Queue] = q
				if int(q.Queue) >= int(src.First) && int(q.Queue) < int(src.First)+src.Count {
					doc.Queues.Kernel = append(doc.Queues.Kernel, q)
				}
			}
		}
	}
	for i := 0; i < 2*src.Count && int(src.First)+i <= math.MaxUint16; i++ {
		n := uint16(int(src.First) + i)
		q := Queue{Queue: n, Range: "handshake"}
		if i >= src.Count {
			q.Range = "stateful"
		}
		label := strconv.Itoa(int(n))
		for _, s := range byName["tcpnorm_packets_total"] {
			if s.labels["queue"] != label {
				continue
			}
			q.Packets += uint64(s.value)
			switch s.labels["verdict"] {
			case "modify":
				q.Modified += uint64(s.value)
			case "drop":
				q.Dropped += uint64(s.value)
			}
		}
		for _, s := range byName["tcpnorm_packet_processing_seconds"] {
			if s.labels["queue"] == label && s.hist != nil {
				q.LatencySamples = s.hist.GetSampleCount()
				q.LatencyP50 = quantile(0.5, s.hist)
				q.LatencyP99 = quantile(0.99, s.hist)
			}
		}
		if k, ok := kernel[n]; ok {
			q.Bound, q.KernelWaiting, q.KernelDropped, q.KernelUserDrop = true, k.Waiting, k.QueueDrops, k.UserDrops
		}
		doc.Queues.PerQueue = append(doc.Queues.PerQueue, q)
	}

	var ev evidence.Settings
	if src.Evidence != nil {
		ev = src.Evidence()
	}
	if src.Policies != nil {
		for _, p := range src.Policies() {
			doc.Policies = append(doc.Policies, policy(p, now, byName, ev))
		}
	}
	return doc
}

func policy(p config.PolicyStatus, now time.Time, byName map[string][]series, ev evidence.Settings) Policy {
	pj := Policy{
		Name: p.Name, File: p.File, Domain: p.Domain, Mode: p.Mode, Direction: p.Direction,
		Ports: p.Ports, Actions: p.Actions, Reason: p.Reason, Ticket: p.Ticket, Addresses: []string{},
		Expired: p.Expired, DNSError: p.DNSError, Evidence: p.Evidence,
		Rewrites: rewrites(byName["tcpnorm_rewrites_total"], p.Name), WouldRewrite: rewrites(byName["tcpnorm_would_rewrite_total"], p.Name),
		Refreshed: timePtr(p.Refreshed), Loaded: timePtr(p.Loaded),
	}
	if p.Domain != "" {
		pj.Next = timePtr(p.Next)
	}
	if pj.Ports == nil {
		pj.Ports = []uint16{}
	}
	for _, a := range p.Addresses {
		pj.Addresses = append(pj.Addresses, a.String())
	}
	if !p.Expires.IsZero() {
		pj.Expires = p.Expires.UTC().Format(time.RFC3339)
		left := math.Round(p.Expires.Sub(now).Seconds())
		pj.ExpiresIn = &left
	}
	for _, s := range byName["tcpnorm_policy_connections_total"] {
		if s.labels["policy"] == p.Name {
			pj.Connections = uint64(s.value)
		}
	}
	for _, s := range byName["tcpnorm_policy_last_match_timestamp_seconds"] {
		if s.labels["policy"] == p.Name && s.value > 0 {
			sec, frac := math.Modf(s.value)
			pj.LastMatch = timePtr(time.Unix(int64(sec), int64(frac*1e9)))
		}
	}
	if p.Evidence && ev.Dir != "" {
		pj.EvidenceFile = evidence.File(ev.Dir, p.Name)
	}
	if p.ProbeEvery != 0 {
		pj.Probe = &Probe{Every: config.FormatDuration(p.ProbeEvery)}
		if st := p.Probe; st != nil {
			pj.Probe.Need, pj.Probe.Streak, pj.Probe.Detail = st.Need, st.Streak, st.Detail
			pj.Probe.Since, pj.Probe.Last, pj.Probe.Next = timePtr(st.Since), timePtr(st.Last), timePtr(st.Next)
		}
	}
	for _, s := range byName["tcpnorm_evidence_packets_total"] {
		if s.labels["policy"] == p.Name {
			pj.EvidencePackets = uint64(s.value)
		}
	}
	return pj
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func rewrites(ss []series, policy string) []Rewrite {
	out := []Rewrite{}
	for _, s := range ss {
		if s.labels["policy"] == policy && s.value > 0 {
			out = append(out, Rewrite{Option: s.labels["option"], Action: s.labels["action"], Count: uint64(s.value)})
		}
	}
	slices.SortFunc(out, func(a, b Rewrite) int {
		return strings.Compare(a.Option+" "+a.Action, b.Option+" "+b.Action)
	})
	return out
}

// quantile estimates the q-quantile of a histogram the way Prometheus's
// histogram_quantile does: linear within the bucket it falls in.
func quantile(q float64, h *dto.Histogram) float64 {
	total := float64(h.GetSampleCount())
	if total == 0 {
		return 0
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for _, b := range h.GetBucket() {
		upper, n := b.GetUpperBound(), float64(b.GetCumulativeCount())
		if n >= rank {
			if n == below {
				return upper
			}
			return lower + (upper-lower)*(rank-below)/(n-below)
		}
		lower, below = upper, n
	}
	return lower // in the +Inf bucket: the highest finite bound
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

// PolicyCollector exports the state of every policy, read from Status at
// each scrape (config.Manager.Status).
type PolicyCollector struct {
	Status    func() []config.PolicyStatus
	policies  *prometheus.Desc
	addresses *prometheus.Desc
	expired   *prometheus.Desc
	expiry    *prometheus.Desc
	dnsError  *prometheus.Desc
	needed    *prometheus.Desc
	probeLast *prometheus.Desc
	unneeded  *prometheus.Desc
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
		needed: prometheus.NewDesc("tcpnorm_policy_needed", "What the re-tests of a policy's path (policy key probe) say: 1 for the state in force "+
			"(still-needed, no-longer-needed, unknown), 0 for the others.", []string{"policy", "state"}, nil),
		probeLast: prometheus.NewDesc("tcpnorm_policy_probe_timestamp_seconds", "When the policy's path was last re-tested (Unix time).", p, nil),
		unneeded:  prometheus.NewDesc("tcpnorm_policy_unneeded_probes", "Re-tests in a row that found the path working as sent (0 unless no longer needed).", p, nil),
	}
}

func (c *PolicyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.policies
	ch <- c.addresses
	ch <- c.expired
	ch <- c.expiry
	ch <- c.dnsError
	ch <- c.needed
	ch <- c.probeLast
	ch <- c.unneeded
}

func (c *PolicyCollector) Collect(ch chan<- prometheus.Metric) {
	var active, expired float64
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, p := range c.Status() {
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
		if p.ProbeEvery != 0 {
			need, unneeded := config.NeedUnknown, 0
			if st := p.Probe; st != nil && !st.Last.IsZero() {
				need = st.Need
				ch <- prometheus.MustNewConstMetric(c.probeLast, prometheus.GaugeValue, float64(st.Last.UnixNano())/1e9, p.Name)
				if need == config.NeedNo {
					unneeded = st.Streak
				}
			}
			for _, n := range []config.Need{config.NeedStill, config.NeedNo, config.NeedUnknown} {
				ch <- prometheus.MustNewConstMetric(c.needed, prometheus.GaugeValue, b2f(n == need), p.Name, n.String())
			}
			ch <- prometheus.MustNewConstMetric(c.unneeded, prometheus.GaugeValue, float64(unneeded), p.Name)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.policies, prometheus.GaugeValue, active, "active")
	ch <- prometheus.MustNewConstMetric(c.policies, prometheus.GaugeValue, expired, "expired")
}
