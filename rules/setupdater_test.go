//go:build linux

package rules

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tcpnorm/tcpnorm/metrics"
)

// fakeSets is a Runner that keeps what `ipset restore` last swapped into
// the IPv4 and IPv6 sets, or fails while fail is set.
type fakeSets struct {
	fail    bool
	runs    int
	members []string // adds of the last successful update, in order
}

func (f *fakeSets) Run(_ context.Context, stdin, name string, args ...string) (string, error) {
	f.runs++
	if name != SetTool || !slices.Equal(args, []string{"restore"}) {
		return "", errors.New("unexpected command " + name + " " + strings.Join(args, " "))
	}
	if f.fail {
		return "", &Error{Cmd: "ipset restore", Err: errors.New("exit status 1"), Output: "Kernel error"}
	}
	f.members = nil
	for _, l := range strings.Split(stdin, "\n") {
		if fs := strings.Fields(l); len(fs) >= 3 && fs[0] == "add" {
			f.members = append(f.members, fs[2])
		}
	}
	return "", nil
}

// TestSetUpdater: additions reach the sets at once, removals only after the
// grace period, and a failed update keeps the sets, is counted and retried.
func TestSetUpdater(t *testing.T) {
	fs := &fakeSets{}
	m := metrics.New("test")
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	u := NewSetUpdater(Spec{Mode: ModeGateway, First: 0, Count: 1}, fs, slog.New(slog.DiscardHandler), m)
	u.now = func() time.Time { return now }
	ctx := context.Background()
	steps := []struct {
		name     string
		advance  time.Duration
		want     string // the table's prefixes, space-separated
		fail     bool
		members  string // "" with runs unchanged: no update
		runs     int
		next     time.Duration // from now; 0: none
		okCount  float64
		errCount float64
	}{
		{name: "start", want: "198.18.3.2/32 2001:2:0:3::2/128",
			members: "198.18.3.2/32 2001:2:0:3::2/128", runs: 1, okCount: 1},
		{name: "nothing changed: no update", want: "198.18.3.2/32 2001:2:0:3::2/128",
			members: "198.18.3.2/32 2001:2:0:3::2/128", runs: 1, okCount: 1},
		{name: "DNS moved the peer: new address added, old kept", advance: time.Second, want: "198.18.3.99/32 2001:2:0:3::2/128",
			members: "198.18.3.2/32 198.18.3.99/32 2001:2:0:3::2/128", runs: 2, next: SetGrace, okCount: 2},
		{name: "within grace", advance: SetGrace - time.Second, want: "198.18.3.99/32 2001:2:0:3::2/128",
			members: "198.18.3.2/32 198.18.3.99/32 2001:2:0:3::2/128", runs: 2, next: time.Second, okCount: 2},
		{name: "grace over: old address removed", advance: time.Second, want: "198.18.3.99/32 2001:2:0:3::2/128",
			members: "198.18.3.99/32 2001:2:0:3::2/128", runs: 3, okCount: 3},
		{name: "back within grace: no removal pending", want: "198.18.3.99/32",
			members: "198.18.3.99/32 2001:2:0:3::2/128", runs: 3, next: SetGrace, okCount: 3},
		{name: "re-added before grace ends: kept, nothing to do", advance: time.Minute, want: "198.18.3.99/32 2001:2:0:3::2/128",
			members: "198.18.3.99/32 2001:2:0:3::2/128", runs: 3, okCount: 3},
		{name: "failure: old contents kept, retry", advance: time.Second, want: "198.18.4.0/24 198.18.3.99/32 2001:2:0:3::2/128", fail: true,
			members: "198.18.3.99/32 2001:2:0:3::2/128", runs: 4, next: SetRetry, okCount: 3, errCount: 1},
		{name: "retry succeeds", advance: SetRetry, want: "198.18.4.0/24 198.18.3.99/32 2001:2:0:3::2/128",
			members: "198.18.3.99/32 198.18.4.0/24 2001:2:0:3::2/128", runs: 5, okCount: 4, errCount: 1},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		fs.fail = st.fail
		var want []netip.Prefix
		for _, p := range strings.Fields(st.want) {
			want = append(want, netip.MustParsePrefix(p))
		}
		next := u.Sync(ctx, want)
		if got := strings.Join(fs.members, " "); got != st.members {
			t.Errorf("%s: sets hold %q, want %q", st.name, got, st.members)
		}
		if fs.runs != st.runs {
			t.Errorf("%s: %d ipset runs, want %d", st.name, fs.runs, st.runs)
		}
		var wantNext time.Time
		if st.next != 0 {
			wantNext = now.Add(st.next)
		}
		if !next.Equal(wantNext) {
			t.Errorf("%s: next = %v, want %v", st.name, next, wantNext)
		}
		if got := value(t, m.SetUpdates.WithLabelValues("ok")); got != st.okCount {
			t.Errorf("%s: ok updates = %v, want %v", st.name, got, st.okCount)
		}
		if got := value(t, m.SetUpdates.WithLabelValues("error")); got != st.errCount {
			t.Errorf("%s: failed updates = %v, want %v", st.name, got, st.errCount)
		}
	}
	if got := value(t, m.SetEntries.WithLabelValues("ipv4")); got != 2 {
		t.Errorf("tcpnorm_set_entries{family=ipv4} = %v, want 2", got)
	}
}

// value reads a counter or gauge.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}
