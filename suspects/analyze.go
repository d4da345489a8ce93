package suspects

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for Options.
const (
	DefaultMaxMessages = 100000
	DefaultMaxPeers    = 200000
)

// sameAttempt is how far apart two lines of one queue ID about one host
// may be and still tell of one delivery attempt: Postfix and Exim log one
// line per recipient of an attempt, Sendmail one per recipient list.
const sameAttempt = 5 * time.Second

// evidenceLines is how many log lines each suspect quotes.
const evidenceLines = 3

// Options tune an Analyzer.
type Options struct {
	// Now is the reading's time: the year of classic syslog stamps and
	// the end of the Since window. Default: time.Now().
	Now time.Time
	// Since keeps only lines newer than Now-Since; 0 keeps all. (A line
	// without a time stamp it can read is not understood, and counted.)
	Since time.Duration
	// Location is the zone of Exim mainlog stamps written without one.
	// Default: time.Local.
	Location *time.Location
	// MaxMessages bounds the per-queue-ID state kept to join sizes,
	// clients and recipients; the oldest is dropped and counted.
	MaxMessages int
	// MaxPeers bounds the records kept per destination host, domain and
	// inbound peer; past it, new ones are not tracked, and counted.
	MaxPeers int
}

// Analyzer reads log lines and gathers the evidence per destination and
// peer. It is not safe for concurrent use.
type Analyzer struct {
	opt    Options
	cutoff time.Time // lines before it are skipped; zero: none

	msgs  map[string]*message
	order []string // IDs in the order their state was made, for eviction

	domains map[string]*stats     // outbound, by recipient domain
	hosts   map[hostKey]*stats    // outbound, by MX host and address
	peers   map[netip.Addr]*stats // inbound, by client address
	named   map[string]*stats     // inbound, clients logged by name only
	peerOK  map[netip.Addr]*okRec // inbound, messages received, by client address

	counts Counts
	first  time.Time
	last   time.Time
	files  []string
	file   string // the file being read
	lineNo int    // the number of the line being read in it
	done   bool   // Report has flushed the waiting state
}

// okRec counts the messages received from one client.
type okRec struct {
	n       int
	largest int64
}

// evidence is a quoted log line; seq orders them as read.
type evidence struct {
	seq  int
	text string
}

// Counts are the reading's totals.
type Counts struct {
	Lines         int            `json:"lines"`
	MailLines     int            `json:"mail_lines"`
	NotUnderstood int            `json:"not_understood"` // Lines - MailLines
	OtherPrograms int            `json:"other_programs"` // well-formed lines of programs that are no MTA
	BeforeSince   int            `json:"before_since"`   // mail lines older than --since: skipped
	ByMTA         map[string]int `json:"by_mta"`
	Stalls        int            `json:"stalls"`           // outbound stalled delivery attempts
	InStalls      int            `json:"inbound_stalls"`   // inbound sessions that died in the body
	Evicted       int            `json:"evicted_messages"` // message state dropped to bound memory
	Untracked     int            `json:"untracked_peers"`  // hosts, domains or peers past MaxPeers
	LongLines     int            `json:"long_lines"`       // lines longer than MaxLine: not understood
}

type hostKey struct {
	name string
	addr netip.Addr
}

// message is what the log said so far about one queue ID.
type message struct {
	size      int64 // -1: unknown
	peer      netip.Addr
	peerName  string
	received  bool // counted as received from peer
	inStalled bool // its client's session died in the body: not received, whatever the size line says
	// bodyPhase: Sendmail logged a body-phase timeout for this ID; the
	// next deferral is a stall.
	bodyPhase    bool
	bodyWhy      string
	stall, ok    attempt // the last attempts counted, to count each once
	pending      []Entry // Postfix stalls at a non-final MX, waiting for the recipient's domain
	pendingWhere []evidence
	inStall      *Entry // Sendmail inbound stall waiting for the client's address
	inStallWhere evidence
}

type attempt struct {
	addr netip.Addr
	host string
	t    time.Time
	set  bool
}

func (a attempt) same(host string, addr netip.Addr, t time.Time) bool {
	if !a.set || a.addr != addr || a.host != host {
		return false
	}
	d := t.Sub(a.t)
	return d < sameAttempt && d > -sameAttempt
}

// stats is the evidence gathered for one domain, host or peer.
type stats struct {
	Stalls      int
	OK          int
	LargestOK   int64 // -1: none known
	SmallestBad int64 // -1: none known
	First, Last time.Time
	Evidence    []evidence
	Whys        map[string]int
	Hosts       map[hostKey]bool // domain: the hosts its stalls and deliveries went to
	Names       map[string]bool  // peer: the names it was logged with
}

func newStats() *stats { return &stats{LargestOK: -1, SmallestBad: -1} }

// New returns an Analyzer.
func New(opt Options) *Analyzer {
	if opt.Now.IsZero() {
		opt.Now = time.Now()
	}
	if opt.Location == nil {
		opt.Location = time.Local
	}
	if opt.MaxMessages <= 0 {
		opt.MaxMessages = DefaultMaxMessages
	}
	if opt.MaxPeers <= 0 {
		opt.MaxPeers = DefaultMaxPeers
	}
	a := &Analyzer{
		opt:     opt,
		msgs:    make(map[string]*message),
		domains: make(map[string]*stats),
		hosts:   make(map[hostKey]*stats),
		peers:   make(map[netip.Addr]*stats),
		named:   make(map[string]*stats),
		peerOK:  make(map[netip.Addr]*okRec),
	}
	a.counts.ByMTA = make(map[string]int)
	if opt.Since > 0 {
		a.cutoff = opt.Now.Add(-opt.Since)
	}
	return a
}

// Line reads one log line, the next of the current file (see Read).
func (a *Analyzer) Line(raw string) {
	a.counts.Lines++
	a.lineNo++
	e := ParseLine(raw, a.opt.Now, a.opt.Location)
	switch e.Kind {
	case Garbled:
		return
	case OtherProgram:
		a.counts.OtherPrograms++
		return
	}
	a.counts.MailLines++
	a.counts.ByMTA[e.MTA.String()]++
	// Every mail line has a time: one without is not understood.
	if !a.cutoff.IsZero() && e.Time.Before(a.cutoff) {
		a.counts.BeforeSince++
		return
	}
	if a.first.IsZero() || e.Time.Before(a.first) {
		a.first = e.Time
	}
	if e.Time.After(a.last) {
		a.last = e.Time
	}
	a.add(e, raw)
}

func (a *Analyzer) add(e Entry, raw string) {
	if e.Rcpt != "" && e.ID != "" {
		if m, ok := a.msgs[e.ID]; ok {
			a.resolvePending(m, e.Domain())
		}
	}
	switch e.Kind {
	case Size:
		m := a.msg(e.ID)
		m.size = e.Size
		if e.Addr.IsValid() {
			a.setPeer(m, e.Host, e.Addr)
		}
		if m.peer.IsValid() && !m.received && !m.inStalled {
			m.received = true
			a.received(m)
		}
	case Client:
		a.setPeer(a.msg(e.ID), e.Host, e.Addr)
	case Removed:
		if m, ok := a.msgs[e.ID]; ok {
			a.flush(m)
			delete(a.msgs, e.ID)
		}
	case Delivered:
		m := a.msg(e.ID)
		if m.ok.same(e.Host, e.Addr, e.Time) {
			return
		}
		m.ok = attempt{addr: e.Addr, host: e.Host, t: e.Time, set: true}
		for _, s := range a.outStats(e.Domain(), e.Host, e.Addr) {
			s.OK++
			if m.size > s.LargestOK {
				s.LargestOK = m.size
			}
		}
	case BodyPhase:
		m := a.msg(e.ID)
		m.bodyPhase, m.bodyWhy = true, e.Why
	case Deferred:
		m := a.msg(e.ID)
		if !m.bodyPhase {
			return
		}
		m.bodyPhase = false
		e.Why = m.bodyWhy + " (" + e.Why + ")"
		a.stalled(m, e, raw)
	case Stalled:
		a.stalled(a.msg(e.ID), e, raw)
	case InStalled:
		a.counts.InStalls++
		if e.ID == "" {
			a.inStalled(e, -1, raw)
			return
		}
		m := a.msg(e.ID)
		m.inStalled = true
		if !e.Addr.IsValid() && m.peer.IsValid() {
			e.Addr = m.peer
		}
		if !e.Addr.IsValid() && e.MTA == Sendmail {
			// Its from= line, with the address, may follow.
			c := e
			m.inStall, m.inStallWhere = &c, a.where(raw)
			return
		}
		a.inStalled(e, m.size, raw)
	}
}

// msg returns the state of id, making it (and dropping the oldest past
// MaxMessages) when there is none.
func (a *Analyzer) msg(id string) *message {
	if id == "" {
		return &message{size: -1}
	}
	if m, ok := a.msgs[id]; ok {
		return m
	}
	for len(a.msgs) >= a.opt.MaxMessages && len(a.order) > 0 {
		old := a.order[0]
		a.order = a.order[1:]
		if m, ok := a.msgs[old]; ok {
			a.flush(m)
			delete(a.msgs, old)
			a.counts.Evicted++
		}
	}
	if len(a.order) > 2*a.opt.MaxMessages {
		// IDs removed by the MTA still sit in order: compact it.
		kept := make([]string, 0, len(a.msgs)+1)
		for _, id := range a.order {
			if _, ok := a.msgs[id]; ok {
				kept = append(kept, id)
			}
		}
		a.order = kept
	}
	m := &message{size: -1}
	a.msgs[id] = m
	a.order = append(a.order, id)
	return m
}

func (a *Analyzer) setPeer(m *message, name string, addr netip.Addr) {
	m.peer, m.peerName = addr, name
	if m.inStall != nil {
		e := *m.inStall
		e.Addr = addr
		if e.Host == "" {
			e.Host = name
		}
		m.inStall = nil
		a.inStalledAt(e, m.size, m.inStallWhere)
	}
}

// received counts a message received from m's peer.
func (a *Analyzer) received(m *message) {
	r := a.peerOK[m.peer]
	if r == nil {
		if len(a.peerOK) >= a.opt.MaxPeers {
			a.counts.Untracked++
			return
		}
		r = &okRec{largest: -1}
		a.peerOK[m.peer] = r
	}
	r.n++
	if m.size > r.largest {
		r.largest = m.size
	}
}

// resolvePending gives Postfix's stalls at a non-final MX the domain of
// the message's recipients.
func (a *Analyzer) resolvePending(m *message, domain string) {
	if len(m.pending) == 0 || domain == "" {
		return
	}
	for i, e := range m.pending {
		a.countStall(m, e, domain, m.pendingWhere[i])
	}
	m.pending, m.pendingWhere = nil, nil
}

// flush counts what waited for a line that never came.
func (a *Analyzer) flush(m *message) {
	for i, e := range m.pending {
		a.countStall(m, e, "", m.pendingWhere[i])
	}
	m.pending, m.pendingWhere = nil, nil
	if m.inStall != nil {
		a.inStalledAt(*m.inStall, m.size, m.inStallWhere)
		m.inStall = nil
	}
}

func (a *Analyzer) stalled(m *message, e Entry, raw string) {
	if m.stall.same(e.Host, e.Addr, e.Time) {
		return // another recipient of the same attempt
	}
	m.stall = attempt{addr: e.Addr, host: e.Host, t: e.Time, set: true}
	where := a.where(raw)
	if e.Rcpt == "" && e.ID != "" {
		m.pending = append(m.pending, e)
		m.pendingWhere = append(m.pendingWhere, where)
		return
	}
	a.countStall(m, e, e.Domain(), where)
}

func (a *Analyzer) countStall(m *message, e Entry, domain string, where evidence) {
	a.counts.Stalls++
	for _, s := range a.outStats(domain, e.Host, e.Addr) {
		s.Stalls++
		if m.size >= 0 && (s.SmallestBad < 0 || m.size < s.SmallestBad) {
			s.SmallestBad = m.size
		}
		s.seen(e.Time, e.Why, where)
	}
}

func (a *Analyzer) inStalled(e Entry, size int64, raw string) {
	a.inStalledAt(e, size, a.where(raw))
}

// inStalledAt counts an inbound stall. Its size is the bytes received
// when the session died, when logged, else the message's size.
func (a *Analyzer) inStalledAt(e Entry, msgSize int64, where evidence) {
	var s *stats
	if e.Addr.IsValid() {
		s = a.peers[e.Addr]
		if s == nil {
			if len(a.peers) >= a.opt.MaxPeers {
				a.counts.Untracked++
				return
			}
			s = newStats()
			a.peers[e.Addr] = s
		}
	} else {
		name := e.Host
		if name == "" {
			name = "unknown"
		}
		s = a.named[name]
		if s == nil {
			if len(a.named) >= a.opt.MaxPeers {
				a.counts.Untracked++
				return
			}
			s = newStats()
			a.named[name] = s
		}
	}
	if e.Host != "" {
		if s.Names == nil {
			s.Names = make(map[string]bool)
		}
		if len(s.Names) < 8 {
			s.Names[e.Host] = true
		}
	}
	n := e.Size
	if n < 0 {
		n = msgSize
	}
	s.Stalls++
	if n >= 0 && (s.SmallestBad < 0 || n < s.SmallestBad) {
		s.SmallestBad = n
	}
	s.seen(e.Time, e.Why, where)
}

// outStats returns the records of the domain and of the host a delivery
// went to, making them when new.
func (a *Analyzer) outStats(domain, host string, addr netip.Addr) []*stats {
	out := make([]*stats, 0, 2)
	hk := hostKey{host, addr}
	h := a.hosts[hk]
	if h == nil && len(a.hosts) < a.opt.MaxPeers {
		h = newStats()
		a.hosts[hk] = h
	}
	if h != nil {
		out = append(out, h)
	} else {
		a.counts.Untracked++
	}
	if domain == "" {
		return out
	}
	d := a.domains[domain]
	if d == nil && len(a.domains) < a.opt.MaxPeers {
		d = newStats()
		a.domains[domain] = d
	}
	if d == nil {
		a.counts.Untracked++
		return out
	}
	if d.Hosts == nil {
		d.Hosts = make(map[hostKey]bool)
	}
	if len(d.Hosts) < 16 {
		d.Hosts[hk] = true
	}
	return append(out, d)
}

func (s *stats) seen(t time.Time, why string, where evidence) {
	if !t.IsZero() {
		if s.First.IsZero() || t.Before(s.First) {
			s.First = t
		}
		if t.After(s.Last) {
			s.Last = t
		}
	}
	if why != "" {
		if s.Whys == nil {
			s.Whys = make(map[string]int)
		}
		if len(s.Whys) < 8 || s.Whys[why] > 0 {
			s.Whys[why]++
		}
	}
	// Keep the first lines read: pending stalls are counted late.
	if len(s.Evidence) < evidenceLines {
		s.Evidence = append(s.Evidence, where)
		return
	}
	worst := 0
	for i, ev := range s.Evidence {
		if ev.seq > s.Evidence[worst].seq {
			worst = i
		}
	}
	if where.seq < s.Evidence[worst].seq {
		s.Evidence[worst] = where
	}
}

// where quotes the line being read.
func (a *Analyzer) where(raw string) evidence {
	name := a.file
	if name == "" {
		name = "-"
	}
	return evidence{seq: a.counts.Lines, text: name + ":" + strconv.Itoa(a.lineNo) + ": " + clip(raw)}
}

// clip shortens a log line for the evidence.
func clip(s string) string {
	s = strings.TrimRight(s, "\r\n")
	const max = 300
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
