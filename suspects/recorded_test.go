package suspects

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRecordedLogs reads the logs that tools/mtarecord/record.sh recorded
// from Debian's own Postfix, Exim and Sendmail with a path that loses large
// segments: NAME-outbound.log must list an outbound suspect, NAME-inbound.log
// an inbound one. It skips while no recording is committed.
func TestRecordedLogs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*-*bound.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skip("no recorded logs in testdata (tools/mtarecord/record.sh writes them)")
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			a := New(Options{Now: st.ModTime().Add(time.Hour), Location: time.UTC})
			if err := a.Read(f, name); err != nil {
				t.Fatal(err)
			}
			r := a.Report()
			var text bytes.Buffer
			r.WriteText(&text)
			t.Logf("%s", text.String())
			if r.Counts.MailLines == 0 {
				t.Fatalf("no mail lines understood")
			}
			switch {
			case strings.HasSuffix(name, "-outbound.log"):
				if len(r.Outbound) == 0 {
					t.Errorf("no outbound suspect")
				}
			case strings.HasSuffix(name, "-inbound.log"):
				if len(r.Inbound) == 0 {
					t.Errorf("no inbound suspect")
				}
			}
		})
	}
}
