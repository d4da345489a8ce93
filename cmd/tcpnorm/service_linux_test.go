package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestServiceUnit: systemd-analyze verify accepts examples/tcpnorm.service
// (with ExecStart pointing at a freshly built tcpnorm) without a warning.
// A trivial unit is verified first, so that a systemd-analyze that cannot
// work here is told apart from a bad unit.
func TestServiceUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("systemd-analyze not installed (make test-deps installs Debian's systemd package): %v", err)
		}
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	verify := func(name, text string) (string, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := verify("trivial-check.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n"); err != nil || out != "" {
		t.Skipf("ENVIRONMENT, not the unit: systemd-analyze verify rejects even a trivial unit here (%v):\n%s", err, out)
	}
	unit, err := os.ReadFile("../../examples/tcpnorm.service")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/tcpnorm run ") {
		t.Fatalf("examples/tcpnorm.service: no ExecStart=/usr/local/bin/tcpnorm run")
	}
	bin := buildBinary(t)
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/tcpnorm", bin)
	if out, err := verify("tcpnorm.service", text); err != nil || out != "" {
		t.Errorf("systemd-analyze verify examples/tcpnorm.service: %v\n%s", err, out)
	}
	// The check can fail: a misspelt directive is reported.
	if out, _ := verify("tcpnorm.service", text+"\n[Service]\nRestrt=always\n"); !strings.Contains(out, "Restrt") {
		t.Errorf("systemd-analyze verify does not report a misspelt directive: %q", out)
	}
}
