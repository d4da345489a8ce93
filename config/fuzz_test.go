package config

import (
	"os"
	"testing"
)

// FuzzDecode: any text as tcpnorm.toml or as a policy file gives a config
// or errors, never a panic, and every error names its file.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"../examples/tcpnorm.toml", "../examples/policies.d/example.net.toml", "../examples/policies.d/lab-timestamps.toml"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("[queue]\ncount = 0\nmax_len = -1\n[rules]\nmark = 0x1\n")
	f.Add("cidrs = [\"198.18.0.0/15\", \"x\"]\nports = [0, 70000]\n[options]\nwindow_scale = \"clamp\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		dir := t.TempDir()
		for _, asPolicy := range []bool{false, true} {
			errs := &Errors{}
			const file = "fuzz.toml"
			_, top := parseFile(file, text, errs)
			if top != nil {
				if asPolicy {
					decodePolicy(file, "fuzz.example", top)
				} else {
					decodeMain(&Config{Path: file}, top, dir)
				}
			}
			for _, e := range errs.List {
				if e.File != file {
					t.Fatalf("error names file %q: %v", e.File, e)
				}
			}
		}
	})
}
