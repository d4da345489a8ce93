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
	"syscall"
	"testing"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
	"github.com/tcpnorm/tcpnorm/rules"
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

// threadPrivileges reads the user and capability sets of every thread of
// pid and fails unless all have the same.
func threadPrivileges(t *testing.T, pid int) (uid string, eff, prm, bnd, amb uint64, nnp string) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of %d: %v (%d)", pid, err, len(tasks))
	}
	first := ""
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // the thread ended
		}
		var lines []string
		for _, ln := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(ln, ":")
			v = strings.TrimSpace(v)
			switch k {
			case "Uid":
				uid = strings.Join(strings.Fields(v), " ")
			case "CapEff":
				fmt.Sscanf(v, "%x", &eff)
			case "CapPrm":
				fmt.Sscanf(v, "%x", &prm)
			case "CapBnd":
				fmt.Sscanf(v, "%x", &bnd)
			case "CapAmb":
				fmt.Sscanf(v, "%x", &amb)
			case "NoNewPrivs":
				nnp = v
			default:
				continue
			}
			lines = append(lines, ln)
		}
		got := strings.Join(lines, "; ")
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("thread %s differs: %s, main thread: %s", f, got, first)
		}
	}
	t.Logf("%d threads: %s", len(tasks), first)
	return uid, eff, prm, bnd, amb, nnp
}

// TestPrivilegesDropped: started as plain root, the daemon keeps only
// CAP_NET_ADMIN and CAP_NET_RAW (effective, permitted, bounding, ambient)
// with no_new_privs in every thread; with user = "nobody" it also runs as
// nobody. Either way it fixes a transfer, writes its evidence, reloads,
// shows its privileges in status and removes its rules on exit.
func TestPrivilegesDropped(t *testing.T) {
	l := newLab(t, lab.FaultWScale)
	const kept = capNetAdmin | capNetRaw
	// A daemon hands the probe's lock directory to its user; the last
	// one here, and the cleanup, give it back to root.
	t.Cleanup(func() { os.Chown(rules.ProbeLockDir, 0, 0) })
	for _, tc := range []struct{ name, user, uid string }{
		{"user", "nobody", "65534 65534 65534 65534"},
		{"root", "", "0 0 0 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, bin := publicDir(t)
			pol := lab.FixPolicy(lab.FaultWScale, false, normalize.Enforce)
			pol.Evidence = true
			d, err := l.StartDaemonWith(context.Background(), lab.DaemonOptions{User: tc.user}, bin, dir, []lab.Policy{pol}, readyTimeout)
			if err != nil {
				t.Fatalf("StartDaemonWith: %v", err)
			}
			t.Cleanup(func() { stopDaemon(t, l, d) })
			uid, eff, prm, bnd, amb, nnp := threadPrivileges(t, d.Pid())
			if uid != tc.uid || eff != kept || prm != kept || bnd != kept || amb != kept || nnp != "1" {
				t.Errorf("Uid %s CapEff %#x CapPrm %#x CapBnd %#x CapAmb %#x NoNewPrivs %s; want Uid %s, %#x in each set, no_new_privs",
					uid, eff, prm, bnd, amb, nnp, tc.uid, kept)
			}
			if r, _, _ := transfer(t, l, lab.Transfer{Dst: lab.ServerAddr(false), Size: size, Dir: lab.Upload, Timeout: okTimeout}); !r.OK {
				t.Errorf("through the wscale fault: %s", r)
			}
			_, mark := d.LogLines(0)
			if err := d.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			if _, ok := waitReload(t, d, mark); !ok {
				t.Errorf("reload refused:\n%s", d.Log())
			}
			if r, _, _ := transfer(t, l, lab.Transfer{Dst: lab.ServerAddr(false), Size: size, Dir: lab.Upload, Timeout: okTimeout}); !r.OK {
				t.Errorf("after the reload: %s", r)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(d.EvidenceFile(pol.Name), &st); err != nil || fmt.Sprint(st.Uid) != strings.Fields(tc.uid)[0] {
				t.Errorf("evidence file: %v, owner %d; want one written by uid %s", err, st.Uid, strings.Fields(tc.uid)[0])
			}
			out, err := exec.Command("ip", "netns", "exec", l.Gateway, tcpnormBin, "status", "-c", filepath.Join(d.Dir, "tcpnorm.toml")).CombinedOutput()
			t.Logf("tcpnorm status:\n%s", out)
			want := "privileges: uid " + strings.Fields(tc.uid)[0] + ","
			if err != nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "capabilities cap_net_admin,cap_net_raw (permitted cap_net_admin,cap_net_raw, bounding cap_net_admin,cap_net_raw") {
				t.Errorf("tcpnorm status: %v, want %q and the two capabilities:\n%s", err, want, out)
			}
		})
	}
}
