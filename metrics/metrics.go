// Package metrics owns tcpnorm's Prometheus metrics, the kernel queue
// counters and the HTTP server; package status serves them (/metrics) and
// puts /status together. metrics knows nothing of the config.
//
// Counters the queue workers touch per packet are resolved once per queue
// (Queue) so the packet path does an atomic add, never a label lookup.
// Rewrite counters are labelled by policy and are looked up only for packets
// a policy matched, through a small per-worker cache. Kernel queue counters
// and policy state are read when scraped, never on the packet path.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// Verdict is the verdict label of tcpnorm_packets_total.
type Verdict uint8

const (
	Accept Verdict = iota // accepted unchanged (possibly with a mark)
	Modify                // accepted with rewritten bytes
	Drop
	numVerdicts
)

var verdictNames = [numVerdicts]string{"accept", "modify", "drop"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// ReasonError is the reason label of packets accepted unchanged because
// processing them failed (a recovered panic).
const ReasonError = "error"

var numReasons = len(normalize.Reasons())

// Metrics is every metric of one tcpnorm process, in its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	packets     *prometheus.CounterVec
	rewrites    *prometheus.CounterVec
	matched     *prometheus.CounterVec
	lastMatch   *prometheus.GaugeVec
	would       *prometheus.CounterVec
	procTime    *prometheus.HistogramVec
	panics      *prometheus.CounterVec
	errs        *prometheus.CounterVec
	enobufs     *prometheus.CounterVec
	seedDropped *prometheus.CounterVec
	evictions   *prometheus.CounterVec
	Suppressed  prometheus.Counter // rewrite log lines dropped by the rate limit
	Reloads     *prometheus.CounterVec
	SetUpdates  *prometheus.CounterVec // kernel address set updates, by result
	SetEntries  *prometheus.GaugeVec   // entries in the kernel address sets, by family
	Ready       prometheus.Gauge
	// Evidence files (package evidence).
	EvidencePackets *prometheus.CounterVec // by policy
	EvidenceDropped prometheus.Counter
	EvidenceErrors  *prometheus.CounterVec // by op

	mu     sync.Mutex
	queues map[uint16]*Queue
}

// New returns the metrics with the Go runtime and process collectors and
// tcpnorm_build_info{version}.
func New(version string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_packets_total",
			Help: "Packets given a verdict, by queue, verdict (accept, modify, drop) and reason.",
		}, []string{"queue", "verdict", "reason"}),
		rewrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_rewrites_total",
			Help: "Rewrites done by enforce policies, by policy, option and action.",
		}, []string{"policy", "option", "action"}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_policy_connections_total",
			Help: "Connections (SYNs, retransmissions included) a policy matched, by policy.",
		}, []string{"policy"}),
		lastMatch: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcpnorm_policy_last_match_timestamp_seconds",
			Help: "When a policy last matched a SYN (Unix time).",
		}, []string{"policy"}),
		would: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_would_rewrite_total",
			Help: "Rewrites log-only policies would have done, by policy, option and action.",
		}, []string{"policy", "option", "action"}),
		procTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tcpnorm_packet_processing_seconds",
			Help:    "Time from receiving a packet to its verdict, sampled (1 packet in 16), by queue.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 9),
		}, []string{"queue"}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_worker_panics_total",
			Help: "Packets whose processing panicked; each was accepted unchanged.",
		}, []string{"queue"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_worker_errors_total",
			Help: "Queue socket errors by queue and operation (receive, verdict).",
		}, []string{"queue", "op"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_evictions_total",
			Help: "Bounded per-worker state replaced before it was done with, by table: handshake (a SYN's decision before its SYN-ACK came) or repair (a flow's timestamp state before it went idle).",
		}, []string{"queue", "table"}),
		seedDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_repair_seeds_dropped_total",
			Help: "Timestamp-repair seeds a handshake worker could not hand to its stateful worker (backlog full); those flows seed from their first later segment.",
		}, []string{"queue"}),
		enobufs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_enobufs_total",
			Help: "ENOBUFS on a queue socket: the kernel dropped queue messages because the socket buffer was full.",
		}, []string{"queue"}),
		Suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcpnorm_log_suppressed_total",
			Help: "Rewrite log lines suppressed by the rate limit.",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_reloads_total",
			Help: "Configuration reloads (SIGHUP) by result (ok, error).",
		}, []string{"result"}),
		SetUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_set_updates_total",
			Help: "Updates of the kernel address sets the handshake rules match, by result (ok, error); after an error the sets keep their previous contents and the update is retried.",
		}, []string{"result"}),
		SetEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tcpnorm_set_entries",
			Help: "Prefixes in the kernel address sets, by family (ipv4, ipv6): every policy's addresses, plus those removed less than the grace period ago.",
		}, []string{"family"}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tcpnorm_ready",
			Help: "1 once queues are bound, rules installed and policies resolved.",
		}),
		EvidencePackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_evidence_packets_total",
			Help: "Packet copies written to evidence files, by policy (each handshake segment as received and as sent).",
		}, []string{"policy"}),
		EvidenceDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tcpnorm_evidence_dropped_total",
			Help: "Handshake segments of evidence policies not recorded because the writer's queue was full.",
		}),
		EvidenceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tcpnorm_evidence_errors_total",
			Help: "Evidence file errors by operation (open, write, rotate); the packets were not recorded.",
		}, []string{"op"}),
		queues: map[uint16]*Queue{},
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tcpnorm_build_info",
		Help:        "tcpnorm version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	info.Set(1)
	m.Registry.MustRegister(m.packets, m.rewrites, m.matched, m.lastMatch, m.would, m.procTime, m.panics, m.errs,
		m.enobufs, m.seedDropped, m.evictions, m.Suppressed, m.Reloads, m.SetUpdates, m.SetEntries, m.Ready, info,
		m.EvidencePackets, m.EvidenceDropped, m.EvidenceErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"ok", "error"} {
		m.Reloads.WithLabelValues(r)
		m.SetUpdates.WithLabelValues(r)
	}
	for _, f := range []string{"ipv4", "ipv6"} {
		m.SetEntries.WithLabelValues(f)
	}
	for _, op := range []string{"open", "write", "rotate"} {
		m.EvidenceErrors.WithLabelValues(op)
	}
	return m
}

// Queue returns the pre-resolved metrics of queue q, creating them (every
// verdict and reason, so all series exist from the start) on first use.
func (m *Metrics) Queue(q uint16) *Queue {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mq := m.queues[q]; mq != nil {
		return mq
	}
	ql := strconv.Itoa(int(q))
	mq := &Queue{
		m:                  m,
		Panics:             m.panics.WithLabelValues(ql),
		Receive:            m.errs.WithLabelValues(ql, "receive"),
		Verdict:            m.errs.WithLabelValues(ql, "verdict"),
		ENOBUFS:            m.enobufs.WithLabelValues(ql),
		SeedDropped:        m.seedDropped.WithLabelValues(ql),
		HandshakeEvictions: m.evictions.WithLabelValues(ql, "handshake"),
		FlowEvictions:      m.evictions.WithLabelValues(ql, "repair"),
		ProcTime:           m.procTime.WithLabelValues(ql),
		packets:            make([][]prometheus.Counter, numVerdicts),
		cache:              map[rewriteKey]prometheus.Counter{},
		matches:            map[*normalize.Policy]match{},
	}
	for v := range mq.packets {
		mq.packets[v] = make([]prometheus.Counter, numReasons+1)
		for _, r := range normalize.Reasons() {
			mq.packets[v][r] = m.packets.WithLabelValues(ql, Verdict(v).String(), r.String())
		}
		mq.packets[v][numReasons] = m.packets.WithLabelValues(ql, Verdict(v).String(), ReasonError)
	}
	m.queues[q] = mq
	return mq
}

// Queue holds one queue's counters. Its methods are for the queue's own
// worker only: the rewrite cache is not locked.
type Queue struct {
	m                  *Metrics
	Panics             prometheus.Counter
	Receive            prometheus.Counter // receive errors other than ENOBUFS
	Verdict            prometheus.Counter // verdicts the kernel could not be sent
	ENOBUFS            prometheus.Counter
	SeedDropped        prometheus.Counter
	HandshakeEvictions prometheus.Counter
	FlowEvictions      prometheus.Counter
	ProcTime           prometheus.Observer
	packets            [][]prometheus.Counter // [verdict][reason, then ReasonError]
	cache              map[rewriteKey]prometheus.Counter
	matches            map[*normalize.Policy]match
}

type match struct {
	n    prometheus.Counter
	last prometheus.Gauge
}

// Matched counts a SYN policy p matched, at now.
func (q *Queue) Matched(p *normalize.Policy, now time.Time) {
	mt, ok := q.matches[p]
	if !ok {
		if len(q.matches) >= maxCache {
			clear(q.matches)
		}
		mt = match{n: q.m.matched.WithLabelValues(p.Name), last: q.m.lastMatch.WithLabelValues(p.Name)}
		q.matches[p] = mt
	}
	mt.n.Inc()
	mt.last.Set(float64(now.UnixNano()) / 1e9)
}

// Packet counts one packet's verdict and reason.
func (q *Queue) Packet(v Verdict, r normalize.Reason) {
	if v >= numVerdicts {
		v = Accept
	}
	i := int(r)
	if i >= numReasons {
		i = numReasons
	}
	q.packets[v][i].Inc()
}

// PacketError counts a packet accepted unchanged because processing failed.
func (q *Queue) PacketError() { q.packets[Accept][numReasons].Inc() }

type rewriteKey struct {
	policy  *normalize.Policy
	change  normalize.Change
	logOnly bool
}

// maxCache bounds the rewrite-counter cache; policies are new pointers after
// every reload, so old keys are dropped wholesale when it fills.
const maxCache = 1024

// Rewrites counts each change in c for policy p: as done, or as would-do
// for a log-only result.
func (q *Queue) Rewrites(p *normalize.Policy, c normalize.Change, logOnly bool) {
	if p == nil || c == 0 {
		return
	}
	for _, one := range normalize.Changes() {
		if c&one == 0 {
			continue
		}
		k := rewriteKey{p, one, logOnly}
		ctr := q.cache[k]
		if ctr == nil {
			if len(q.cache) >= maxCache {
				clear(q.cache)
			}
			vec := q.m.rewrites
			if logOnly {
				vec = q.m.would
			}
			opt, act := OptionAction(one)
			ctr = vec.WithLabelValues(p.Name, opt, act)
			q.cache[k] = ctr
		}
		ctr.Inc()
	}
}

// OptionAction splits one change into the policy option it belongs to and
// the action taken, as the rewrite metrics label them.
func OptionAction(c normalize.Change) (option, action string) {
	switch c {
	case normalize.ChWSStripped:
		return "window_scale", "strip"
	case normalize.ChWSClamped:
		return "window_scale", "clamp"
	case normalize.ChWindowRewritten:
		return "window_scale", "window-rewrite"
	case normalize.ChTSStripped:
		return "timestamps", "strip"
	case normalize.ChTSRepaired:
		return "timestamps", "repair"
	case normalize.ChSACKOKStripped:
		return "sack_permitted", "strip"
	case normalize.ChMSSClamped:
		return "mss_max", "clamp"
	case normalize.ChUnknownStripped:
		return "unknown", "strip"
	case normalize.ChECNCleared:
		return "ecn", "clear"
	}
	return c.String(), "change"
}
