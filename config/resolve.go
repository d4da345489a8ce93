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

const maxCNAMEHops = 8

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
