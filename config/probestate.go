package config

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Need is what the last re-test of a policy's path (policy key probe) says
// about the policy.
type Need uint8

const (
	// NeedUnknown: not probed yet, or the probe could not tell (the path
	// failed with the policy's own options too, the trials disagreed, the
	// peer was unreachable).
	NeedUnknown Need = iota
	// NeedStill: the SYN as sent still fails and the policy's options
	// still deliver.
	NeedStill
	// NeedNo: the SYN as sent delivers: the upstream fault is gone.
	NeedNo
	numNeeds
)

var needNames = [numNeeds]string{"unknown", "still-needed", "no-longer-needed"}

func (n Need) String() string {
	if n < numNeeds {
		return needNames[n]
	}
	return fmt.Sprintf("need(%d)", n)
}

func (n Need) MarshalText() ([]byte, error) { return []byte(n.String()), nil }

func (n *Need) UnmarshalText(b []byte) error {
	for i, s := range needNames {
		if string(b) == s {
			*n = Need(i)
			return nil
		}
	}
	return fmt.Errorf("invalid need %q", b)
}

// ProbeState is the running daemon's re-testing of one policy's path.
type ProbeState struct {
	Need Need `json:"need"`
	// Since is the first probe that found Need (of this run of results).
	Since time.Time `json:"since"`
	Last  time.Time `json:"last"` // the last probe's end
	Next  time.Time `json:"next"` // the next probe, roughly
	// Streak counts the probes in a row that found Need.
	Streak int `json:"streak"`
	// Detail is the last probe's finding per address.
	Detail string `json:"detail,omitempty"`
}

// ProbeStateFile is where the daemon keeps its probe states, so that they
// survive a restart and `check` can show them: beside the evidence.
func ProbeStateFile(cfg *Config) string { return filepath.Join(cfg.Evidence.Dir, "probe-state.json") }

// ReadProbeStates reads the states the daemon wrote; a missing file is no
// state.
func ReadProbeStates(path string) (map[string]ProbeState, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return map[string]ProbeState{}, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]ProbeState{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// WriteProbeStates replaces the file atomically.
func WriteProbeStates(path string, m map[string]ProbeState) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o640); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ProbeSummary is one line for check, status and report: the interval and
// what the last probes found, "no longer needed since ..." first.
func ProbeSummary(every time.Duration, st *ProbeState, now time.Time) string {
	if every == 0 {
		return "off"
	}
	s := "every " + FormatDuration(every)
	if st == nil || st.Last.IsZero() {
		return s + "; not probed yet"
	}
	var b strings.Builder
	switch st.Need {
	case NeedNo:
		fmt.Fprintf(&b, "NO LONGER NEEDED since %s (%s): the path works as sent; remove the policy", st.Since.UTC().Format(time.RFC3339), inARow(st.Streak))
	case NeedStill:
		fmt.Fprintf(&b, "still needed (%s since %s)", inARow(st.Streak), st.Since.UTC().Format(time.RFC3339))
	default:
		fmt.Fprintf(&b, "unknown (%s)", inARow(st.Streak))
	}
	fmt.Fprintf(&b, "; %s; last %s ago", s, FormatLeft(now.Sub(st.Last)))
	if st.Detail != "" {
		b.WriteString(": " + st.Detail)
	}
	return b.String()
}

func inARow(n int) string {
	if n == 1 {
		return "1 probe"
	}
	return fmt.Sprintf("%d probes in a row", n)
}
