//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpnorm/tcpnorm/lab"
	"github.com/tcpnorm/tcpnorm/normalize"
)

const (
	// stormReloads SIGHUPs, every stormInvalid-th with an invalid policy
	// directory, while batches of stormBatch connections of stormSize run.
	stormReloads = 100
	stormInvalid = 10
	stormBatch   = 10
	stormSize    = 64 << 10
)

// stormOptions are the lab policy's options the storm cycles through.
var stormOptions = []normalize.Policy{
	{WindowScale: normalize.WSStrip},
	{Timestamps: normalize.TSStrip, MSSMax: 1200},
	lab.ClampOptions(2),
	{StripSACKOK: true, ClearECN: true},
}

// TestReloadStorm sends stormReloads SIGHUPs while connections run through
// the daemon, each reload adding, changing or removing policies, every
// stormInvalid-th adding an invalid one: not one connection fails, every
// valid reload is applied, and every invalid one is refused with the
// previous table staying in force.
func TestReloadStorm(t *testing.T) {
	l := newLab(t, lab.FaultNone)
	d := startDaemon(t, l, labPolicy(stormOptions[0]))
	pdir := filepath.Join(d.Dir, "policies.d")
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	load := make(chan []lab.TransferResult, 1)
	go func() {
		var all []lab.TransferResult
		for i := 0; ; i++ {
			select {
			case <-stop:
				load <- all
				return
			default:
			}
			rs, err := runBatch(l, i%2 == 1, stormBatch, stormSize)
			if err != nil {
				t.Error(err)
				load <- all
				return
			}
			all = append(all, rs...)
		}
	}()

	next := 0
	valid, invalid := 0, 0
	var want []string // policy names the last valid reload put in force
	start := time.Now()
	for i := 1; i <= stormReloads; i++ {
		bad := i%stormInvalid == 0
		if bad {
			write("broken.toml", "domain = \"broken.test\"\n[options]\nwindow_scale = \"clmap\"\n")
		} else {
			os.Remove(filepath.Join(pdir, "broken.toml"))
			write(lab.Domain+".toml", labPolicy(stormOptions[i%len(stormOptions)]).Text())
			// Policies for other peers come and go: one added each
			// reload, the oldest of three removed.
			write(fmt.Sprintf("peer-%d.toml", i), fmt.Sprintf("cidrs = [\"198.18.%d.%d/32\"]\nreason = \"storm\"\n[options]\nwindow_scale = \"strip\"\n", 100+i/250, i%250))
			os.Remove(filepath.Join(pdir, fmt.Sprintf("peer-%d.toml", i-3)))
		}
		if err := d.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		var ok bool
		next, ok = waitReload(t, d, next)
		switch {
		case ok == bad:
			t.Fatalf("reload %d (invalid %v): applied %v", i, bad, ok)
		case ok:
			valid++
			want = policyFiles(t, pdir)
		default:
			invalid++
			if got := policyNames(t, d); !slices.Equal(got, want) {
				t.Errorf("after invalid reload %d the daemon has policies %q, want the previous %q", i, got, want)
			}
		}
	}
	elapsed := time.Since(start)
	close(stop)
	results := <-load

	failed := len(results) - countOK(t, "connection during the storm", results)
	m := metrics(t, d)
	t.Logf("%d reloads in %.1fs (%d applied, %d refused) during %d connections: %d failed; tcpnorm_reloads_total ok %.0f, error %.0f",
		stormReloads, elapsed.Seconds(), valid, invalid, len(results), failed,
		metricValue(m, "tcpnorm_reloads_total", `result="ok"`), metricValue(m, "tcpnorm_reloads_total", `result="error"`))
	if metricValue(m, "tcpnorm_reloads_total", `result="ok"`) != float64(valid) || metricValue(m, "tcpnorm_reloads_total", `result="error"`) != float64(invalid) {
		t.Errorf("tcpnorm_reloads_total does not match %d applied, %d refused:\n%s", valid, invalid, grep(m, "tcpnorm_reloads_total"))
	}
	if len(results) < stormBatch {
		t.Errorf("only %d connections ran during the storm", len(results))
	}
	if got := policyNames(t, d); !slices.Equal(got, want) {
		t.Errorf("after the storm the daemon has policies %q, want %q", got, want)
	}
}

// waitReload waits for the daemon's next reload outcome in its log from
// line index from on, and returns the index after it and whether the
// reload was applied.
func waitReload(t *testing.T, d *lab.Daemon, from int) (int, bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		lines, n := d.LogLines(from)
		for i, ln := range lines {
			switch {
			case strings.Contains(ln, "msg=reloaded"):
				return from + i + 1, true
			case strings.Contains(ln, `msg="reload failed`):
				return from + i + 1, false
			}
		}
		from = n
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no reload outcome logged in 10s")
	return from, false
}

// policyFiles lists the policy names in dir, as the daemon names them.
func policyFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ".toml"); ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// policyNames lists the policies in force, from /status.
func policyNames(t *testing.T, d *lab.Daemon) []string {
	t.Helper()
	body, err := d.Get(context.Background(), "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Policies []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v", err)
	}
	var names []string
	for _, p := range st.Policies {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}
