package rules

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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
	for _, tool := range []string{"ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"} {
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
			" -A TCPNORM-FWD -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE --queue-balance 3:4 --queue-bypass",
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
	if err := Install(ctx, r, gw); err != nil {
		t.Fatalf("second Install: %v", err)
	}
	if diff := cmp.Diff(wantGW, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after reinstall over stale rules (-want +got):\n%s", diff)
	}

	// Switching mode replaces the gateway rules with the host rules.
	host, err := Build(Spec{Mode: ModeHost, First: 0, Count: 1, Mark: 0x00ff0000})
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
			" -A TCPNORM-IN -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE --queue-num 0 --queue-bypass",
			" -A TCPNORM-OUT -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE --queue-num 0 --queue-bypass",
			" -A TCPNORM-FLOW -m mark --mark 0x0/0x600000 -m mark ! --mark 0x0/0xf0000 -j NFQUEUE --queue-num 1 --queue-bypass",
		} {
			if !slices.Contains(wantHost, f.String()+l) {
				t.Fatalf("ruleset lacks %s%s", f, l)
			}
		}
	}
	if diff := cmp.Diff(wantHost, tcpnormLines(t, r)); diff != "" {
		t.Fatalf("after host Install (-want +got):\n%s", diff)
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
