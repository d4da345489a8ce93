package main

import (
	"bytes"
	"errors"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestHelp: every command answers -h and --help with its usage and every
// flag's meaning on stdout, exit status 0; a bad flag gets the usage on
// stderr and exit status 2.
func TestHelp(t *testing.T) {
	bin := buildBinary(t)
	run := func(args ...string) (stdout, stderr string, code int) {
		var o, e bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			t.Fatalf("%v: %v", args, err)
		}
		return o.String(), e.String(), code
	}
	// A flag line of PrintDefaults and the line after it, its meaning.
	flagLine := regexp.MustCompile(`(?m)^  -(\S+)[^\n]*\n    \t(\S[^\n]*)$`)
	tests := []struct {
		cmd   string
		flags []string // every flag it has
	}{
		{cmd: "run", flags: []string{"c"}},
		{cmd: "check", flags: []string{"c"}},
		{cmd: "rules", flags: []string{"c"}},
		{cmd: "status", flags: []string{"c", "json"}},
		{cmd: "report", flags: []string{"c"}},
		{cmd: "lab", flags: []string{"fault", "ipv6", "keep", "size", "timeout"}},
		{cmd: "diagnose", flags: []string{"domain", "json", "local", "max-conns"}},
		{cmd: "probe", flags: []string{"all", "bytes", "c", "force", "helo", "json", "pcap", "port", "proto", "queue", "rcpt", "stall", "timeout", "trials"}},
		{cmd: "suspects", flags: []string{"json", "max-messages", "since"}},
		{cmd: "version"},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			for _, h := range []string{"--help", "-h"} {
				out, errOut, code := run(tt.cmd, h)
				if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: tcpnorm "+tt.cmd) {
					t.Fatalf("tcpnorm %s %s: exit %d, stderr %q, stdout:\n%s", tt.cmd, h, code, errOut, out)
				}
				var got []string
				for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
					got = append(got, m[1])
				}
				if strings.Join(got, " ") != strings.Join(tt.flags, " ") {
					t.Errorf("tcpnorm %s %s documents flags %q, want %q, each with its meaning:\n%s", tt.cmd, h, got, tt.flags, out)
				}
				if viaHelp, _, _ := run("help", tt.cmd); viaHelp != out {
					t.Errorf("tcpnorm help %s differs from tcpnorm %s %s", tt.cmd, tt.cmd, h)
				}
			}
			if out, errOut, code := run(tt.cmd, "--no-such-flag"); code != 2 || out != "" || !strings.Contains(errOut, "usage: tcpnorm "+tt.cmd) {
				t.Errorf("tcpnorm %s --no-such-flag: exit %d, stdout %q, stderr:\n%s", tt.cmd, code, out, errOut)
			}
		})
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, _, code := run(args...)
		if code != 0 || !strings.HasPrefix(out, "usage: tcpnorm COMMAND") {
			t.Errorf("tcpnorm %s: exit %d:\n%s", strings.Join(args, " "), code, out)
		}
		for _, tt := range tests {
			if !regexp.MustCompile(`(?m)^  ` + tt.cmd + ` `).MatchString(out) {
				t.Errorf("tcpnorm %s does not list %s", strings.Join(args, " "), tt.cmd)
			}
		}
	}
	if _, errOut, code := run(); code != 2 || !strings.HasPrefix(errOut, "usage: tcpnorm COMMAND") {
		t.Errorf("tcpnorm without a command: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestWrongArguments: every command reports a wrong number of arguments
// or a bad value the same way: "tcpnorm CMD: message", a blank line and
// its usage on stderr, nothing on stdout, exit status 2.
func TestWrongArguments(t *testing.T) {
	for _, args := range [][]string{
		{"run", "extra"}, {"check", "extra"}, {"rules", "extra"}, {"status", "extra"},
		{"report"}, {"report", "a", "b"}, {"diagnose"}, {"diagnose", "a.pcap", "b.pcap"},
		{"probe"}, {"suspects"}, {"lab", "extra"}, {"lab", "--fault", "bogus"}, {"version", "extra"},
	} {
		var out, errb bytes.Buffer
		code := dispatch(args, &out, &errb)
		want := "tcpnorm " + args[0] + ": "
		if code != 2 || out.Len() != 0 || !strings.HasPrefix(errb.String(), want) || !strings.Contains(errb.String(), "\n\nusage: tcpnorm "+args[0]) {
			t.Errorf("%q: exit %d, stdout %q, stderr:\n%s\nwant 2, nothing, %q then a blank line and the usage", args, code, out.String(), errb.String(), want)
		}
	}
}

// TestREADMERules: README's block of the sets and rules run installs is
// what `tcpnorm rules` prints for its config (gateway mode, 2 queues from
// 0, the default mark), IPv4 shown; the IPv6 part is the same with the
// IPv6 set, as the block's note says.
func TestREADMERules(t *testing.T) {
	readme := readDoc(t, "../../README.md")
	i := strings.Index(readme, "The address sets and rules `tcpnorm run` installs (gateway mode, 2 queues from 0, default\nmark;")
	if i < 0 {
		t.Fatal("README: no rules block")
	}
	want := firstBlock(readme[i:])
	const note = "# iptables-restore --noflush (ip6tables-restore gets the same, matching tcpnorm6-q0)"
	if j := slices.Index(want, note); j < 0 {
		t.Fatalf("README's rules block lacks the line %q:\n%s", note, strings.Join(want, "\n"))
	} else {
		want[j] = "# iptables-restore --noflush"
	}
	cfg := writeConfig(t, "policy_dir = \"policies.d\"\n[queue]\nfirst = 0\ncount = 2\n[rules]\nmode = \"gateway\"\n")
	var out, errb bytes.Buffer
	if code := dispatch([]string{"rules", "-c", cfg}, &out, &errb); code != 0 {
		t.Fatalf("tcpnorm rules: exit %d\n%s", code, errb.String())
	}
	v4, v6, ok := strings.Cut(out.String(), "# ip6tables-restore --noflush\n")
	if !ok {
		t.Fatalf("tcpnorm rules prints no ip6tables part:\n%s", out.String())
	}
	got := collapse(strings.Split(strings.TrimSpace(v4), "\n"))
	if !slices.Equal(got, want) {
		t.Errorf("README's rules block differs from tcpnorm rules:\nREADME:\n%s\ntcpnorm rules:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
	_, v4rules, _ := strings.Cut(v4, "# iptables-restore --noflush\n")
	if strings.ReplaceAll(v4rules, "tcpnorm4-q0", "tcpnorm6-q0") != v6 {
		t.Errorf("the ip6tables part is not the iptables part with tcpnorm6-q0:\n%s", v6)
	}
}
