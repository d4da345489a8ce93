package config

import (
	"context"
	"fmt"
	"net/netip"
	"sort"

	"github.com/miekg/dns"
)

// MailHosts is where mail for a domain goes, as a sending MTA finds it
// (RFC 5321 section 5.1): the addresses of its MX hosts, or without MX
// records the domain's own A and AAAA (the implicit MX); a null MX (RFC
// 7505) means none. It resolves with cfg's [dns] servers (none: those of
// /etc/resolv.conf), as the daemon does for a policy's names.
type MailHosts struct {
	Addrs []netip.Addr // sorted, unique
	MX    bool         // from MX records (false: the implicit MX)
	Errs  []string     // failed lookups
	Notes []string     // answers worth reporting: NXDOMAIN, null MX
}

// ResolveMailHosts resolves domain's mail hosts.
func ResolveMailHosts(ctx context.Context, cfg *Config, domain string) (MailHosts, error) {
	servers := cfg.DNS.Servers
	if len(servers) == 0 {
		var err error
		if servers, err = systemServers(defaultResolvConf); err != nil {
			return MailHosts{}, fmt.Errorf("no DNS servers: %w", err)
		}
	}
	r := newResolver(servers, defaultQueryTimeout, defaultQueryTries)
	c := &collector{res: resolution{ttl: 1<<31 - 1}}
	var mh MailHosts
	ans, err := r.lookup(ctx, domain, dns.TypeMX)
	var ps []netip.Prefix
	switch {
	case err != nil:
		c.fail(err)
	case ans.nx:
		c.note("%s: no such domain (NXDOMAIN)", domain)
	case hasMX(ans):
		mh.MX = true
		ps = r.mxAddrs(ctx, c, domain, 0, 32, 128)
		if len(ps) == 0 && len(c.res.errs) == 0 {
			c.note("%s: null MX (RFC 7505): the domain accepts no mail", domain)
		}
	default:
		ps, _ = r.hostAddrs(ctx, c, domain, 32, 128)
	}
	for _, p := range uniqPrefixes(ps) {
		mh.Addrs = append(mh.Addrs, p.Addr())
	}
	sort.Slice(mh.Addrs, func(i, j int) bool { return mh.Addrs[i].Less(mh.Addrs[j]) })
	mh.Errs, mh.Notes = c.res.errs, c.res.notes
	sort.Strings(mh.Errs)
	sort.Strings(mh.Notes)
	return mh, nil
}

// hasMX reports whether an answer holds MX records (a null MX included).
func hasMX(a answer) bool {
	for _, rr := range a.rrs {
		if _, ok := rr.(*dns.MX); ok {
			return true
		}
	}
	return false
}
