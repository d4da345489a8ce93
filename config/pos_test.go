package config

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScanPositions(t *testing.T) {
	text := `# comment = not a key
domain = "a=b" # trailing = comment
"quoted.key" = 1
cidrs = [
  "198.18.0.0/24", # first
  '2001:2::/48',
]
s = """
fake = 1
"""
[options]
window_scale = "strip"
sub.dotted = 2
inline = { a = 1, b = [3, 4] }
[ "other" . table ]
x = 1
`
	p := scanPositions(text)
	tests := []struct {
		key  string
		want position
	}{
		{"domain", position{2, 1}},
		{"quoted.key", position{3, 1}},
		{"cidrs", position{4, 1}},
		{"cidrs[0]", position{5, 3}},
		{"cidrs[1]", position{6, 3}},
		{"s", position{8, 1}},
		{"fake", position{1, 1}}, // inside a multi-line string: not a key
		{"options", position{11, 2}},
		{"options.window_scale", position{12, 1}},
		{"options.sub.dotted", position{13, 1}},
		{"options.inline.a", position{14, 12}},
		{"options.inline.b[1]", position{14, 27}},
		{"options.missing", position{11, 2}}, // falls back to the parent
		{"other.table.x", position{16, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, p.at(tc.key)); diff != "" {
				t.Errorf("at(%q) (-want +got):\n%s", tc.key, diff)
			}
		})
	}
}

func FuzzScanPositions(f *testing.F) {
	f.Add("a = [1,\n2]\n[b]\nc = {d = 'x'}\n")
	f.Add("s = '''\n'''\nt = \"\\\"\"")
	f.Fuzz(func(t *testing.T, text string) {
		p := scanPositions(text) // must terminate and not panic
		for k := range p.keys {
			p.at(k)
		}
	})
}

// TestScanPositionsMalformed: text the toml parser refused is scanned too
// (for a syntax error's position); it must end, whatever it holds.
func TestScanPositionsMalformed(t *testing.T) {
	for _, text := range []string{
		"cidrs = {\"198.18.0.0/15\", \"x\"] [0, \nports = [0]\n",
		"a = {\n\n\n",
		"a = {b\n= 1}\n",
		"a = [{c =\n",
		"[x\ny = {'\n",
	} {
		done := make(chan struct{})
		go func() {
			defer close(done)
			errs := &Errors{}
			parseFile("t.toml", text, errs)
			scanPositions(text).at("a.b")
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("scanning %q did not end", text)
		}
	}
}
