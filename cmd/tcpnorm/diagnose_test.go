package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/diagnose"
)

// diagnoseCapture is a lab capture diagnose proposes a policy for
// (window-scale mismatch).
const diagnoseCapture = "../../diagnose/testdata/lab-wscale.pcap"

// TestDiagnoseCommand: --domain takes only what check takes in a policy's
// domain, and the policy printed for a good one loads as check loads it.
func TestDiagnoseCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		out, err []string
	}{
		{name: "domain normalized", args: []string{"--json", "--domain", "Example.NET.", diagnoseCapture}, out: []string{`domain = \"example.net\"`, `"file": "example.net.toml"`}},
		{name: "no domain: the peer's address", args: []string{"--json", diagnoseCapture}, out: []string{`cidrs = [\"198.18.`}},
		{name: "domain is an IPv4 address", args: []string{"--domain", "198.18.1.1", diagnoseCapture}, code: 2,
			err: []string{`tcpnorm diagnose: --domain: "198.18.1.1" is an IP address, not a domain name`, "without --domain the policy names the peer by its address", "usage: tcpnorm diagnose"}},
		{name: "domain is an IPv6 address", args: []string{"--domain", "2001:2::1", diagnoseCapture}, code: 2, err: []string{"is an IP address", "usage: tcpnorm diagnose"}},
		{name: "domain of one label", args: []string{"--domain", "localhost", diagnoseCapture}, code: 2, err: []string{"is not a fully qualified domain name"}},
		{name: "domain with a quote", args: []string{"--domain", `ex"ample.net`, diagnoseCapture}, code: 2, err: []string{"is not a valid domain name"}},
		{name: "domain with a numeric top-level label", args: []string{"--domain", "mail.198", diagnoseCapture}, code: 2, err: []string{"numeric top-level label"}},
		{name: "domain after the file", args: []string{diagnoseCapture, "--domain", "-bad.example"}, code: 2, err: []string{"starts or ends with '-'"}},
		{name: "bad local", args: []string{"--local", "here", diagnoseCapture}, code: 2, err: []string{`--local: "here" is neither an address nor a prefix`, "usage: tcpnorm diagnose"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runDiagnose(tt.args, strings.NewReader(""), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, errb.String())
			}
			wantIn(t, "stdout", out.String(), tt.out)
			wantIn(t, "stderr", errb.String(), tt.err)
			if code != 0 {
				if out.Len() > 0 {
					t.Errorf("stdout on a usage error:\n%s", out.String())
				}
				return
			}
			var rep diagnose.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Policies) == 0 {
				t.Fatalf("no policy proposed: %+v", rep.Findings)
			}
			dir := t.TempDir()
			pd := filepath.Join(dir, "policies.d")
			if err := os.Mkdir(pd, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Policies {
				if err := os.WriteFile(filepath.Join(pd, p.File), []byte(p.Text), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			main := filepath.Join(dir, "tcpnorm.toml")
			if err := os.WriteFile(main, []byte("policy_dir = \"policies.d\"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(main); err != nil {
				t.Errorf("the proposed policy does not load: %v", err)
			}
		})
	}
}
