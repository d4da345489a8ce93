package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The manual pages (man/*.md, rendered by go-md2man for the package),
// README's references and the program's own usage text say the same:
// the commands and their arguments, each command's flags, and the
// configuration and policy keys.

// section returns the text of doc from the heading line head up to the
// next heading of the same or a higher level ("" if head is missing).
func section(doc, head string) string {
	level := strings.Index(head, " ")
	i := strings.Index(doc, "\n"+head+"\n")
	if i < 0 {
		return ""
	}
	rest := doc[i+len(head)+2:]
	end := regexp.MustCompile(`(?m)^#{1,` + string(rune('0'+level)) + `} `).FindStringIndex(rest)
	if end != nil {
		rest = rest[:end[0]]
	}
	return rest
}

// firstBlock is the first fenced code block of text, its lines with runs
// of spaces collapsed.
func firstBlock(text string) []string {
	_, rest, ok := strings.Cut(text, "```\n")
	if !ok {
		return nil
	}
	block, _, _ := strings.Cut(rest, "```")
	return collapse(strings.Split(strings.TrimSpace(block), "\n"))
}

func collapse(lines []string) []string {
	var out []string
	for _, l := range lines {
		out = append(out, strings.Join(strings.Fields(l), " "))
	}
	return out
}

func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return "\n" + string(b)
}

// usageCommands is the list of commands of the usage text, as
// "tcpnorm NAME ARGS DESCRIPTION" lines.
func usageCommands(t *testing.T) []string {
	t.Helper()
	_, list, ok := strings.Cut(usage, "commands:\n")
	if !ok {
		t.Fatal("usage has no commands: list")
	}
	list, _, _ = strings.Cut(list, "\n\n")
	var out []string
	for _, l := range strings.Split(list, "\n") {
		out = append(out, "tcpnorm "+strings.TrimSpace(l))
	}
	return collapse(out)
}

func TestManualSynopsis(t *testing.T) {
	want := usageCommands(t)
	man := readDoc(t, "../../man/tcpnorm.8.md")
	readme := readDoc(t, "../../README.md")
	for _, doc := range []struct{ name, text string }{
		{"man/tcpnorm.8.md SYNOPSIS", section(man, "# SYNOPSIS")},
		{"README.md Command line", section(readme, "## Command line")},
	} {
		if got := firstBlock(doc.text); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n%s\nwant (tcpnorm help):\n%s", doc.name, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestManualLinuxOnly: README's command line reference names as needing
// Linux exactly the commands notlinux.go answers for on other systems.
func TestManualLinuxOnly(t *testing.T) {
	var stubs []string
	for _, m := range regexp.MustCompile(`linuxOnly\("([a-z]+)"`).FindAllStringSubmatch(readDoc(t, "notlinux.go"), -1) {
		stubs = append(stubs, "`"+m[1]+"`")
	}
	if len(stubs) < 2 {
		t.Fatalf("notlinux.go: found the commands %q, want at least two calls linuxOnly(\"NAME\", ...)", stubs)
	}
	want := strings.Join(stubs[:len(stubs)-1], ", ") + " and " + stubs[len(stubs)-1] + " need Linux"
	if readme := section(readDoc(t, "../../README.md"), "## Command line"); !strings.Contains(readme, want) {
		t.Errorf("README.md Command line does not say %q (the commands notlinux.go answers for)", want)
	}
}

// TestManualFlags: every flag of every command (as its --help prints it)
// is described in the manual page's section for the command, named in
// README's, and completed by the bash completion.
func TestManualFlags(t *testing.T) {
	bin := buildBinary(t)
	man := readDoc(t, "../../man/tcpnorm.8.md")
	readme := readDoc(t, "../../README.md")
	completion := readDoc(t, "../../packaging/tcpnorm.bash")
	flagLine := regexp.MustCompile(`(?m)^  -(\S+)`)
	var names []string
	for _, l := range usageCommands(t) {
		names = append(names, strings.Fields(l)[1])
	}
	if want := `local commands="` + strings.Join(names, " ") + `"`; !strings.Contains(completion, want) {
		t.Errorf("packaging/tcpnorm.bash lacks %s", want)
	}
	for _, l := range usageCommands(t) {
		cmd := strings.Fields(l)[1]
		// The completion's case for the command: "\tCMD) flags=..." or
		// "\tA | CMD | B) flags=...".
		compFlags := regexp.MustCompile(`(?m)^\t(?:[a-z]+ \| )*` + cmd + `(?: \| [a-z]+)*\) flags="([^"]*)"`).FindStringSubmatch(completion)
		if compFlags == nil && cmd != "version" {
			t.Errorf("packaging/tcpnorm.bash completes no flags for %s", cmd)
		}
		manSec := section(man, "## tcpnorm "+cmd)
		if manSec == "" {
			t.Errorf("man/tcpnorm.8.md has no section \"## tcpnorm %s\"", cmd)
		}
		readmeSec := section(readme, "### tcpnorm "+cmd)
		if readmeSec == "" && cmd != "help" {
			t.Errorf("README.md has no section \"### tcpnorm %s\"", cmd)
		}
		if cmd == "help" {
			continue
		}
		out, _ := exec.Command(bin, cmd, "--help").Output()
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			name := m[1]
			short, long := "**-"+name+"**", "**--"+name+"**"
			if !strings.Contains(manSec, short) && !strings.Contains(manSec, long) {
				t.Errorf("man/tcpnorm.8.md: tcpnorm %s does not describe its flag -%s", cmd, name)
			}
			if compFlags != nil && !regexp.MustCompile(`(^| )-{1,2}`+regexp.QuoteMeta(name)+`( |$)`).MatchString(compFlags[1]) {
				t.Errorf("packaging/tcpnorm.bash: tcpnorm %s does not complete its flag -%s", cmd, name)
			}
			if !regexp.MustCompile(`-{1,2}` + regexp.QuoteMeta(name) + `\b`).MatchString(readmeSec) {
				t.Errorf("README.md: tcpnorm %s does not name its flag -%s", cmd, name)
			}
		}
	}
}

// TestManualConfigKeys: README's key tables and tcpnorm.toml(5)'s are the
// same, row for row.
func TestManualConfigKeys(t *testing.T) {
	man := readDoc(t, "../../man/tcpnorm.toml.5.md")
	readme := readDoc(t, "../../README.md")
	table := func(text string) []string {
		var rows []string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "| ") {
				rows = append(rows, l)
			}
		}
		return rows
	}
	for _, tt := range []struct{ man, readme string }{
		{"# CONFIGURATION KEYS", "### tcpnorm.toml"},
		{"# POLICY KEYS", "### Policy files: `policy_dir/*.toml`, one peer per file"},
	} {
		m, r := table(section(man, tt.man)), table(section(readme, tt.readme))
		if len(m) < 3 {
			t.Errorf("tcpnorm.toml.5.md %s: no table", tt.man)
		}
		if strings.Join(m, "\n") != strings.Join(r, "\n") {
			t.Errorf("README.md %q and man/tcpnorm.toml.5.md %q differ:\nREADME:\n%s\nman:\n%s", tt.readme, tt.man, strings.Join(r, "\n"), strings.Join(m, "\n"))
		}
	}
}
