package suspects

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRecordedLogs reads the logs that tools/mtarecord/record.sh recorded
// from Debian's own Postfix, Exim and Sendmail with a path that loses large
// segments: NAME-outbound.log must list an outbound suspect, NAME-inbound.log
// an inbound one, and exactly the destinations and peers MANIFEST.md's
// expectations name.
func TestRecordedLogs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "mta", "*-*bound.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(recorded) {
		t.Fatalf("%d recorded logs in testdata/mta, want the %d of MANIFEST.md", len(files), len(recorded))
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
			want, ok := recorded[filepath.Base(name)]
			if !ok {
				t.Fatalf("no expectations for %s", name)
			}
			var got []string
			for _, s := range r.Outbound {
				got = append(got, fmt.Sprintf("out %s stalls=%d", s.Domain, s.Stalls))
			}
			for _, s := range r.Inbound {
				got = append(got, fmt.Sprintf("in %s stalls=%d", s.Peer, s.Stalls))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("suspects (-want +got):\n%s", diff)
			}
		})
	}
}

// recorded is what MANIFEST.md's expectations say each log shows: every
// stalled attempt (a Sendmail message retried four times stalls four
// times), no body stall where the session died elsewhere (Postfix's
// "timeout after EHLO").
var recorded = map[string][]string{
	"postfix-outbound.log":  {"out big.test stalls=2", "out exim.test stalls=1", "out sendmail.test stalls=1"},
	"exim-outbound.log":     {"out big.test stalls=2"},
	"sendmail-outbound.log": {"out big.test stalls=5"},
	"postfix-inbound.log":   {"in 198.18.1.2 stalls=8"},
	"exim-inbound.log":      {"in 198.18.1.2 stalls=1"},
	"sendmail-inbound.log":  {"in 198.18.1.2 stalls=1"},
}
