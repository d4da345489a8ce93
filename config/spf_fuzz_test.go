package config

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzSPF: any SPF record, evaluated against the test zone (whose names it
// may include, redirect to or look up), gives prefixes no broader than a
// peer policy allows and stays within RFC 7208's lookup limit, never a
// panic or a hang.
func FuzzSPF(f *testing.F) {
	for _, s := range []string{
		"v=spf1 ip4:198.18.3.0/24 include:_spf.example.test a:mx1.example.test/28 -ip4:198.18.9.9 ptr ~all",
		"v=spf1 ip6:2001:2:0:3::/64 mx:example.test -all",
		"v=spf1 include:fuzz.test include:fuzz.test redirect=fuzz.test",
		"v=spf1 a/24//64 mx/0 ip4:0.0.0.0/0 ip6:::/0 ip4:198.18.1.1 ip6:2001:2::1/129 exists:%{i}.x ?all",
		"v=spf1 redirect=example.test",
		"v=spf1 a: mx:: include: ip4: ip6: +-ip4:1.2.3.4 =x",
		"v=spf1",
	} {
		f.Add(s)
	}
	z := startZone(f)
	r := newResolver([]string{z.addr}, time.Second, 1)
	f.Fuzz(func(t *testing.T, record string) {
		txt := &dns.TXT{Hdr: dns.RR_Header{Name: "fuzz.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300}}
		for s := record; len(s) > 0 || len(txt.Txt) == 0; {
			n := min(len(s), 255)
			txt.Txt = append(txt.Txt, s[:n])
			s = s[n:]
		}
		z.mu.Lock()
		z.rrs["fuzz.test./TXT"] = []dns.RR{txt}
		z.mu.Unlock()
		before := z.queries.Load()
		res := r.resolvePolicy(context.Background(), "fuzz.test", false, true)
		// A and AAAA of the domain, its TXT, and per counted lookup at
		// most an MX and the A and AAAA of spfMaxMX hosts.
		if q := z.queries.Load() - before; q > 3+spfLookupLimit*(1+2*spfMaxMX+2) {
			t.Fatalf("%d DNS queries for one SPF record", q)
		}
		for _, p := range res.prefixes {
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("prefix %v is invalid or has host bits", p)
			}
			if p.Addr().Is4() && p.Bits() < spfMinBits4 || p.Addr().Is6() && p.Bits() < spfMinBits6 {
				t.Fatalf("prefix %v is broader than an SPF term may add", p)
			}
		}
	})
}
