package config

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// testZone is a tiny recursive-looking DNS server: it chases CNAMEs within
// the zone and answers NXDOMAIN/NODATA with an SOA.
type testZone struct {
	mu      sync.Mutex
	rrs     map[string][]dns.RR // "name./TYPE"
	rcode   map[string]int      // name. -> forced rcode
	queries atomic.Int64
	addr    string
}

func (z *testZone) set(records ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		k := strings.ToLower(rr.Header().Name) + "/" + dns.TypeToString[rr.Header().Rrtype]
		z.rrs[k] = append(z.rrs[k], rr)
	}
}

// replace drops every record of name/type, then sets records.
func (z *testZone) replace(name, typ string, records ...string) {
	z.mu.Lock()
	delete(z.rrs, dns.Fqdn(name)+"/"+typ)
	z.mu.Unlock()
	z.set(records...)
}

func (z *testZone) setRcode(name string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(z.rcode, dns.Fqdn(name))
	} else {
		z.rcode[dns.Fqdn(name)] = rcode
	}
}

// setRcodeType makes the zone answer rcode to questions for name of type
// typ only (one record type mishandled by a server).
func (z *testZone) setRcodeType(name, typ string, rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if rcode == dns.RcodeSuccess {
		delete(z.rcode, dns.Fqdn(name)+"/"+typ)
	} else {
		z.rcode[dns.Fqdn(name)+"/"+typ] = rcode
	}
}

func (z *testZone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	z.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	defer z.mu.Unlock()
	for hop := 0; hop < 8; hop++ {
		if rc, ok := z.rcode[name]; ok {
			m.Rcode = rc
			w.WriteMsg(m)
			return
		}
		if rc, ok := z.rcode[name+"/"+dns.TypeToString[q.Qtype]]; ok {
			m.Rcode = rc
			w.WriteMsg(m)
			return
		}
		if c := z.rrs[name+"/CNAME"]; len(c) > 0 && q.Qtype != dns.TypeCNAME {
			m.Answer = append(m.Answer, c[0])
			name = strings.ToLower(c[0].(*dns.CNAME).Target)
			continue
		}
		break
	}
	if ans := z.rrs[name+"/"+dns.TypeToString[q.Qtype]]; len(ans) > 0 {
		m.Answer = append(m.Answer, ans...)
	} else {
		exists := false
		for k := range z.rrs {
			if strings.HasPrefix(k, name+"/") {
				exists = true
			}
		}
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		soa, _ := dns.NewRR("test. 300 IN SOA ns.test. host.test. 1 3600 600 86400 5")
		m.Ns = append(m.Ns, soa)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// startZone serves a test zone on 127.0.0.1 (one random port, UDP and TCP).
func startZone(t testing.TB) *testZone {
	t.Helper()
	z := &testZone{rrs: map[string][]dns.RR{}, rcode: map[string]int{}}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i > 20 {
			t.Fatal(err)
		}
	}
	z.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: ln, Handler: z}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	z.set(
		"example.test. 60 IN A 198.18.1.1",
		"example.test. 60 IN AAAA 2001:2::1",
		"example.test. 300 IN MX 10 mx1.example.test.",
		"example.test. 300 IN MX 20 mx2.example.test.",
		"mx1.example.test. 300 IN A 198.18.2.1",
		"mx2.example.test. 300 IN CNAME mxhost.example.test.",
		"mxhost.example.test. 300 IN A 198.18.2.2",
		"mxhost.example.test. 300 IN AAAA 2001:2:0:2::2",
		`example.test. 300 IN TXT "v=spf1 ip4:198.18.3.0/24 include:_spf.example.test a:mx1.example.test/28 -ip4:198.18.9.9 ptr ~all"`,
		`example.test. 300 IN TXT "unrelated"`,
		`_spf.example.test. 300 IN TXT "v=spf1 ip6:2001:2:0:3::/64 " "mx:example.test -all"`,
		"nullmx.test. 300 IN MX 0 .",
		"nullmx.test. 300 IN A 198.18.4.1",
		"other.test. 300 IN A 198.18.1.1",
	)
	z.setRcode("fail.test", dns.RcodeServerFailure)
	return z
}

func TestResolvePolicy(t *testing.T) {
	z := startZone(t)
	r := newResolver([]string{z.addr}, time.Second, 2)
	pfx := func(ss ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range ss {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return ps
	}
	tests := []struct {
		name      string
		domain    string
		mx, spf   bool
		want      []netip.Prefix
		wantTTL   uint32
		wantErr   string
		wantNotes []string
	}{
		{
			name: "A and AAAA", domain: "example.test",
			want: pfx("198.18.1.1/32", "2001:2::1/128"), wantTTL: 60,
		},
		{
			name: "MX with a CNAME to the MX host", domain: "example.test", mx: true,
			want:    pfx("198.18.1.1/32", "198.18.2.1/32", "198.18.2.2/32", "2001:2::1/128", "2001:2:0:2::2/128"),
			wantTTL: 5, // mx1 has no AAAA: NODATA, negative TTL from the SOA
		},
		{
			name: "SPF with include, a/28 and mx", domain: "example.test", spf: true,
			want: pfx("198.18.1.1/32", "198.18.2.0/28", "198.18.2.1/32", "198.18.2.2/32", "198.18.3.0/24",
				"2001:2::1/128", "2001:2:0:2::2/128", "2001:2:0:3::/64"),
			wantTTL:   5,
			wantNotes: []string{`example.test: SPF term "ptr" names no addresses; ignored`},
		},
		{
			name: "null MX", domain: "nullmx.test", mx: true,
			want: pfx("198.18.4.1/32"), wantTTL: 5,
		},
		{
			name: "NXDOMAIN is an answer", domain: "nx.test", mx: true,
			wantTTL: 5, wantNotes: []string{"nx.test: no such domain (NXDOMAIN)"},
		},
		{
			name: "SERVFAIL is a failure", domain: "fail.test",
			wantErr: "fail.test. A: SERVFAIL",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := r.resolvePolicy(context.Background(), tc.domain, tc.mx, tc.spf)
			if diff := cmp.Diff(tc.want, res.prefixes, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("prefixes (-want +got):\n%s", diff)
			}
			errs := strings.Join(res.errs, "; ")
			if tc.wantErr == "" && errs != "" || !strings.Contains(errs, tc.wantErr) {
				t.Errorf("errs = %q, want %q", errs, tc.wantErr)
			}
			if tc.wantErr == "" && res.ttl != tc.wantTTL {
				t.Errorf("ttl = %d, want %d", res.ttl, tc.wantTTL)
			}
			if diff := cmp.Diff(tc.wantNotes, res.notes); diff != "" {
				t.Errorf("notes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSPFLookupLimit(t *testing.T) {
	z := startZone(t)
	var terms []string
	for i := 0; i < 12; i++ {
		terms = append(terms, fmt.Sprintf("include:i%d.test", i))
		z.set(fmt.Sprintf(`i%d.test. 300 IN TXT "v=spf1 ip4:198.18.%d.0/24 -all"`, i, 100+i))
	}
	z.set(`many.test. 300 IN TXT "v=spf1 ` + strings.Join(terms, " ") + ` -all"`)
	r := newResolver([]string{z.addr}, time.Second, 2)
	res := r.resolvePolicy(context.Background(), "many.test", false, true)
	var spf []netip.Prefix
	for _, p := range res.prefixes {
		if p.Bits() == 24 {
			spf = append(spf, p)
		}
	}
	if len(spf) != 10 {
		t.Errorf("got %d SPF prefixes %v, want 10 (RFC 7208 lookup limit)", len(spf), spf)
	}
	if !slices.ContainsFunc(res.notes, func(n string) bool { return strings.Contains(n, "more than 10 DNS lookups") }) {
		t.Errorf("notes %q do not report the lookup limit", res.notes)
	}
}

func TestResolveTCPFallback(t *testing.T) {
	z := startZone(t)
	var recs []string
	for i := 0; i < 120; i++ {
		recs = append(recs, fmt.Sprintf("big.test. 300 IN AAAA 2001:2:0:9::%x", i+1))
	}
	z.set(recs...)
	r := newResolver([]string{z.addr}, time.Second, 1)
	res := r.resolvePolicy(context.Background(), "big.test", false, false)
	if len(res.errs) > 0 || len(res.prefixes) != 120 {
		t.Fatalf("got %d prefixes, errs %q; want 120 via TCP", len(res.prefixes), res.errs)
	}
}

// fakeClock drives the manager's schedule in tests.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !c.now.Before(t) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{t, ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !c.now.Before(w.at) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// syncBuffer collects log output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) count(sub string) int { return strings.Count(s.String(), sub) }

type managerEnv struct {
	t     *testing.T
	zone  *testZone
	clock *fakeClock
	logs  *syncBuffer
	m     *Manager
	path  string
}

// newManagerEnv loads a config using the test zone and starts a manager on a
// fake clock.
func newManagerEnv(t *testing.T, policies map[string]string) *managerEnv {
	t.Helper()
	z := startZone(t)
	main := fmt.Sprintf("[dns]\nservers = [%q]\nmin_refresh = \"30s\"\nmax_refresh = \"10m\"\n", z.addr)
	path := writeTree(t, main, policies)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e := &managerEnv{t: t, zone: z, path: path, logs: &syncBuffer{},
		clock: &fakeClock{now: time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)}}
	e.m = newManager(cfg, slog.New(slog.NewTextHandler(e.logs, nil)), e.clock)
	e.m.queryTimeout = 500 * time.Millisecond
	return e
}

func (e *managerEnv) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	e.m.Start(ctx)
	select {
	case <-e.m.Ready():
	case <-time.After(10 * time.Second):
		e.t.Fatal("manager not ready after 10s")
	}
}

// lookup is the policy name for addr (outbound, port 25), "" for none.
func (e *managerEnv) lookup(addr string) string {
	p := e.m.Table().Lookup(netip.MustParseAddr(addr), 25, normalize.Outbound)
	if p == nil {
		return ""
	}
	return p.Name
}

// eventually polls cond until it holds or 5 s pass.
func (e *managerEnv) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; logs:\n%s", what, e.logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *managerEnv) status(name string) PolicyStatus {
	for _, s := range e.m.Status() {
		if s.Name == name {
			return s
		}
	}
	e.t.Fatalf("no status for %s", name)
	return PolicyStatus{}
}

func TestManagerRefreshAndLastKnownGood(t *testing.T) {
	e := newManagerEnv(t, map[string]string{"ex.toml": "domain = \"example.test\"\n"})
	if got := e.lookup("198.18.1.1"); got != "" {
		t.Fatalf("before Start: lookup = %q, want no policy (nothing resolved)", got)
	}
	e.start()
	if got := e.lookup("198.18.1.1"); got != "ex" {
		t.Fatalf("after Ready: lookup = %q, want ex", got)
	}

	// The A record changes; the manager asks again at its TTL (60 s).
	e.zone.replace("example.test", "A", "example.test. 60 IN A 198.18.1.2")
	e.clock.Advance(61 * time.Second)
	e.eventually("the new A record", func() bool { return e.lookup("198.18.1.2") == "ex" && e.lookup("198.18.1.1") == "" })

	// The server fails: the last known addresses stay, the failure is logged once.
	e.zone.setRcode("example.test", dns.RcodeServerFailure)
	for i := 0; i < 4; i++ {
		before := e.zone.queries.Load()
		e.clock.Advance(61 * time.Second)
		e.eventually("a retry", func() bool { return e.zone.queries.Load() > before && e.status("ex").DNSError != "" })
	}
	e.eventually("status settles", func() bool { return !e.m.states[0].inflightNow(e.m) })
	if got := e.lookup("198.18.1.2"); got != "ex" {
		t.Errorf("during SERVFAIL: lookup = %q, want ex (last known good)", got)
	}
	if n := e.logs.count("DNS resolution failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, e.logs.String())
	}

	// Recovery is logged once and the answer is used again.
	e.zone.setRcode("example.test", dns.RcodeSuccess)
	e.zone.replace("example.test", "A", "example.test. 60 IN A 198.18.1.3")
	e.clock.Advance(31 * time.Second) // backoff is at most min_refresh
	e.eventually("recovery", func() bool { return e.lookup("198.18.1.3") == "ex" && e.status("ex").DNSError == "" })
	if got := e.lookup("198.18.1.2"); got != "" {
		t.Errorf("after recovery: old address still maps to %q", got)
	}
	if n := e.logs.count("DNS resolution recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, e.logs.String())
	}
}

func (s *polState) inflightNow(m *Manager) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return s.inflight
}

func TestManagerTTLClamp(t *testing.T) {
	e := newManagerEnv(t, map[string]string{"short.toml": "domain = \"short.test\"\n"})
	e.zone.set("short.test. 1 IN A 198.18.6.1", "short.test. 1 IN AAAA 2001:2:0:6::1")
	e.start()
	e.m.mu.Lock()
	next := e.m.states[0].next
	e.m.mu.Unlock()
	if got, want := next.Sub(e.clock.Now()), 30*time.Second; got != want {
		t.Errorf("TTL 1 s: next refresh in %v, want min_refresh %v", got, want)
	}
}

func TestManagerCIDRsWhenDNSDown(t *testing.T) {
	e := newManagerEnv(t, map[string]string{
		"down.toml": "domain = \"fail.test\"\nmx = true\nspf = true\ncidrs = [\"198.18.8.0/24\"]\n",
	})
	if got := e.lookup("198.18.8.1"); got != "down" {
		t.Fatalf("before Start: lookup = %q, want down (cidrs apply at once)", got)
	}
	e.start()
	if got := e.lookup("198.18.8.1"); got != "down" {
		t.Errorf("after Ready: lookup = %q, want down", got)
	}
	if s := e.status("down"); !strings.Contains(s.DNSError, "SERVFAIL") {
		t.Errorf("DNSError = %q, want SERVFAIL", s.DNSError)
	}
}

func TestManagerExpiry(t *testing.T) {
	e := newManagerEnv(t, map[string]string{
		"soon.toml":  "cidrs = [\"198.18.10.0/24\"]\nexpires = 2026-06-01T01:00:00Z\n",
		"later.toml": "cidrs = [\"198.18.11.0/24\"]\nexpires = 2026-07-01T00:00:00Z\n",
		"gone.toml":  "domain = \"example.test\"\nexpires = 2026-05-01T00:00:00Z\n",
		"ever.toml":  "cidrs = [\"198.18.12.0/24\"]\n",
	})
	e.start()
	if got := e.lookup("198.18.10.1"); got != "soon" {
		t.Fatalf("lookup = %q, want soon", got)
	}
	if got := e.lookup("198.18.1.1"); got != "" {
		t.Errorf("expired policy applies: lookup = %q", got)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "policy expires soon") || !strings.Contains(logs, "policy=soon") {
		t.Errorf("no start-up warning for soon:\n%s", logs)
	}
	if !strings.Contains(logs, "policy expired") || !strings.Contains(logs, "policy=gone") {
		t.Errorf("no start-up warning for gone:\n%s", logs)
	}
	if !strings.Contains(logs, `msg="policy never expires" policy=ever`) {
		t.Errorf("no start-up warning for ever, which has no expires:\n%s", logs)
	}
	if strings.Contains(logs, "policy=later") {
		t.Errorf("warning for a policy expiring in 30 days:\n%s", logs)
	}
	e.clock.Advance(59 * time.Minute)
	if got := e.lookup("198.18.10.1"); got != "soon" {
		t.Fatalf("a minute before expiry: lookup = %q, want soon", got)
	}
	e.clock.Advance(time.Minute)
	e.eventually("expiry", func() bool { return e.lookup("198.18.10.1") == "" })
	e.eventually("expiry log", func() bool { return e.logs.count("msg=\"policy expired\" policy=soon") == 1 })
	if got := e.lookup("198.18.11.1"); got != "later" {
		t.Errorf("other policy: lookup = %q, want later", got)
	}
	if s := e.status("soon"); !s.Expired {
		t.Errorf("status of soon: Expired = false")
	}
}

func TestManagerReload(t *testing.T) {
	e := newManagerEnv(t, map[string]string{
		"ex.toml":  "domain = \"example.test\"\n",
		"net.toml": "cidrs = [\"198.18.12.0/24\"]\n",
	})
	e.start()
	cfg, err := Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	old := e.m.Table()

	q := *cfg
	q.Queue.Count++
	if err := e.m.Reload(&q); err == nil || !strings.Contains(err.Error(), "[queue] changed; that needs a restart") {
		t.Errorf("Reload with a queue change: err = %v, want a restart error", err)
	}
	r := *cfg
	r.Rules.Mark = 1
	if err := e.m.Reload(&r); err == nil || !strings.Contains(err.Error(), "[rules] changed; that needs a restart") {
		t.Errorf("Reload with a rules change: err = %v, want a restart error", err)
	}
	if e.m.Table() != old {
		t.Errorf("a refused reload swapped the table")
	}

	// Change one policy, drop none: ex keeps its resolved addresses.
	pd := filepath.Join(filepath.Dir(e.path), "policies.d")
	must(t, os.WriteFile(filepath.Join(pd, "net.toml"), []byte("cidrs = [\"198.18.13.0/24\"]\n"), 0o644))
	cfg, err = Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"198.18.1.1": "ex", "198.18.12.1": "", "198.18.13.1": "net"} {
		if got := e.lookup(addr); got != want {
			t.Errorf("after reload: lookup(%s) = %q, want %q", addr, got, want)
		}
	}
}

// changed reports whether the manager signalled a new table, consuming
// the signal.
func (e *managerEnv) changed() bool {
	select {
	case <-e.m.Changed():
		return true
	default:
		return false
	}
}

func (e *managerEnv) prefixes() string {
	var s []string
	for _, p := range e.m.Prefixes() {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// TestManagerPrefixes: the prefixes the kernel's address sets are built
// from follow the table through DNS changes and expiry, log-only policies
// included, expired ones not, with a change signal at each swap.
func TestManagerPrefixes(t *testing.T) {
	e := newManagerEnv(t, map[string]string{
		"ex.toml":   "domain = \"example.test\"\nmode = \"log-only\"\n",
		"net.toml":  "cidrs = [\"198.18.12.0/24\", \"2001:2:0:c::/64\"]\nexpires = 2026-06-01T01:00:00Z\n",
		"gone.toml": "cidrs = [\"198.18.14.0/24\"]\nexpires = 2026-05-01T00:00:00Z\n",
	})
	if !e.changed() {
		t.Errorf("no change signal for the first table")
	}
	if got, want := e.prefixes(), "198.18.12.0/24 2001:2:0:c::/64"; got != want {
		t.Errorf("before Start: prefixes %q, want %q (cidrs at once, expired left out)", got, want)
	}
	e.start()
	if !e.changed() {
		t.Errorf("no change signal after the first resolution")
	}
	if got, want := e.prefixes(), "198.18.1.1/32 198.18.12.0/24 2001:2::1/128 2001:2:0:c::/64"; got != want {
		t.Errorf("after Ready: prefixes %q, want %q", got, want)
	}

	e.zone.replace("example.test", "A", "example.test. 60 IN A 198.18.1.2")
	e.clock.Advance(61 * time.Second)
	e.eventually("the new A record in the prefixes", func() bool { return strings.HasPrefix(e.prefixes(), "198.18.1.2/32 ") })
	if !e.changed() {
		t.Errorf("no change signal after a DNS change")
	}
	if e.changed() {
		t.Errorf("a second change signal with no new table")
	}

	e.clock.Advance(time.Hour)
	e.eventually("expiry in the prefixes", func() bool { return !strings.Contains(e.prefixes(), "198.18.12.0/24") })
	if !e.changed() {
		t.Errorf("no change signal after an expiry")
	}
}

func TestManagerResolvedConflict(t *testing.T) {
	e := newManagerEnv(t, map[string]string{
		"a.toml": "domain = \"example.test\"\n",
		"b.toml": "domain = \"other.test\"\n", // same A 198.18.1.1
	})
	e.start()
	if got := e.lookup("198.18.1.1"); got != "a" {
		t.Errorf("lookup = %q, want a (the earlier file keeps the claim)", got)
	}
	if n := e.logs.count("address claimed by two policies"); n != 1 {
		t.Errorf("conflict logged %d times, want once:\n%s", n, e.logs.String())
	}
	b := e.status("b")
	if len(b.Addresses) != 0 || len(b.Notes) != 1 || !strings.Contains(b.Notes[0], "198.18.1.1/32: resolved for b but claimed by a") {
		t.Errorf("status of b = %+v", b)
	}
}

func TestWriteCheck(t *testing.T) {
	e := newManagerEnv(t, map[string]string{
		"example.test.toml": `domain = "example.test"
mx = true
ports = [25, 465, 587]
direction = "outbound"
expires = 2026-06-04T04:00:00Z
reason = "window scale mangled"
ticket = "NET-1"
evidence = true
[options]
window_scale = "strip"
`,
		"lab.toml": `cidrs = ["198.18.0.0/15", "2001:2::/48"]
mode = "log-only"
[options]
timestamps = "repair"
mss_max = 1360
`,
		"broken.toml": "domain = \"fail.test\"\n",
	})
	e.start()
	var b bytes.Buffer
	WriteCheck(&b, e.m.Status(), e.clock.Now())
	want := fmt.Sprintf(`policy broken (%[1]s/broken.toml)
  domain     fail.test
  mode       enforce
  direction  both
  ports      all
  actions    none
  addresses  none
  expires    never
  dns error  fail.test. A: SERVFAIL; fail.test. AAAA: SERVFAIL

policy example.test (%[1]s/example.test.toml)
  domain     example.test (mx)
  mode       enforce
  direction  outbound
  ports      25, 465, 587
  actions    window_scale=strip
  addresses  198.18.1.1/32
             198.18.2.1/32
             198.18.2.2/32
             2001:2::1/128
             2001:2:0:2::2/128
  expires    in 3d4h (2026-06-04T04:00:00Z)
  reason     window scale mangled
  ticket     NET-1
  evidence   on: handshakes kept in [evidence] dir/example.test.pcapng

policy lab (%[1]s/lab.toml)
  mode       log-only
  direction  both
  ports      all
  actions    timestamps=repair mss_max=1360
  addresses  198.18.0.0/15
             2001:2::/48
  expires    never
  notes      timestamps repair fixes TSvals scrambled toward us only; scrambling toward the peer needs strip
`, filepath.Join(filepath.Dir(e.path), "policies.d"))
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("WriteCheck (-want +got):\n%s", diff)
	}
}

// TestManagerOneLookupFails: a server refuses one record type of the
// domain while the MX host moves. The failing lookup keeps its own last
// answer, and only for max_stale; the MX host's new address replaces the
// old one at once.
func TestManagerOneLookupFails(t *testing.T) {
	e := newManagerEnv(t, map[string]string{"rmx.toml": "domain = \"rmx.test\"\nmx = true\n"})
	e.zone.set(
		"rmx.test. 30 IN MX 10 mx.rmx.test.",
		"rmx.test. 30 IN AAAA 2001:2:0:30::1",
		"mx.rmx.test. 30 IN A 198.19.30.3",
	)
	e.m.cfg.DNS.MaxStale = 5 * time.Minute
	e.start()
	for _, a := range []string{"198.19.30.3", "2001:2:0:30::1"} {
		if got := e.lookup(a); got != "rmx" {
			t.Fatalf("lookup(%s) = %q, want rmx", a, got)
		}
	}
	e.zone.setRcodeType("rmx.test", "AAAA", dns.RcodeRefused)
	e.zone.replace("mx.rmx.test", "A", "mx.rmx.test. 30 IN A 198.19.30.2")
	e.clock.Advance(31 * time.Second)
	e.eventually("the MX host's new address alone", func() bool {
		return e.lookup("198.19.30.2") == "rmx" && e.lookup("198.19.30.3") == ""
	})
	if got := e.lookup("2001:2:0:30::1"); got != "rmx" {
		t.Errorf("the refused AAAA's last answer: lookup = %q, want rmx", got)
	}
	st := e.status("rmx")
	if !strings.Contains(st.DNSError, "rmx.test. AAAA: REFUSED (failing since ") || !strings.Contains(st.DNSError, "using its answer of") {
		t.Errorf("DNS error %q, want the failing lookup, since when, and the answer used", st.DNSError)
	}
	// Past max_stale the stand-in goes, with its reason.
	for i := 0; i < 12 && e.lookup("2001:2:0:30::1") != ""; i++ {
		e.clock.Advance(time.Minute)
		time.Sleep(50 * time.Millisecond)
	}
	e.eventually("the stale AAAA answer dropped", func() bool { return e.lookup("2001:2:0:30::1") == "" })
	if got := e.lookup("198.19.30.2"); got != "rmx" {
		t.Errorf("lookup(198.19.30.2) = %q after the stale answer went, want rmx", got)
	}
	if !strings.Contains(e.logs.String(), "older than max_stale") {
		t.Errorf("no warning about the dropped answer in the logs:\n%s", e.logs.String())
	}
}
