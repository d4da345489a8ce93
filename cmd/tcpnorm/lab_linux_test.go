package main

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/lab"
)

// TestLabFaultLists: the manual page and the bash completion name the
// lab's faults, lab.FaultNames, no more and no fewer.
func TestLabFaultLists(t *testing.T) {
	want := slices.Sorted(slices.Values(lab.FaultNames()))
	completion := readDoc(t, "../../packaging/tcpnorm.bash")
	m := regexp.MustCompile(`--fault\)\s*\n\s*COMPREPLY=\(\$\(compgen -W "([^"]*)"`).FindStringSubmatch(completion)
	if m == nil {
		t.Fatal("packaging/tcpnorm.bash: no --fault completion")
	}
	if got := slices.Sorted(slices.Values(strings.Fields(m[1]))); !slices.Equal(got, want) {
		t.Errorf("packaging/tcpnorm.bash completes --fault with %v, want %v", got, want)
	}
	man := section(readDoc(t, "../../man/tcpnorm.8.md"), "## tcpnorm lab")
	// The paragraph below the flag's line.
	_, para, _ := strings.Cut(man[strings.Index(man, "**--fault**"):], "\n")
	para, _, _ = strings.Cut(para, "\n\n")
	var got []string // each name once: the default is named again
	for _, n := range regexp.MustCompile(`\*([a-z0-9-]+)\*`).FindAllStringSubmatch(para, -1) {
		if !slices.Contains(got, n[1]) {
			got = append(got, n[1])
		}
	}
	t.Logf("man --fault: %v", got)
	if !slices.Equal(slices.Sorted(slices.Values(got)), want) {
		t.Errorf("man/tcpnorm.8.md names the faults %v, want %v", got, want)
	}
}
