package rules

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newNetns creates a throw-away network namespace, removed when the test
// ends however it ends, and returns a Runner that runs tools inside it.
func newNetns(t *testing.T) Runner {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create a network namespace and edit its iptables rules")
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", SetTool} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed: %v", tool, err)
		}
	}
	name := fmt.Sprintf("tcpnorm-rules-%d-%x", os.Getpid(), rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return Exec{Prefix: []string{"ip", "netns", "exec", name}}
}

func run(t *testing.T, r Runner, stdin, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.Run(ctx, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// saveAll is both families' mangle and filter tables without comments and
// counters, for comparing rule sets.
func saveAll(t *testing.T, r Runner) string {
	t.Helper()
	var b strings.Builder
	for _, f := range Families {
		for _, table := range []string{"mangle", "filter"} {
			for _, line := range strings.Split(run(t, r, "", f.SaveTool(), "-t", table), "\n") {
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				b.WriteString(f.String() + " " + line + "\n")
			}
		}
	}
	return b.String()
}

// saveLines is what iptables-save shows of a ruleset once installed: the
// printed rules, with each jump appended rather than inserted.
func saveLines(rs *Ruleset) []string {
	var out []string
	for _, f := range Families {
		for _, l := range strings.Split(rs.Script(f), "\n") {
			switch {
			case strings.HasPrefix(l, ":"), strings.HasPrefix(l, "-A "):
				out = append(out, f.String()+" "+l)
			case strings.HasPrefix(l, "-I "):
				fields := strings.Fields(l) // -I CHAIN 1 -j TARGET
				out = append(out, f.String()+" -A "+fields[1]+" "+strings.Join(fields[3:], " "))
			}
		}
	}
	slices.Sort(out)
	return out
}

func tcpnormLines(t *testing.T, r Runner) []string {
	t.Helper()
	var out []string
	for _, f := range Families {
		for _, table := range []string{"mangle", "filter"} {
			for _, l := range Lines(run(t, r, "", f.SaveTool(), "-t", table)) {
				out = append(out, f.String()+" "+l)
			}
		}
	}
	// Chain declarations come out in no fixed order.
	slices.Sort(out)
	return out
}

func setNames(t *testing.T, r Runner) []string {
	t.Helper()
	names := strings.Fields(run(t, r, "", SetTool, "list", "-n"))
	slices.Sort(names)
	return names
}

// setMembers lists the members of set name, sorted.
func setMembers(t *testing.T, r Runner, name string) []string {
	t.Helper()
	out := run(t, r, "", SetTool, "list", name)
	_, members, ok := strings.Cut(out, "Members:\n")
	if !ok {
		t.Fatalf("ipset list %s: no members section:\n%s", name, out)
	}
	m := strings.Fields(members)
	slices.Sort(m)
	return m
}

// TestSets: the sets are created before the rules that match them, a
// crashed run's sets (an incompatible one and a half-done update) are
// replaced, updates swap whole contents in, and Uninstall destroys them
// after the rules.
func TestSets(t *testing.T) {
	r := newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rs, err := Build(Spec{Mode: ModeGateway, First: 5, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Leftovers: the live v4 set with another type, a temporary v6 set.
	run(t, r, "create tcpnorm4-q5 hash:ip family inet\nadd tcpnorm4-q5 198.18.9.9\ncreate tcpnorm6-q5-new hash:net family inet6 maxelem 1048576\n", SetTool, "restore")
	if err := Install(ctx, r, rs); err != nil {
		t.Fatalf("Install over stale sets: %v", err)
	}
	if got, want := setNames(t, r), []string{"tcpnorm4-q5", "tcpnorm6-q5"}; !slices.Equal(got, want) {
		t.Fatalf("sets after Install = %q, want %q", got, want)
	}
	if got := setMembers(t, r, "tcpnorm4-q5"); len(got) != 0 {
		t.Errorf("fresh v4 set holds %q", got)
	}
	if out := run(t, r, "", SetTool, "list", "-t", "tcpnorm4-q5"); !strings.Contains(out, "Type: hash:net") {
		t.Errorf("stale hash:ip set not replaced:\n%s", out)
	}

	steps := []struct {
		name     string
		prefixes []string
		v4, v6   []string
	}{
		{name: "first", prefixes: []string{"198.18.3.0/24", "198.18.3.2/32", "2001:2:0:3::2/128"},
			v4: []string{"198.18.3.0/24", "198.18.3.2"}, v6: []string{"2001:2:0:3::2"}},
		{name: "moved", prefixes: []string{"198.18.3.99/32", "2001:2:0:3::99/128", "2001:2:0:4::/64"},
			v4: []string{"198.18.3.99"}, v6: []string{"2001:2:0:3::99", "2001:2:0:4::/64"}},
		{name: "everything", prefixes: []string{"0.0.0.0/0", "::/0"},
			v4: []string{"0.0.0.0/1", "128.0.0.0/1"}, v6: []string{"8000::/1", "::/1"}},
		{name: "empty"},
	}
	for _, st := range steps {
		var ps []netip.Prefix
		for _, p := range st.prefixes {
			ps = append(ps, netip.MustParsePrefix(p))
		}
		if err := UpdateSets(ctx, r, rs.Spec, ps); err != nil {
			t.Fatalf("%s: UpdateSets: %v", st.name, err)
		}
		if got := setMembers(t, r, "tcpnorm4-q5"); !slices.Equal(got, st.v4) {
			t.Errorf("%s: v4 set = %q, want %q", st.name, got, st.v4)
		}
		if got := setMembers(t, r, "tcpnorm6-q5"); !slices.Equal(got, st.v6) {
			t.Errorf("%s: v6 set = %q, want %q", st.name, got, st.v6)
		}
		if got, want := setNames(t, r), []string{"tcpnorm4-q5", "tcpnorm6-q5"}; !slices.Equal(got, want) {
			t.Errorf("%s: sets = %q, want %q (no temporary set left)", st.name, got, want)
		}
	}

	// The rules hold the sets: they cannot go first.
	if err := RemoveSets(ctx, r, rs.Spec); err == nil {
		t.Errorf("RemoveSets with rules matching the sets: no error")
	}
	if err := Uninstall(ctx, r, rs.Spec); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	if got := setNames(t, r); len(got) != 0 {
		t.Errorf("after Uninstall, sets left: %q", got)
	}
	if got := tcpnormLines(t, r); len(got) != 0 {
		t.Errorf("after Uninstall, rules left: %q", got)
	}
}

// operatorRules puts rules of the operator's into both families, including
// ones in the chains tcpnorm jumps from and a rule that looks like a jump of
// tcpnorm's but is not.
func operatorRules(t *testing.T, r Runner) {
	t.Helper()
	for _, f := range Families {
		run(t, r, `*mangle
:OPERATOR - [0:0]
-A FORWARD -p udp -j MARK --set-xmark 0x1/0xff
-A OUTPUT -p tcp -m tcp --dport 25 -j OPERATOR
-A INPUT -p tcp -j ACCEPT
-A OPERATOR -j MARK --set-xmark 0x2/0xff
COMMIT
*filter
-A FORWARD -p tcp -j ACCEPT
COMMIT
`, f.RestoreTool(), "-w", "--noflush")
	}
}

func TestInstallRemove(t *testing.T) {
	r := newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	operatorRules(t, r)
	before := saveAll(t, r)

	gw, err := Build(Spec{Mode: ModeGateway, First: 3, Count: 2, Mark: 0xff000000})
	if err != nil {
		t.Fatal(err)
	}
	wantGW := saveLines(gw)
	for _, f := range Families {
		for _, l := range []string{
			" :TCPNORM-FWD - [0:0]",
			" -A FORWARD -j TCPNORM-FWD",
			" -A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm" + f.String()[3:] + "-q3 src -j NFQUEUE --queue-balance 3:4 --queue-bypass",
			" -A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm" + f.String()[3:] + "-q3 dst -j NFQUEUE --queue-balance 3:4 --queue-bypass",
			" -A FORWARD -j TCPNORM-SAVE",
			" -A TCPNORM-SAVE -p tcp -m tcp --tcp-flags SYN SYN -m mark ! --mark 0x0/0x3f000000 -j CONNMARK --save-mark --nfmask 0x3f000000 --ctmask 0x3f000000",
			" -A TCPNORM-FLOW -m mark --mark 0x60000000/0x60000000 -m mark ! --mark 0x0/0xf000000 -j NFQUEUE --queue-balance 5:6 --queue-bypass",
		} {
			if !slices.Contains(wantGW, f.String()+l) {
				t.Fatalf("ruleset lacks %s%s", f, l)
			}
		}
	}
	if err := Install(ctx, r, gw); err != nil {
		t.Fatalf("Install: %v", err)
	}
	if diff := cmp.Diff(wantGW, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after Install, tcpnorm rules (-want +got):\n%s", diff)
	}
	// The jump goes first, before the operator's rules in FORWARD.
	save := run(t, r, "", "iptables-save", "-t", "mangle")
	if i, j := strings.Index(save, "-A FORWARD -j TCPNORM-FWD"), strings.Index(save, "-A FORWARD -p udp"); i < 0 || j < 0 || i > j {
		t.Errorf("jump not first in FORWARD:\n%s", save)
	}

	// A crashed run left duplicates and a stale chain rule: a new Install
	// replaces them.
	for _, f := range Families {
		run(t, r, "", f.Tool(), "-w", "-t", "mangle", "-A", "FORWARD", "-j", "TCPNORM-FWD")
		run(t, r, "", f.Tool(), "-w", "-t", "mangle", "-A", "TCPNORM-FWD", "-j", "ACCEPT")
	}
	// In place: no iptables command of its own removes a rule or chain
	// before the restore that puts the new ones in (the flows a killed
	// daemon left would pass without rules in between).
	rec := &recordingRunner{Runner: r}
	if err := Install(ctx, rec, gw); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	if diff := cmp.Diff(wantGW, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after reinstall over stale rules (-want +got):\n%s", diff)
	}
	for _, c := range rec.calls {
		for _, f := range Families {
			if strings.HasPrefix(c, f.Tool()+" ") {
				t.Errorf("reinstall ran %q besides its restores; all calls:\n%s", c, strings.Join(rec.calls, "\n"))
			}
		}
	}

	// Switching mode replaces the gateway rules with the host rules.
	host, err := Build(Spec{Mode: ModeHost, First: 0, Count: 1, Mark: 0x0000ff00})
	if err != nil {
		t.Fatal(err)
	}
	if err := Install(ctx, r, host); err != nil {
		t.Fatalf("Install host: %v", err)
	}
	wantHost := saveLines(host)
	for _, f := range Families {
		for _, l := range []string{
			" -A INPUT -j TCPNORM-IN",
			" -A OUTPUT -j TCPNORM-OUT",
			" -A INPUT -j TCPNORM-SAVE",
			" -A OUTPUT -j TCPNORM-SAVE",
			" -A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm" + f.String()[3:] + "-q0 src -j NFQUEUE --queue-num 0 --queue-bypass",
			" -A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -m set --match-set tcpnorm" + f.String()[3:] + "-q0 dst -j NFQUEUE --queue-num 0 --queue-bypass",
			" -A TCPNORM-FLOW -m mark --mark 0x0/0x6000 -m mark ! --mark 0x0/0xf00 -j NFQUEUE --queue-num 1 --queue-bypass",
			" -A TCPNORM-OUT -m mark --mark 0x800000/0x800000 -j RETURN",
			" -A TCPNORM-IN -m connmark --mark 0x800000/0x800000 -j RETURN",
		} {
			if !slices.Contains(wantHost, f.String()+l) {
				t.Fatalf("ruleset lacks %s%s", f, l)
			}
		}
	}
	if diff := cmp.Diff(wantHost, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after host Install (-want +got):\n%s", diff)
	}

	// The gateway's sets stay (another queue range's names); the host's
	// exist, empty.
	if got, want := setNames(t, r), []string{"tcpnorm4-q0", "tcpnorm4-q3", "tcpnorm6-q0", "tcpnorm6-q3"}; !slices.Equal(got, want) {
		t.Errorf("sets after host Install = %q, want %q", got, want)
	}
	if err := RemoveSets(ctx, r, gw.Spec); err != nil {
		t.Fatalf("RemoveSets of the gateway's: %v", err)
	}
	if err := Uninstall(ctx, r, host.Spec); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	if got := setNames(t, r); len(got) != 0 {
		t.Errorf("after Uninstall, sets left: %q", got)
	}
	if err := Remove(ctx, r); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if got := tcpnormLines(t, r); len(got) != 0 {
		t.Errorf("after Remove, tcpnorm rules left: %q", got)
	}
	if diff := cmp.Diff(before, saveAll(t, r)); diff != "" {
		t.Errorf("operator's rules changed (-before +after):\n%s", diff)
	}
	// Removing twice is fine.
	if err := Remove(ctx, r); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestProbeRules: a probe's rules and the daemon's live side by side in
// one namespace; removing either leaves the other's and the operator's
// rules exactly as they were; the probe lock tells a running probe from
// leftovers.
func TestProbeRules(t *testing.T) {
	r := newNetns(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	operatorRules(t, r)
	before := saveAll(t, r)

	host, err := Build(Spec{Mode: ModeHost, First: 0, Count: 2, Mark: 0xff000000})
	if err != nil {
		t.Fatal(err)
	}
	probe, err := BuildProbe(65000)
	if err != nil {
		t.Fatal(err)
	}
	wantProbe := saveLines(probe)
	for _, f := range Families {
		for _, l := range []string{
			" -A OUTPUT -j TCPNORM-PROBE-OUT",
			" -A INPUT -j TCPNORM-PROBE-IN",
			" -A TCPNORM-PROBE-OUT -m mark ! --mark 0x800000/0x800000 -j RETURN",
			" -A TCPNORM-PROBE-OUT -p tcp -m tcp --tcp-flags SYN SYN -j CONNMARK --save-mark --nfmask 0x800000 --ctmask 0x800000",
			" -A TCPNORM-PROBE-OUT -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE --queue-num 65000 --queue-bypass",
			" -A TCPNORM-PROBE-IN -m connmark ! --mark 0x800000/0x800000 -j RETURN",
			" -A TCPNORM-PROBE-IN -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE --queue-num 65000 --queue-bypass",
			" -A TCPNORM-PROBE-SAVE -p tcp -m tcp --tcp-flags SYN SYN -m mark --mark 0x800000/0x800000 -m mark ! --mark 0x0/0x1f8000 -j CONNMARK --save-mark --nfmask 0x1f8000 --ctmask 0x1f8000",
		} {
			if !slices.Contains(wantProbe, f.String()+l) {
				t.Fatalf("probe ruleset lacks %s%s\n%s", f, l, strings.Join(wantProbe, "\n"))
			}
		}
	}
	if err := Install(ctx, r, host); err != nil {
		t.Fatalf("Install: %v", err)
	}
	daemonOnly := tcpnormLines(t, r)
	if err := InstallProbe(ctx, r, probe); err != nil {
		t.Fatalf("InstallProbe: %v", err)
	}
	both := append(append([]string(nil), saveLines(host)...), wantProbe...)
	slices.Sort(both)
	if diff := cmp.Diff(both, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("daemon and probe rules (-want +got):\n%s", diff)
	}
	// A daemon (re)start removes its own rules only.
	if err := Install(ctx, r, host); err != nil {
		t.Fatalf("Install again: %v", err)
	}
	if diff := cmp.Diff(both, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after the daemon's reinstall (-want +got):\n%s", diff)
	}
	if err := RemoveProbe(ctx, r); err != nil {
		t.Fatalf("RemoveProbe: %v", err)
	}
	if diff := cmp.Diff(daemonOnly, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after RemoveProbe, the daemon's rules (-want +got):\n%s", diff)
	}
	if err := InstallProbe(ctx, r, probe); err != nil {
		t.Fatalf("InstallProbe: %v", err)
	}
	if err := Uninstall(ctx, r, host.Spec); err != nil {
		t.Fatalf("Uninstall: %v", err)
	}
	if diff := cmp.Diff(wantProbe, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after the daemon's Uninstall, the probe's rules (-want +got):\n%s", diff)
	}

	// The lock: held by a running probe, leftovers removed only when free.
	ProbeLockDir = t.TempDir()
	l, held, err := TryProbeLock()
	if err != nil || held {
		t.Fatalf("TryProbeLock: held %v, %v", held, err)
	}
	if _, held, err := TryProbeLock(); err != nil || !held {
		t.Fatalf("second TryProbeLock: held %v, %v; want held", held, err)
	}
	// RemoveProbeLeftovers runs in this process's namespace, not r's: the
	// lock is what is checked here.
	if err := RemoveProbeLeftovers(ctx, r); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantProbe, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("leftovers removed while the probe lock was held (-want +got):\n%s", diff)
	}
	l.Unlock()
	if err := RemoveProbeLeftovers(ctx, r); err != nil {
		t.Fatal(err)
	}
	if got := tcpnormLines(t, r); len(got) != 0 {
		t.Fatalf("leftovers not removed: %q", got)
	}
	// Nobody holds the lock: its file is gone.
	if left, _ := filepath.Glob(filepath.Join(ProbeLockDir, "*")); len(left) != 0 {
		t.Errorf("lock files left: %v", left)
	}
	if after := saveAll(t, r); after != before {
		t.Errorf("the operator's rules changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// recordingRunner records the command lines it runs.
type recordingRunner struct {
	Runner
	calls []string
}

func (r *recordingRunner) Run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	r.calls = append(r.calls, strings.Join(append([]string{name}, args...), " "))
	return r.Runner.Run(ctx, stdin, name, args...)
}
