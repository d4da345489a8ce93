package config

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// SPF (RFC 7208) as tcpnorm reads it: the addresses a domain's record
// authorizes, for inbound policies (spf = true).
const (
	spfLookupLimit = 10 // RFC 7208 section 4.6.4
	spfMaxMX       = 10 // RFC 7208 section 4.6.4: mx mechanism looks at 10 MX records
	spfMinBits4    = 8  // broader SPF prefixes are ignored: they would claim whole networks
	spfMinBits6    = 16
)

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
