//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

// unprivileged runs a command as nobody with CAP_NET_ADMIN and CAP_NET_RAW
// as its only capabilities, as examples/tcpnorm.service does with systemd
// (the ambient set passes them on to iptables-restore and ipset;
// iptables' set match opens a raw socket to look the sets up by name).
var unprivileged = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
	"--inh-caps=-all,+net_admin,+net_raw", "--ambient-caps=-all,+net_admin,+net_raw", "--bounding-set=-all,+net_admin,+net_raw", "--no-new-privs"}

// capNetAdmin and capNetRaw are CAP_NET_ADMIN's and CAP_NET_RAW's bits in
// /proc/PID/status's capability sets.
const (
	capNetAdmin = 1 << 12
	capNetRaw   = 1 << 13
)

// publicDir makes a directory everyone can read, holding a copy of the
// tcpnorm binary, for a daemon running as nobody.
func publicDir(t *testing.T) (dir, bin string) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("no tcpnorm binary: %v", buildErr)
	}
	dir, err := os.MkdirTemp("", "tcpnorm-e2e-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tcpnormBin)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "tcpnorm")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// procStatus reads the Uid line and the effective capabilities of pid.
func procStatus(t *testing.T, pid int) (uid string, capEff uint64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(ln, ":")
		switch k {
		case "Uid":
			uid = strings.Join(strings.Fields(v), " ")
		case "CapEff":
			fmt.Sscanf(strings.TrimSpace(v), "%x", &capEff)
		}
	}
	return uid, capEff
}

// TestUnprivileged: tcpnorm running as nobody with only CAP_NET_ADMIN and
// CAP_NET_RAW binds its queues, installs its address sets and rules, fixes
// a transfer through the wscale fault and removes its rules on SIGTERM.
func TestUnprivileged(t *testing.T) {
	l := newLab(t, lab.FaultWScale)
	dir, bin := publicDir(t)
	d, err := l.StartDaemonWith(context.Background(), lab.DaemonOptions{Prefix: unprivileged}, bin, dir, []lab.Policy{lab.FixPolicy(lab.FaultWScale, false, normalize.Enforce)}, readyTimeout)
	if err != nil {
		t.Fatalf("StartDaemonWith: %v", err)
	}
	t.Cleanup(func() { stopDaemon(t, l, d) })
	uid, caps := procStatus(t, d.Pid())
	t.Logf("daemon: Uid %s, CapEff %#x", uid, caps)
	if uid != "65534 65534 65534 65534" || caps != capNetAdmin|capNetRaw {
		t.Errorf("daemon runs with Uid %s, CapEff %#x; want nobody (65534) with only CAP_NET_ADMIN and CAP_NET_RAW (%#x)", uid, caps, capNetAdmin|capNetRaw)
	}
	if rules, err := l.TcpnormRules(context.Background()); err != nil || len(rules) == 0 {
		t.Errorf("no rules installed by the unprivileged daemon (%v)", err)
	}
	r, _, sseg := transfer(t, l, lab.Transfer{Dst: lab.ServerAddr(false), Size: size, Dir: lab.Upload, Timeout: okTimeout})
	if !r.OK {
		t.Errorf("through the wscale fault with the unprivileged daemon: %s", r)
	}
	if syn, ok := firstSYN(sseg, lab.ServerAddr(false), false); !ok || syn.WScale >= 0 {
		t.Errorf("server received SYN [%s] (seen %v); want window scale stripped", syn.Options, ok)
	}
}

// TestBadConfigAtStart: a config error at start, as root or unprivileged,
// exits 1 with FILE:LINE:COL and leaves no rules behind.
func TestBadConfigAtStart(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	dir, bin := publicDir(t)
	cfg := filepath.Join(dir, "tcpnorm.toml")
	text := strings.Replace(lab.ConfigText(), "[queue]\n", "[queue]\nfirts = 3\n", 1)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "policies.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	line := strings.Count(text[:strings.Index(text, "firts")], "\n") + 1
	want := fmt.Sprintf("%s:%d:1: ", cfg, line)
	for _, tc := range []struct {
		name   string
		prefix []string
	}{{"root", nil}, {"unprivileged", unprivileged}} {
		t.Run(tc.name, func(t *testing.T) {
			argv := append(append([]string{"ip", "netns", "exec", l.Gateway}, tc.prefix...), bin, "run", "-c", cfg)
			out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit: %v, want status 1", err)
			}
			t.Logf("output: %s", strings.TrimSpace(string(out)))
			if !strings.Contains(string(out), want) {
				t.Errorf("output does not name %q:\n%s", want, out)
			}
			if rules, err := l.TcpnormRules(context.Background()); err != nil || len(rules) != 0 {
				t.Errorf("rules after a failed start (%v):\n%s", err, strings.Join(rules, "\n"))
			}
		})
	}
}
