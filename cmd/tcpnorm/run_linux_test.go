package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcpnorm/tcpnorm/rules"
)

// syncBuffer collects a child's output while the test reads it.
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

func (s *syncBuffer) waitFor(t *testing.T, token string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(s.String(), token) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v; output:\n%s", token, d, s.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func netnsExec(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// setMembers is the members of set name in ns, sorted, space-separated.
func setMembers(t *testing.T, ns, name string) string {
	t.Helper()
	_, members, _ := strings.Cut(netnsExec(t, ns, "ipset", "list", name), "Members:\n")
	m := strings.Fields(members)
	slices.Sort(m)
	return strings.Join(m, " ")
}

func checkSet(t *testing.T, ns, name, want string) {
	t.Helper()
	if got := setMembers(t, ns, name); got != want {
		t.Errorf("set %s holds %q, want %q", name, got, want)
	}
}

// waitSet waits up to 5 s for set name to hold want.
func waitSet(t *testing.T, ns, name, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for setMembers(t, ns, name) != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	checkSet(t, ns, name, want)
}

func tcpnormRules(t *testing.T, ns string) []string {
	t.Helper()
	var got []string
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		for _, table := range []string{"mangle", "filter"} {
			for _, l := range rules.Lines(netnsExec(t, ns, tool, "-t", table)) {
				got = append(got, tool+" "+l)
			}
		}
	}
	slices.Sort(got)
	return got
}

// TestRunDaemon runs the real binary in a namespace: it replaces a crashed
// run's stale rules, binds its queues, says ready (log line and sd_notify),
// reloads on SIGHUP and removes its rules, and only its rules, on SIGTERM.
func TestRunDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create a network namespace, bind queues and install rules")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "ipset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: %v", tool, err)
		}
	}
	bin := buildBinary(t)
	ns := fmt.Sprintf("tcpnorm-run-%d-%x", os.Getpid(), rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	netnsExec(t, ns, "ip", "link", "set", "lo", "up")

	// The operator's rule, and what a crashed run left behind.
	for _, tool := range []string{"iptables", "ip6tables"} {
		netnsExec(t, ns, tool, "-w", "-t", "mangle", "-A", "FORWARD", "-p", "udp", "-j", "MARK", "--set-mark", "1")
		netnsExec(t, ns, tool, "-w", "-t", "mangle", "-N", "TCPNORM-FWD")
		netnsExec(t, ns, tool, "-w", "-t", "mangle", "-A", "TCPNORM-FWD", "-j", "ACCEPT")
		netnsExec(t, ns, tool, "-w", "-t", "mangle", "-A", "FORWARD", "-j", "TCPNORM-FWD")
		netnsExec(t, ns, tool, "-w", "-t", "mangle", "-A", "FORWARD", "-j", "TCPNORM-FWD")
	}

	// A crashed run's set, of another type.
	netnsExec(t, ns, "ipset", "create", "tcpnorm4-q20", "hash:ip")

	cfg := writeConfig(t, `[queue]
first = 20
count = 2
[rules]
mode = "gateway"
[metrics]
listen = ""
[log]
level = "info"
format = "text"
`)
	pd := filepath.Join(filepath.Dir(cfg), "policies.d")
	if err := os.WriteFile(filepath.Join(pd, "a.toml"), []byte("cidrs = [\"198.18.3.0/24\", \"2001:2:0:3::/64\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notify := filepath.Join(t.TempDir(), "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	var out syncBuffer
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "run", "-c", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()

	out.waitFor(t, " msg=ready ", 20*time.Second)
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, err := ln.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "READY=1\n") {
		t.Errorf("sd_notify: got %q, %v; want READY=1 first", buf[:n], err)
	}

	got := tcpnormRules(t, ns)
	fam := map[string]string{"iptables-save": "4", "ip6tables-save": "6"}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		for _, l := range []string{
			" :TCPNORM-FWD - [0:0]",
			" -A FORWARD -j TCPNORM-FWD",
			" -A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm" + fam[tool] + "-q20 src -j NFQUEUE --queue-balance 20:21 --queue-bypass",
			" -A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm" + fam[tool] + "-q20 dst -j NFQUEUE --queue-balance 20:21 --queue-bypass",
			" -A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN NONE -m connmark ! --mark 0x0/0x3f000000 -j TCPNORM-FLOW",
			" -A TCPNORM-FLOW -m mark --mark 0x60000000/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-balance 22:23 --queue-bypass",
			" -A FORWARD -j TCPNORM-SAVE",
		} {
			if !slices.Contains(got, tool+l) {
				t.Errorf("rules while running lack %s%s; have:\n%s", tool, l, strings.Join(got, "\n"))
			}
		}
	}
	queues := netnsExec(t, ns, "cat", "/proc/net/netfilter/nfnetlink_queue")
	var bound []string
	for _, l := range strings.Split(strings.TrimSpace(queues), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			bound = append(bound, f[0])
		}
	}
	if diff := cmp.Diff([]string{"20", "21", "22", "23"}, bound); diff != "" {
		t.Errorf("bound queues (-want +got):\n%s\n%s", diff, queues)
	}

	checkSet(t, ns, "tcpnorm4-q20", "198.18.3.0/24")
	checkSet(t, ns, "tcpnorm6-q20", "2001:2:0:3::/64")

	// A reload adding a peer adds it to the sets at once.
	if err := os.WriteFile(filepath.Join(pd, "b.toml"), []byte("cidrs = [\"198.18.4.7/32\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	out.waitFor(t, " msg=reloaded ", 10*time.Second)
	waitSet(t, ns, "tcpnorm4-q20", "198.18.3.0/24 198.18.4.7")

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM:\n%s", out.String())
	}
	if got := tcpnormRules(t, ns); len(got) != 0 {
		t.Errorf("rules left after exit: %q", got)
	}
	if sets := strings.Fields(netnsExec(t, ns, "ipset", "list", "-n")); len(sets) != 0 {
		t.Errorf("sets left after exit: %q", sets)
	}
	for _, tool := range []string{"iptables-save", "ip6tables-save"} {
		if s := netnsExec(t, ns, tool, "-t", "mangle"); !strings.Contains(s, "-A FORWARD -p udp -j MARK --set-xmark 0x1/0xffffffff") {
			t.Errorf("%s: operator's rule gone:\n%s", tool, s)
		}
	}
	if s := out.String(); strings.Contains(s, "level=ERROR") {
		t.Errorf("errors logged:\n%s", s)
	}
}
