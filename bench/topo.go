//go:build linux

package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tcpnorm/tcpnorm/internal/netns"
)

// Prefix starts the name of every namespace the harness creates.
const Prefix = "tnbench"

// Addresses and interfaces of the topology:
//
//	client gw0 198.18.1.2 (+ SrcCount addresses from SrcFirst)
//	  -- cli0 198.18.1.1 gateway srv0 198.18.2.1 --
//	gw0 198.18.2.2 server
var (
	ClientAddr  = netip.MustParseAddr("198.18.1.2")
	SrcFirst    = netip.MustParseAddr("198.18.1.10")
	GwClient    = netip.MustParseAddr("198.18.1.1")
	GwServer    = netip.MustParseAddr("198.18.2.1")
	ServerAddr  = netip.MustParseAddr("198.18.2.2")
	ServerCIDR  = "198.18.2.0/24"
	IfGwClient  = "cli0" // gateway's link to the client
	IfGwServer  = "srv0" // gateway's link to the server
	ifToGateway = "gw0"  // client's and server's link to the gateway
)

// OtherCIDR is in no namespace: T0's policy is for it.
const OtherCIDR = "198.18.100.0/24"

// Topo is the three namespaces of one harness run.
type Topo struct {
	Name                    string
	Client, Gateway, Server string
	Srcs                    []netip.Addr // the client's source addresses for load
}

// NewTopo builds the topology with nsrc extra client addresses. It first
// removes namespaces of dead harness runs. On error nothing is left.
func NewTopo(ctx context.Context, nsrc int) (*Topo, error) {
	if nsrc < 1 || nsrc > 200 {
		return nil, fmt.Errorf("bench: %d source addresses: want 1..200", nsrc)
	}
	name, err := netns.NewName(ctx, Prefix)
	if err != nil {
		return nil, err
	}
	t := &Topo{Name: name, Client: name + "-c", Gateway: name + "-g", Server: name + "-s"}
	a := SrcFirst
	for range nsrc {
		t.Srcs = append(t.Srcs, a)
		a = a.Next()
	}
	if err := t.build(ctx); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

func (t *Topo) namespaces() []string { return []string{t.Client, t.Gateway, t.Server} }

func (t *Topo) build(ctx context.Context) error {
	for _, ns := range t.namespaces() {
		if _, err := netns.Run(ctx, "", "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	root := fmt.Sprintf("link add name %s netns %s type veth peer name %s netns %s\n", ifToGateway, t.Client, IfGwClient, t.Gateway) +
		fmt.Sprintf("link add name %s netns %s type veth peer name %s netns %s\n", ifToGateway, t.Server, IfGwServer, t.Gateway)
	if _, err := netns.RunInput(ctx, "", root, "ip", "-batch", "-"); err != nil {
		return err
	}
	var c strings.Builder
	c.WriteString("link set lo up\nlink set gw0 up\n")
	fmt.Fprintf(&c, "addr add %s/24 dev gw0\n", ClientAddr)
	for _, s := range t.Srcs {
		fmt.Fprintf(&c, "addr add %s/24 dev gw0\n", s)
	}
	fmt.Fprintf(&c, "route add 198.18.0.0/15 via %s\n", GwClient)
	g := fmt.Sprintf("link set lo up\nlink set %s up\nlink set %s up\naddr add %s/24 dev %s\naddr add %s/24 dev %s\n",
		IfGwClient, IfGwServer, GwClient, IfGwClient, GwServer, IfGwServer)
	s := fmt.Sprintf("link set lo up\nlink set gw0 up\naddr add %s/24 dev gw0\nroute add 198.18.0.0/15 via %s\n", ServerAddr, GwServer)
	for ns, b := range map[string]string{t.Client: c.String(), t.Gateway: g, t.Server: s} {
		if _, err := netns.RunInput(ctx, "", b, "ip", "-n", ns, "-batch", "-"); err != nil {
			return err
		}
	}
	// Conntrack is on in the gateway in every configuration (tcpnorm's
	// rules need it), with a short TIME_WAIT so that short connections do
	// not fill the table.
	if _, err := netns.RunInput(ctx, t.Gateway, "*filter\n-A FORWARD -m conntrack --ctstate INVALID\nCOMMIT\n", "iptables-restore", "--noflush"); err != nil {
		return err
	}
	if err := netns.WriteSysctl(t.Gateway, "net.ipv4.ip_forward", "1",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1",
		"net.netfilter.nf_conntrack_tcp_timeout_close", "1"); err != nil {
		return err
	}
	if err := netns.WriteSysctl(t.Client, "net.ipv4.tcp_tw_reuse", "1",
		"net.ipv4.ip_local_port_range", "1024 65000"); err != nil {
		return err
	}
	return nil
}

// Close kills processes left in the namespaces and deletes them. Safe to
// call more than once.
func (t *Topo) Close() error { return netns.DeleteNamespaces(t.namespaces()...) }
