//go:build !linux

package main

import (
	"bytes"
	"errors"
	"os/exec"
	"testing"
)

// TestLinuxOnly: off Linux, the commands that need Linux answer any
// arguments, --help too, with one line on stderr and exit status 1.
func TestLinuxOnly(t *testing.T) {
	bin := buildBinary(t)
	tests := []struct {
		name string
		cmd  string // the command the message names
		args []string
	}{
		{name: "run", cmd: "run", args: []string{"run"}},
		{name: "rules with a config", cmd: "rules", args: []string{"rules", "-c", "tcpnorm.toml"}},
		{name: "lab --help", cmd: "lab", args: []string{"lab", "--help"}},
		{name: "probe a domain", cmd: "probe", args: []string{"probe", "example.org"}},
		{name: "help run", cmd: "run", args: []string{"help", "run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("tcpnorm %q: %v, want exit status 1", tt.args, err)
			}
			if want := "tcpnorm " + tt.cmd + ": Linux only\n"; stderr.String() != want || stdout.Len() != 0 {
				t.Errorf("tcpnorm %q: stdout %q, stderr %q; want stderr %q alone", tt.args, stdout.String(), stderr.String(), want)
			}
		})
	}
}
