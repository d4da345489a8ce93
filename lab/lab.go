//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// defaultPrefix starts the name of every namespace a lab creates.
const defaultPrefix = "tnlab"

// Domain is the lab's mail domain: its MX host is the server.
const (
	Domain = "lab.test"
	MXHost = "mx.lab.test"
)

// SMTPPort is where the server listens for transfers.
const SMTPPort = 25

// Addresses of the lab. Each link has an IPv4 /24 and an IPv6 /64.
var (
	ClientV4  = netip.MustParseAddr("198.18.1.2")
	gatewayV4 = netip.MustParseAddr("198.18.1.1") // client side
	gwPathV4  = netip.MustParseAddr("198.18.2.1")
	pathGwV4  = netip.MustParseAddr("198.18.2.2")
	pathSrvV4 = netip.MustParseAddr("198.18.3.1")
	ServerV4  = netip.MustParseAddr("198.18.3.2")
	dnsV4     = netip.MustParseAddr("198.18.3.53")
	OtherV4   = netip.MustParseAddr("198.18.3.99") // on the server, not in DNS

	ClientV6  = netip.MustParseAddr("2001:2:0:1::2")
	gatewayV6 = netip.MustParseAddr("2001:2:0:1::1")
	gwPathV6  = netip.MustParseAddr("2001:2:0:2::1")
	pathGwV6  = netip.MustParseAddr("2001:2:0:2::2")
	pathSrvV6 = netip.MustParseAddr("2001:2:0:3::1")
	ServerV6  = netip.MustParseAddr("2001:2:0:3::2")
	dnsV6     = netip.MustParseAddr("2001:2:0:3::53")
	OtherV6   = netip.MustParseAddr("2001:2:0:3::99")
)

// Interface names; each lives in its own namespace, so they never clash
// with the host's or another lab's.
const (
	IfClient    = "gw0"   // client's link to the gateway
	ifGwClient  = "cli0"  // gateway's link to the client
	ifGwPath    = "path0" // gateway's link to the path
	ifPathGw    = "gw0"   // path's link to the gateway
	ifPathSrv   = "srv0"  // path's link to the server
	IfServer    = "path0" // server's link to the path
	serverMTU   = 1500
	blackholeMT = 1280 // path's MTU toward the server with the PMTU fault
)

// Lab is one built lab. Its namespace names are unique to it.
type Lab struct {
	Name                          string // prefix-pid-random
	Client, Gateway, Path, Server string // namespace names

	mu      sync.Mutex
	fault   Fault
	faultbx *faultBox
	dns     *dnsServer
	closed  bool
}

// Options configures New.
type Options struct {
	Prefix string // namespace name prefix; default "tnlab" (defaultPrefix)
}

// New builds a lab: four namespaces, three links with IPv4 and IPv6, routes
// both ways, forwarding on gateway and path, conntrack active and strict in
// every namespace, and the DNS server on the server. It first removes
// leftovers of crashed runs with the same prefix. On error nothing is left.
func New(ctx context.Context, opt Options) (*Lab, error) {
	if opt.Prefix == "" {
		opt.Prefix = defaultPrefix
	}
	name, err := netns.NewName(ctx, opt.Prefix)
	if err != nil {
		return nil, err
	}
	l := &Lab{
		Name:    name,
		Client:  name + "-c",
		Gateway: name + "-g",
		Path:    name + "-p",
		Server:  name + "-s",
	}
	if err := l.build(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Namespaces lists the lab's namespaces, client first.
func (l *Lab) Namespaces() []string {
	return []string{l.Client, l.Gateway, l.Path, l.Server}
}

func (l *Lab) build(ctx context.Context) error {
	for _, ns := range l.Namespaces() {
		if _, err := netns.Run(ctx, "", "ip", "netns", "add", ns); err != nil {
			return err
		}
		// Addresses must be usable at once: no duplicate address detection.
		if err := netns.WriteSysctl(ns,
			"net.ipv6.conf.all.accept_dad", "0",
			"net.ipv6.conf.default.accept_dad", "0",
			"net.ipv6.conf.all.accept_ra", "0",
			"net.ipv6.conf.default.accept_ra", "0",
		); err != nil {
			return err
		}
	}
	links := []struct{ nsA, ifA, nsB, ifB string }{
		{l.Client, IfClient, l.Gateway, ifGwClient},
		{l.Gateway, ifGwPath, l.Path, ifPathGw},
		{l.Path, ifPathSrv, l.Server, IfServer},
	}
	// One `ip -batch` per namespace: an ip process costs tens of milliseconds.
	var root strings.Builder
	for _, k := range links {
		fmt.Fprintf(&root, "link add name %s netns %s type veth peer name %s netns %s\n", k.ifA, k.nsA, k.ifB, k.nsB)
	}
	if _, err := netns.RunInput(ctx, "", root.String(), "ip", "-batch", "-"); err != nil {
		return err
	}
	batch := map[string]*strings.Builder{}
	for _, ns := range l.Namespaces() {
		batch[ns] = &strings.Builder{}
		batch[ns].WriteString("link set lo up\n")
	}
	addr := func(ns, dev string, a netip.Addr) {
		if a.Is4() {
			fmt.Fprintf(batch[ns], "addr add %s/24 dev %s\n", a, dev)
		} else {
			fmt.Fprintf(batch[ns], "addr add %s/64 dev %s nodad\n", a, dev)
		}
	}
	for _, k := range links {
		fmt.Fprintf(batch[k.nsA], "link set %s up\n", k.ifA)
		fmt.Fprintf(batch[k.nsB], "link set %s up\n", k.ifB)
	}
	for _, a := range []netip.Addr{ClientV4, ClientV6} {
		addr(l.Client, IfClient, a)
	}
	for _, a := range []netip.Addr{gatewayV4, gatewayV6} {
		addr(l.Gateway, ifGwClient, a)
	}
	for _, a := range []netip.Addr{gwPathV4, gwPathV6} {
		addr(l.Gateway, ifGwPath, a)
	}
	for _, a := range []netip.Addr{pathGwV4, pathGwV6} {
		addr(l.Path, ifPathGw, a)
	}
	for _, a := range []netip.Addr{pathSrvV4, pathSrvV6} {
		addr(l.Path, ifPathSrv, a)
	}
	for _, a := range []netip.Addr{ServerV4, ServerV6, dnsV4, dnsV6, OtherV4, OtherV6} {
		addr(l.Server, IfServer, a)
	}
	routes := [][]string{
		{l.Client, "198.18.0.0/15", gatewayV4.String()},
		{l.Client, "2001:2::/48", gatewayV6.String()},
		{l.Gateway, "198.18.3.0/24", pathGwV4.String()},
		{l.Gateway, "2001:2:0:3::/64", pathGwV6.String()},
		{l.Path, "198.18.1.0/24", gwPathV4.String()},
		{l.Path, "2001:2:0:1::/64", gwPathV6.String()},
		{l.Server, "198.18.0.0/15", pathSrvV4.String()},
		{l.Server, "2001:2::/48", pathSrvV6.String()},
	}
	for _, r := range routes {
		fmt.Fprintf(batch[r[0]], "route add %s via %s\n", r[1], r[2])
	}
	for _, ns := range l.Namespaces() {
		if _, err := netns.RunInput(ctx, "", batch[ns].String(), "ip", "-n", ns, "-batch", "-"); err != nil {
			return err
		}
	}
	for _, ns := range []string{l.Gateway, l.Path} {
		if err := netns.WriteSysctl(ns,
			"net.ipv4.ip_forward", "1",
			"net.ipv6.conf.all.forwarding", "1",
		); err != nil {
			return err
		}
	}
	for _, ns := range l.Namespaces() {
		extra := ""
		if ns == l.Path {
			extra = faultHooks
		}
		if err := enableConntrack(ctx, ns, extra); err != nil {
			return err
		}
	}
	d, err := startDNS(l.Server)
	if err != nil {
		return err
	}
	l.dns = d
	return l.waitReachable(ctx)
}

// waitReachable connects from the client to every server address and from
// the gateway to the DNS server until each answers (a refused connection is
// an answer), so neighbour discovery is done before the first transfer is
// timed.
func (l *Lab) waitReachable(ctx context.Context) error {
	probes := []struct {
		ns   string
		addr netip.Addr
	}{
		{l.Client, ServerV4}, {l.Client, ServerV6}, {l.Client, OtherV4}, {l.Client, OtherV6},
		{l.Gateway, dnsV4}, {l.Gateway, dnsV6},
	}
	for _, p := range probes {
		var err error
		for range 10 {
			if err = probe(ctx, p.ns, p.addr); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("lab: %s unreachable from %s: %w", p.addr, p.ns, err)
		}
	}
	return nil
}

// probe connects to the discard port of addr from namespace ns.
func probe(ctx context.Context, ns string, addr netip.Addr) error {
	return netns.InNetns(ns, func() error {
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, 9).String())
		if err == nil {
			c.Close()
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		return err
	})
}

// Close stops the lab's servers and deletes its namespaces. It is safe to
// call more than once and from a signal handler's goroutine.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.faultbx != nil {
		l.faultbx.stop()
		l.faultbx = nil
	}
	if l.dns != nil {
		l.dns.stop()
		l.dns = nil
	}
	return netns.DeleteNamespaces(l.Namespaces()...)
}

// enableConntrack makes conntrack track every packet in ns (it only hooks a
// namespace once some rule uses it), strict about TCP windows, and adds
// counting rules that show INVALID packets per chain. extra is more
// iptables-restore input for the namespace, applied in the same run.
func enableConntrack(ctx context.Context, ns, extra string) error {
	rules := "*filter\n" +
		"-A INPUT -m conntrack --ctstate INVALID\n" +
		"-A FORWARD -m conntrack --ctstate INVALID\n" +
		"-A OUTPUT -m conntrack --ctstate INVALID\n" +
		"COMMIT\n" + extra
	for _, cmd := range []string{"iptables-restore", "ip6tables-restore"} {
		if _, err := netns.RunInput(ctx, ns, rules, cmd, "--noflush"); err != nil {
			return err
		}
	}
	return netns.WriteSysctl(ns, "net.netfilter.nf_conntrack_tcp_be_liberal", "0")
}

// topology describes the lab for people.
func (l *Lab) topology() string {
	var b strings.Builder
	box := func(role, ns, what string) {
		fmt.Fprintf(&b, "  %-8s %-22s %s\n", role, ns, what)
	}
	iface := func(dev string, v4, v6 netip.Addr, note string) {
		line := fmt.Sprintf("  %-8s %-22s   %-6s %-13s %-16s %s", "", "", dev, v4, v6, note)
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	box("client", l.Client, "the MTA: sends mail to "+Domain)
	iface(IfClient, ClientV4, ClientV6, "")
	b.WriteString("     |\n")
	box("gateway", l.Gateway, "tcpnorm runs here (mangle FORWARD)")
	iface(ifGwClient, gatewayV4, gatewayV6, "metrics on "+metricsAddr)
	iface(ifGwPath, gwPathV4, gwPathV6, "")
	b.WriteString("     |\n")
	box("path", l.Path, "the faulty middlebox")
	iface(ifPathGw, pathGwV4, pathGwV6, "")
	iface(ifPathSrv, pathSrvV4, pathSrvV6, "")
	b.WriteString("     |\n")
	box("server", l.Server, "the remote MX, "+MXHost)
	iface(IfServer, ServerV4, ServerV6, "MX "+MXHost)
	iface("", dnsV4, dnsV6, "DNS server for "+Domain)
	iface("", OtherV4, OtherV6, "no DNS name: no policy matches it")
	return b.String()
}

// ServerAddr is the MX host's address (in DNS) for the family.
func ServerAddr(v6 bool) netip.Addr {
	if v6 {
		return ServerV6
	}
	return ServerV4
}

// OtherAddr is a second server address that no DNS name points to: a
// destination no lab policy matches.
func OtherAddr(v6 bool) netip.Addr {
	if v6 {
		return OtherV6
	}
	return OtherV4
}

// DNSAddr is the lab DNS server's address on the server: a third
// destination, where tests can move the MX (SetDNS).
func DNSAddr(v6 bool) netip.Addr {
	if v6 {
		return dnsV6
	}
	return dnsV4
}

// DNSServer is the lab DNS server, as config's [dns] servers wants it.
func DNSServer() string {
	return netip.AddrPortFrom(dnsV4, 53).String()
}

// ConntrackInvalidAll reads the invalid counter of every lab namespace.
func (l *Lab) ConntrackInvalidAll() (map[string]uint64, error) {
	m := make(map[string]uint64)
	for _, ns := range l.Namespaces() {
		v, err := netns.ConntrackInvalid(ns)
		if err != nil {
			return nil, err
		}
		m[ns] = v
	}
	return m, nil
}
