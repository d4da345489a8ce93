//go:build linux

package probe

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
)

// TestSchedulerStreak: a target is first probed within its interval (or a
// minute), every result of a run of equal ones adds to the streak, and
// from the fourth on the interval doubles, up to 8 times; the states are
// saved and a target that goes loses its state.
func TestSchedulerStreak(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	file := filepath.Join(t.TempDir(), "probe-state.json")
	targets := []Target{{Name: "wide", Every: time.Hour, Why: "no single address to probe"}}
	s := &Scheduler{Targets: func() []Target { return targets }, StateFile: file, states: map[string]config.ProbeState{}, now: func() time.Time { return now }}
	s.Log = slog.New(slog.DiscardHandler)
	ctx := context.Background()
	s.round(ctx)
	st := s.states["wide"]
	if !st.Last.IsZero() || st.Next.Before(now.Add(30*time.Second)) || st.Next.After(now.Add(time.Minute)) {
		t.Fatalf("first round: %+v, want the first probe within 30s..1m", st)
	}
	var gaps []time.Duration
	for i := 0; i < 8; i++ {
		now = s.states["wide"].Next
		s.round(ctx)
		st = s.states["wide"]
		gaps = append(gaps, st.Next.Sub(now))
	}
	if st.Need != config.NeedUnknown || st.Streak != 8 || st.Detail != "no single address to probe" || !st.Since.Before(st.Last) {
		t.Errorf("after 8 rounds: %+v", st)
	}
	for i, want := range []time.Duration{1, 1, 1, 2, 4, 8, 8, 8} {
		if g := gaps[i]; g < want*time.Hour*9/10 || g > want*time.Hour*11/10 {
			t.Errorf("gap after probe %d: %v, want %d h ± 10%%", i+1, g, want)
		}
	}
	saved, err := config.ReadProbeStates(file)
	if err != nil || saved["wide"].Streak != 8 {
		t.Errorf("saved states %+v, %v", saved, err)
	}
	targets = nil
	s.round(ctx)
	if len(s.states) != 0 {
		t.Errorf("states of a target that went: %+v", s.states)
	}
}
