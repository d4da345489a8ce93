//go:build linux

package lab

import (
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// dnsTTL is short so a daemon's refresh would notice changes quickly.
const dnsTTL = 60

// DNSAnswers is what the lab's DNS server answers, for DNS fault tests.
type DNSAnswers struct {
	Silent bool       // answer nothing: every query times out
	V4, V6 netip.Addr // the MX host's addresses; zero: ServerV4, ServerV6
	TTL    uint32     // of every record; 0: 60 s
}

// dnsServer answers for the lab's domain on dnsV4 and dnsV6, port 53, UDP
// and TCP, inside the server namespace.
type dnsServer struct {
	servers []*dns.Server
	wg      sync.WaitGroup
	mu      sync.Mutex
	ans     DNSAnswers
}

// SetDNS changes what the lab's DNS server answers from now on.
func (l *Lab) SetDNS(a DNSAnswers) {
	l.mu.Lock()
	d := l.dns
	l.mu.Unlock()
	if d == nil {
		return
	}
	d.mu.Lock()
	d.ans = a
	d.mu.Unlock()
}

func (d *dnsServer) answers() DNSAnswers {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.ans
	if !a.V4.IsValid() {
		a.V4 = ServerV4
	}
	if !a.V6.IsValid() {
		a.V6 = ServerV6
	}
	if a.TTL == 0 {
		a.TTL = dnsTTL
	}
	return a
}

func startDNS(ns string) (*dnsServer, error) {
	var pcs []net.PacketConn
	var lns []net.Listener
	err := netns.InNetns(ns, func() error {
		for _, a := range []string{"[" + dnsV4.String() + "]:53", "[" + dnsV6.String() + "]:53"} {
			pc, err := net.ListenPacket("udp", a)
			if err != nil {
				return err
			}
			pcs = append(pcs, pc)
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		return nil
	})
	if err != nil {
		for _, pc := range pcs {
			pc.Close()
		}
		for _, ln := range lns {
			ln.Close()
		}
		return nil, err
	}
	d := &dnsServer{}
	h := dns.HandlerFunc(d.answer)
	for _, pc := range pcs {
		d.servers = append(d.servers, &dns.Server{PacketConn: pc, Handler: h})
	}
	for _, ln := range lns {
		d.servers = append(d.servers, &dns.Server{Listener: ln, Handler: h})
	}
	for _, s := range d.servers {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			s.ActivateAndServe()
		}()
		<-started
	}
	return d, nil
}

func (d *dnsServer) stop() {
	for _, s := range d.servers {
		s.Shutdown()
	}
	d.wg.Wait()
}

// zone returns the records for name and type; ok is false for names outside
// the zone (NXDOMAIN).
func zone(a DNSAnswers, name string, qtype uint16) (rrs []dns.RR, ok bool) {
	name = strings.ToLower(dns.Fqdn(name))
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: a.TTL}
	}
	switch name {
	case dns.Fqdn(Domain):
		if qtype == dns.TypeMX || qtype == dns.TypeANY {
			rrs = append(rrs, &dns.MX{Hdr: hdr(dns.TypeMX), Preference: 10, Mx: dns.Fqdn(MXHost)})
		}
		return rrs, true
	case dns.Fqdn(MXHost):
		if qtype == dns.TypeA || qtype == dns.TypeANY {
			rrs = append(rrs, &dns.A{Hdr: hdr(dns.TypeA), A: a.V4.AsSlice()})
		}
		if qtype == dns.TypeAAAA || qtype == dns.TypeANY {
			rrs = append(rrs, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.V6.AsSlice()})
		}
		return rrs, true
	}
	return nil, false
}

func (d *dnsServer) answer(w dns.ResponseWriter, req *dns.Msg) {
	a := d.answers()
	if a.Silent {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	rrs, ok := zone(a, q.Name, q.Qtype)
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	m.Answer = rrs
	if q.Qtype == dns.TypeMX {
		for _, rr := range rrs {
			if mx, isMX := rr.(*dns.MX); isMX {
				extra, _ := zone(a, mx.Mx, dns.TypeANY)
				m.Extra = append(m.Extra, extra...)
			}
		}
	}
	w.WriteMsg(m)
}
