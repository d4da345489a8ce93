package diagnose

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// capturesDir holds the real captures with unusual option lists
// (MANIFEST.md there names their source and licence).
const capturesDir = "../testdata/captures"

// TestSharedCaptures reads every real capture of capturesDir: no panic, no error, and
// what each is known to contain.
func TestSharedCaptures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(capturesDir, "*.pcap"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no captures in %s: %v", capturesDir, err)
	}
	notes := map[string]string{
		"window-scale-range.pcap": "shift 255",
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			rep, err := Diagnose(fh, Options{Now: testNow})
			if err != nil {
				t.Fatalf("Diagnose: %v", err)
			}
			var b strings.Builder
			if err := rep.WriteText(&b, name); err != nil {
				t.Fatal(err)
			}
			if testing.Verbose() {
				t.Logf("\n%s", b.String())
			}
			if rep.Packets == 0 || rep.TCPSegments+rep.TruncatedHeaders == 0 {
				t.Errorf("packets %d, TCP segments %d: read nothing", rep.Packets, rep.TCPSegments)
			}
			if rep.Verdict == VerdictOptionFault {
				t.Errorf("a handshake-only capture diagnosed as an option fault: %+v", summarize(rep))
			}
			if want, ok := notes[name]; ok && !strings.Contains(b.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, b.String())
			}
		})
	}
}
