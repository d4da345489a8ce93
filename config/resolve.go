package config

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	maxCNAMEHops   = 8
	spfLookupLimit = 10 // RFC 7208 section 4.6.4
	spfMaxMX       = 10 // RFC 7208 section 4.6.4: mx mechanism looks at 10 MX records
	spfMinBits4    = 8  // broader SPF prefixes are ignored: they would claim whole networks
	spfMinBits6    = 16
)

// resolver asks recursive servers; it never recurses itself.
type resolver struct {
	known   *lastKnown // nil: a failed lookup has no stand-in
	servers []string
	timeout time.Duration // per query and server
	tries   int
	udp     *dns.Client
	tcp     *dns.Client
}

func newResolver(servers []string, timeout time.Duration, tries int) *resolver {
	return &resolver{
		servers: servers,
		timeout: timeout,
		tries:   tries,
		udp:     &dns.Client{Net: "udp", UDPSize: 1232},
		tcp:     &dns.Client{Net: "tcp"},
	}
}

// systemServers reads the nameservers of /etc/resolv.conf.
func systemServers(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range cc.Servers {
		if a, err := netip.ParseAddr(s); err == nil {
			port, _ := strconv.ParseUint(cc.Port, 10, 16)
			if port == 0 {
				port = 53
			}
			out = append(out, netip.AddrPortFrom(a, uint16(port)).String())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no nameservers", path)
	}
	return out, nil
}

// errServFail and friends are failures: the last known answer stays.
type rcodeError struct {
	name  string
	qtype uint16
	rcode int
}

func (e *rcodeError) Error() string {
	return fmt.Sprintf("%s %s: %s", e.name, dns.TypeToString[e.qtype], dns.RcodeToString[e.rcode])
}

// exchange sends one question, trying every server tries times. NOERROR and
// NXDOMAIN are answers; anything else is an error.
func (r *resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	if len(r.servers) == 0 {
		return nil, errors.New("no DNS servers")
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	q.SetEdns0(1232, false)
	var last error
	for try := 0; try < r.tries; try++ {
		for _, srv := range r.servers {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("%s %s: %w", name, dns.TypeToString[qtype], err)
			}
			resp, err := r.ask(ctx, r.udp, q, srv)
			if err == nil && resp.Truncated {
				resp, err = r.ask(ctx, r.tcp, q, srv)
			}
			if err != nil {
				last = fmt.Errorf("%s %s via %s: %w", name, dns.TypeToString[qtype], srv, err)
				continue
			}
			if resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError {
				return resp, nil
			}
			last = &rcodeError{name: dns.Fqdn(name), qtype: qtype, rcode: resp.Rcode}
		}
	}
	return nil, last
}

func (r *resolver) ask(ctx context.Context, c *dns.Client, q *dns.Msg, srv string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	q.Id = dns.Id()
	resp, _, err := c.ExchangeContext(qctx, q, srv)
	return resp, err
}

// answer is what one lookup found.
type answer struct {
	rrs []dns.RR // records of the asked type at the end of the CNAME chain
	ttl uint32   // smallest TTL involved (negative TTL for NXDOMAIN/NODATA)
	nx  bool
}

// lookup asks for name/qtype and follows CNAME chains, asking again for the
// target when the server did not chase it.
func (r *resolver) lookup(ctx context.Context, name string, qtype uint16) (answer, error) {
	ttl := uint32(1<<31 - 1)
	target := dns.Fqdn(name)
	for hop := 0; hop < maxCNAMEHops; hop++ {
		resp, err := r.exchange(ctx, target, qtype)
		if err != nil {
			return answer{}, err
		}
		asked := target
		for i := 0; i < maxCNAMEHops; i++ {
			next := ""
			for _, rr := range resp.Answer {
				if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, target) {
					next = c.Target
					ttl = min(ttl, c.Hdr.Ttl)
					break
				}
			}
			if next == "" {
				break
			}
			target = next
		}
		var rrs []dns.RR
		for _, rr := range resp.Answer {
			if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, target) {
				rrs = append(rrs, rr)
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
		if len(rrs) > 0 {
			return answer{rrs: rrs, ttl: ttl}, nil
		}
		if target != asked && resp.Rcode == dns.RcodeSuccess && !hasSOA(resp) {
			continue // the server stopped at the CNAME: ask for its target
		}
		ttl = min(ttl, negativeTTL(resp))
		return answer{ttl: ttl, nx: resp.Rcode == dns.RcodeNameError}, nil
	}
	return answer{}, fmt.Errorf("%s: CNAME chain longer than %d", name, maxCNAMEHops)
}

func hasSOA(m *dns.Msg) bool {
	for _, rr := range m.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

// negativeTTL is how long a NODATA/NXDOMAIN may be cached (RFC 2308).
func negativeTTL(m *dns.Msg) uint32 {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return 0
}

// resolution is the outcome of resolving one policy's names.
type resolution struct {
	prefixes []netip.Prefix
	ttl      uint32
	errs     []string // failures: the last known addresses stay
	notes    []string // answers worth reporting: NXDOMAIN, ignored SPF terms
}

type collector struct {
	mu  sync.Mutex
	res resolution
}

func (c *collector) add(ps ...netip.Prefix) {
	c.mu.Lock()
	c.res.prefixes = append(c.res.prefixes, ps...)
	c.mu.Unlock()
}

func (c *collector) ttl(t uint32) {
	c.mu.Lock()
	c.res.ttl = min(c.res.ttl, t)
	c.mu.Unlock()
}

func (c *collector) fail(err error) {
	c.mu.Lock()
	c.res.errs = append(c.res.errs, err.Error())
	c.mu.Unlock()
}

func (c *collector) note(format string, args ...any) {
	c.mu.Lock()
	c.res.notes = append(c.res.notes, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// resolvePolicy resolves domain (A, AAAA), with mx its MX hosts, with spf the
// senders its SPF record publishes. The parts run concurrently so a dead
// server costs one timeout, not one per question.
func (r *resolver) resolvePolicy(ctx context.Context, domain string, mx, spf bool) resolution {
	c := &collector{res: resolution{ttl: 1<<31 - 1}}
	var wg sync.WaitGroup
	wg.Go(func() {
		ps, nx := r.hostAddrs(ctx, c, domain, 32, 128)
		c.add(ps...)
		if nx {
			c.note("%s: no such domain (NXDOMAIN)", domain)
		}
	})
	if mx {
		wg.Go(func() { c.add(r.mxAddrs(ctx, c, domain, 0, 32, 128)...) })
	}
	if spf {
		wg.Go(func() {
			e := &spfEval{r: r, c: c}
			e.eval(ctx, domain, 0)
		})
	}
	wg.Wait()
	res := c.res
	res.prefixes = uniqPrefixes(res.prefixes)
	sort.Strings(res.errs)
	sort.Strings(res.notes)
	return res
}

// hostAddrs returns name's A and AAAA addresses as prefixes of length b4/b6.
// nx reports that name does not exist.
func (r *resolver) hostAddrs(ctx context.Context, c *collector, name string, b4, b6 int) (ps []netip.Prefix, nx bool) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Go(func() {
			ans, ok := r.lookupKeep(ctx, c, name, qt)
			if !ok {
				return
			}
			c.ttl(ans.ttl)
			mu.Lock()
			defer mu.Unlock()
			nx = nx || ans.nx
			for _, rr := range ans.rrs {
				var a netip.Addr
				var bits int
				switch x := rr.(type) {
				case *dns.A:
					a, _ = netip.AddrFromSlice(x.A.To4())
					bits = b4
				case *dns.AAAA:
					a, _ = netip.AddrFromSlice(x.AAAA.To16())
					bits = b6
				}
				if a.IsValid() {
					if p, err := a.Unmap().Prefix(bits); err == nil {
						ps = append(ps, p)
					}
				}
			}
		})
	}
	wg.Wait()
	return ps, nx
}

// mxAddrs returns the addresses of name's MX hosts (at most limit hosts, 0:
// all). A null MX (RFC 7505, exchange ".") means none.
func (r *resolver) mxAddrs(ctx context.Context, c *collector, name string, limit, b4, b6 int) []netip.Prefix {
	ans, ok := r.lookupKeep(ctx, c, name, dns.TypeMX)
	if !ok {
		return nil
	}
	c.ttl(ans.ttl)
	var hosts []string
	for _, rr := range ans.rrs {
		if m, ok := rr.(*dns.MX); ok && m.Mx != "." {
			hosts = append(hosts, strings.ToLower(m.Mx))
		}
	}
	sort.Strings(hosts)
	if limit > 0 && len(hosts) > limit {
		c.note("%s: more than %d MX hosts; SPF looks at the first %d", name, limit, limit)
		hosts = hosts[:limit]
	}
	var mu sync.Mutex
	var out []netip.Prefix
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Go(func() {
			ps, nx := r.hostAddrs(ctx, c, h, b4, b6)
			if nx {
				c.note("%s: MX host %s does not exist", name, strings.TrimSuffix(h, "."))
			}
			mu.Lock()
			out = append(out, ps...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// spfEval collects the addresses an SPF record authorizes with a pass
// result: ip4, ip6, a, mx and include (and redirect). Other mechanisms are
// noted and ignored: tcpnorm needs addresses, not a verdict.
type spfEval struct {
	r       *resolver
	c       *collector
	lookups int
	over    bool
}

func (e *spfEval) count(domain, term string) bool {
	if e.lookups >= spfLookupLimit {
		if !e.over {
			e.over = true
			e.c.note("%s: SPF needs more than %d DNS lookups; %q and later lookups ignored", domain, spfLookupLimit, term)
		}
		return false
	}
	e.lookups++
	return true
}

func (e *spfEval) eval(ctx context.Context, domain string, depth int) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	ans, ok := e.r.lookupKeep(ctx, e.c, domain, dns.TypeTXT)
	if !ok {
		return
	}
	e.c.ttl(ans.ttl)
	var recs []string
	for _, rr := range ans.rrs {
		if t, ok := rr.(*dns.TXT); ok {
			s := strings.Join(t.Txt, "")
			if l := strings.ToLower(s); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
				recs = append(recs, s)
			}
		}
	}
	switch {
	case len(recs) == 0:
		e.c.note("%s: no SPF record", domain)
		return
	case len(recs) > 1:
		e.c.note("%s: %d SPF records (RFC 7208 allows one); ignored", domain, len(recs))
		return
	}
	var redirect string
	sawAll := false
	for _, term := range strings.Fields(recs[0])[1:] {
		t := term
		qual := byte('+')
		if strings.ContainsRune("+-~?", rune(t[0])) {
			qual, t = t[0], t[1:]
		}
		name, arg := t, ""
		if i := strings.IndexAny(t, ":/="); i >= 0 {
			name, arg = t[:i], t[i:]
		}
		name = strings.ToLower(name)
		if strings.HasPrefix(arg, "=") { // a modifier
			if name == "redirect" {
				redirect = arg[1:]
			}
			continue
		}
		if strings.Contains(arg, "%") {
			e.c.note("%s: SPF term %q uses macros; ignored", domain, term)
			continue
		}
		switch name {
		case "all":
			sawAll = true
		case "ip4", "ip6":
			if qual != '+' {
				continue
			}
			p, err := parsePrefix(strings.TrimPrefix(arg, ":"))
			if err != nil || (name == "ip4") != p.Addr().Is4() {
				if q, err2 := netip.ParsePrefix(strings.TrimPrefix(arg, ":")); err2 == nil && (name == "ip4") == q.Addr().Is4() {
					p, err = q.Masked(), nil
				} else {
					e.c.note("%s: SPF term %q is not a valid %s; ignored", domain, term, name)
					continue
				}
			}
			e.addSPF(domain, term, p)
		case "a", "mx":
			if qual != '+' || !e.count(domain, term) {
				continue
			}
			target, b4, b6, ok := spfDomainCIDR(arg, domain)
			if !ok {
				e.c.note("%s: SPF term %q is malformed; ignored", domain, term)
				continue
			}
			var ps []netip.Prefix
			if name == "a" {
				ps, _ = e.r.hostAddrs(ctx, e.c, target, b4, b6)
			} else {
				ps = e.r.mxAddrs(ctx, e.c, target, spfMaxMX, b4, b6)
			}
			for _, p := range ps {
				e.addSPF(domain, term, p)
			}
		case "include":
			if qual != '+' || !e.count(domain, term) {
				continue
			}
			target := strings.TrimPrefix(arg, ":")
			if _, err := checkDomain(target, 1); err != nil || depth >= spfLookupLimit {
				e.c.note("%s: SPF term %q is malformed; ignored", domain, term)
				continue
			}
			e.eval(ctx, target, depth+1)
		case "ptr", "exists":
			e.count(domain, term)
			e.c.note("%s: SPF term %q names no addresses; ignored", domain, term)
		default:
			e.c.note("%s: SPF term %q is unknown; ignored", domain, term)
		}
	}
	if redirect != "" && !sawAll && e.count(domain, "redirect="+redirect) {
		if _, err := checkDomain(redirect, 1); err != nil || depth >= spfLookupLimit {
			e.c.note("%s: SPF redirect=%s is malformed; ignored", domain, redirect)
			return
		}
		e.eval(ctx, redirect, depth+1)
	}
}

func (e *spfEval) addSPF(domain, term string, p netip.Prefix) {
	if p.Addr().Is4() && p.Bits() < spfMinBits4 || p.Addr().Is6() && p.Bits() < spfMinBits6 {
		e.c.note("%s: SPF term %q covers %s, too broad for a peer policy; ignored", domain, term, p)
		return
	}
	e.c.add(p)
}

// spfDomainCIDR parses the argument of a or mx: [":" domain] ["/" n] ["//" m].
func spfDomainCIDR(arg, current string) (target string, b4, b6 int, ok bool) {
	target, b4, b6 = current, 32, 128
	rest := arg
	if strings.HasPrefix(rest, ":") {
		rest = rest[1:]
		i := strings.IndexByte(rest, '/')
		if i < 0 {
			i = len(rest)
		}
		target, rest = rest[:i], rest[i:]
		if _, err := checkDomain(target, 1); err != nil {
			return "", 0, 0, false
		}
	}
	if rest == "" {
		return target, b4, b6, true
	}
	v4, v6, has6 := rest, "", false
	if i := strings.Index(rest, "//"); i >= 0 {
		v4, v6, has6 = rest[:i], rest[i+2:], true
	}
	if v4 != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(v4, "/"))
		if err != nil || !strings.HasPrefix(v4, "/") || n < 0 || n > 32 {
			return "", 0, 0, false
		}
		b4 = n
	}
	if has6 {
		n, err := strconv.Atoi(v6)
		if err != nil || n < 0 || n > 128 {
			return "", 0, 0, false
		}
		b6 = n
	}
	return target, b4, b6, true
}

func uniqPrefixes(ps []netip.Prefix) []netip.Prefix {
	sortPrefixes(ps)
	out := ps[:0]
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, p)
		}
	}
	return out
}

func sortPrefixes(ps []netip.Prefix) {
	sort.Slice(ps, func(i, j int) bool {
		if c := ps[i].Addr().Compare(ps[j].Addr()); c != 0 {
			return c < 0
		}
		return ps[i].Bits() < ps[j].Bits()
	})
}
