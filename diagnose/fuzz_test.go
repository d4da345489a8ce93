package diagnose

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzDiagnose: any file, a capture or not, gives a report or an error,
// never a panic, and a report can always be written out.
func FuzzDiagnose(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.pcap"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil && len(b) <= 64<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte("not a capture"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := DiagnoseBytes(b, Options{Now: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), MaxConns: 16})
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := rep.WriteText(&out, "fuzz.pcap"); err != nil {
			t.Fatalf("WriteText: %v", err)
		}
		if err := rep.WriteJSON(&out); err != nil {
			t.Fatalf("WriteJSON: %v", err)
		}
	})
}
