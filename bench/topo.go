package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/tcpnorm/tcpnorm/lab"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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

const netnsDir = "/var/run/netns"

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
	CleanStale(ctx)
	var rb [3]byte
	rand.Read(rb[:])
	name := fmt.Sprintf("%s-%d-%s", Prefix, os.Getpid(), hex.EncodeToString(rb[:]))
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
		if _, err := lab.Run(ctx, "", "ip", "netns", "add", ns); err != nil {
			return err
		}
	}
	root := fmt.Sprintf("link add name %s netns %s type veth peer name %s netns %s\n", ifToGateway, t.Client, IfGwClient, t.Gateway) +
		fmt.Sprintf("link add name %s netns %s type veth peer name %s netns %s\n", ifToGateway, t.Server, IfGwServer, t.Gateway)
	if _, err := lab.RunInput(ctx, "", root, "ip", "-batch", "-"); err != nil {
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
		if _, err := lab.RunInput(ctx, "", b, "ip", "-n", ns, "-batch", "-"); err != nil {
			return err
		}
	}
	// Conntrack is on in the gateway in every configuration (tcpnorm's
	// rules need it), with a short TIME_WAIT so that short connections do
	// not fill the table.
	if _, err := lab.RunInput(ctx, t.Gateway, "*filter\n-A FORWARD -m conntrack --ctstate INVALID\nCOMMIT\n", "iptables-restore", "--noflush"); err != nil {
		return err
	}
	if err := lab.WriteSysctl(t.Gateway, "net.ipv4.ip_forward", "1",
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1",
		"net.netfilter.nf_conntrack_tcp_timeout_close", "1"); err != nil {
		return err
	}
	if err := lab.WriteSysctl(t.Client, "net.ipv4.tcp_tw_reuse", "1",
		"net.ipv4.ip_local_port_range", "1024 65000"); err != nil {
		return err
	}
	return nil
}

// Close kills processes left in the namespaces and deletes them. Safe to
// call more than once.
func (t *Topo) Close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, ns := range t.namespaces() {
		if _, err := os.Stat(netnsDir + "/" + ns); err != nil {
			continue
		}
		killNetnsProcs(ctx, ns)
		if _, err := lab.Run(ctx, "", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func killNetnsProcs(ctx context.Context, ns string) {
	out, err := lab.Run(ctx, "", "ip", "netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// CleanStale deletes namespaces of harness runs whose process is gone.
func CleanStale(ctx context.Context) {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), Prefix+"-")
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		killNetnsProcs(ctx, e.Name())
		lab.Run(ctx, "", "ip", "netns", "del", e.Name())
	}
}

// ReadNetnsFile reads a /proc/thread-self/net/... file as seen in ns.
func ReadNetnsFile(ns, name string) (string, error) {
	var s string
	err := lab.InNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/" + name)
		s = string(b)
		return err
	})
	return s, err
}

// Proc is a long-running program in a namespace. `ip netns exec` execs the
// program, so Pid is the program's own.
type Proc struct {
	Name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    []string
	ready  chan struct{}
	exited chan struct{}
	err    error
}

// Start starts args in ns and waits until it prints a line containing
// readyWord (when not empty) or exits.
func Start(ctx context.Context, ns, readyWord string, timeout time.Duration, args ...string) (*Proc, error) {
	p := &Proc{Name: args[0], ready: make(chan struct{}), exited: make(chan struct{})}
	full := append([]string{"ip", "netns", "exec", ns}, args...)
	p.cmd = exec.Command(full[0], full[1:]...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(args, " "), err)
	}
	go p.read(r, readyWord)
	if readyWord == "" {
		return p, nil
	}
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before ready (%v): %s", strings.Join(args, " "), p.err, p.Output())
	case <-tm.C:
		p.Stop()
		return nil, fmt.Errorf("%s not ready after %s: %s", strings.Join(args, " "), timeout, p.Output())
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

func (p *Proc) read(r io.Reader, readyWord string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	readied := readyWord == ""
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.out) < 10000 {
			p.out = append(p.out, line)
		}
		p.mu.Unlock()
		if !readied && strings.Contains(line, readyWord) {
			readied = true
			close(p.ready)
		}
	}
	p.err = p.cmd.Wait()
	close(p.exited)
}

// Pid is the program's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Output is what the program printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// Lines is what the program printed so far, line by line.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.out...)
}

// Stop sends SIGTERM and waits (SIGKILL after 10s).
func (p *Proc) Stop() error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s ignored SIGTERM: killed", p.Name)
	}
	return p.err
}
