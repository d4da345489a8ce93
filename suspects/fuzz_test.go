package suspects

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseLine: no panic on any line; an Entry is consistent with its
// kind; the Analyzer takes the line too.
func FuzzParseLine(f *testing.F) {
	for _, tt := range lineTests {
		f.Add(tt.line)
	}
	f.Add("")
	f.Add("Dec  7 10:00:00 h postfix/smtp[1]: ABCDE: to=<, relay=[, status=deferred (lost connection with [ while sending message body)")
	f.Add("2026-12-07 12:05:00 +99 [ 1tXyzA-000ABC-12 == a R= T= defer H=[::1 bytes written)")
	f.Fuzz(func(t *testing.T, line string) {
		e := ParseLine(line, testNow, time.UTC)
		if e.Kind > Removed {
			t.Fatalf("kind %d", e.Kind)
		}
		if (e.Kind == Garbled) != e.Time.IsZero() {
			t.Errorf("kind %v with time %v", e.Kind, e.Time)
		}
		if e.Kind <= OtherProgram && e.MTA != NoMTA {
			t.Errorf("kind %v from %v", e.Kind, e.MTA)
		}
		if e.Kind > OtherProgram && e.MTA == NoMTA {
			t.Errorf("kind %v from no MTA", e.Kind)
		}
		if e.Size < -1 {
			t.Errorf("size %d", e.Size)
		}
		if (e.Kind == Stalled || e.Kind == InStalled || e.Kind == BodyPhase) && e.Why == "" {
			t.Errorf("%v without why", e.Kind)
		}
		if d := e.Domain(); d != strings.ToLower(d) {
			t.Errorf("domain %q not lower case", d)
		}
		if !strings.Contains(line, e.ID) {
			t.Errorf("ID %q not in the line", e.ID)
		}
		a := New(Options{Now: testNow, Location: time.UTC, MaxMessages: 2, MaxPeers: 2})
		a.Line(line)
		a.Line(line)
		r := a.Report()
		if r.Counts.Lines != 2 || r.Counts.MailLines+r.Counts.NotUnderstood != 2 {
			t.Errorf("counts %+v", r.Counts)
		}
	})
}
