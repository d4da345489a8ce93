package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/evidence"
	"github.com/tcpnorm/tcpnorm/status"
)

const reportHelp = `Prints a plain-text summary of one policy for the upstream ticket: why it
exists, what it changes, since when it is active and until when, the
connections it touched (from the running daemon, and from the evidence file),
one handshake as received and as sent (from the evidence file, when the
policy has evidence = true) and where the evidence file is. POLICY is the
policy file's name without .toml. Works without a running daemon (it then
says so and reports what the files hold).`

func runReport(args []string, stdout, stderr io.Writer, now time.Time) int {
	path, pos, code, ok := command{name: "report", args: "POLICY", nargs: 1, help: reportHelp}.parse(args, stdout, stderr)
	if !ok {
		return code
	}
	name := strings.TrimSuffix(pos[0], ".toml")
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var pf *config.PolicyFile
	var names []string
	for _, p := range cfg.Policies {
		names = append(names, p.Policy.Name)
		if p.Policy.Name == name {
			pf = p
		}
	}
	if pf == nil {
		fmt.Fprintf(stderr, "tcpnorm report: no policy %q in %s (policies: %s)\n", name, cfg.PolicyDir, strings.Join(names, ", "))
		return 1
	}
	doc, daemonErr := fetchStatus(path, nil)
	var live *status.Policy
	if daemonErr == nil {
		for i := range doc.Policies {
			if doc.Policies[i].Name == name {
				live = &doc.Policies[i]
			}
		}
	}
	writeReport(stdout, cfg, pf, doc, live, daemonErr, now)
	return 0
}

func writeReport(w io.Writer, cfg *config.Config, pf *config.PolicyFile, doc *status.Document, live *status.Policy, daemonErr error, now time.Time) {
	p := pf.Policy
	st := config.Describe(pf)
	fmt.Fprintf(w, "tcpnorm workaround %s (%s)\n", p.Name, pf.File)
	row := func(k, f string, a ...any) { fmt.Fprintf(w, "  %-11s %s\n", k, fmt.Sprintf(f, a...)) }
	if p.Ticket != "" {
		row("ticket", "%s", p.Ticket)
	}
	if p.Reason != "" {
		row("reason", "%s", p.Reason)
	}
	peer := []string{}
	if pf.Domain != "" {
		d := "domain " + pf.Domain
		if pf.MX {
			d += " and its MX hosts"
		}
		if pf.SPF {
			d += " and its SPF senders"
		}
		peer = append(peer, d)
	}
	if len(pf.CIDRs) > 0 {
		var cs []string
		for _, c := range pf.CIDRs {
			cs = append(cs, c.String())
		}
		peer = append(peer, strings.Join(cs, ", "))
	}
	row("peer", "%s", strings.Join(peer, "; "))
	row("scope", "%s connections, %s, ports %s", st.Direction, st.Mode, status.Ports(p.Ports))
	row("changes", "%s", st.Actions)
	expIn := (*float64)(nil)
	if !p.Expires.IsZero() {
		left := p.Expires.Sub(now).Seconds()
		expIn = &left
	}
	expires := ""
	if !p.Expires.IsZero() {
		expires = p.Expires.UTC().Format(time.RFC3339)
	}
	row("expires", "%s", status.Expiry(expires, expIn, !p.Expires.IsZero() && !now.Before(p.Expires)))
	if pf.Probe != 0 {
		// The running daemon's view, else the states it saved.
		if live != nil && live.Probe != nil {
			every, st := live.Probe.State()
			row("probe", "%s", config.ProbeSummary(every, st, now))
		} else if probes, err := config.ReadProbeStates(config.ProbeStateFile(cfg)); err == nil {
			var st *config.ProbeState
			if s, ok := probes[p.Name]; ok {
				st = &s
			}
			row("probe", "%s", config.ProbeSummary(pf.Probe, st, now))
		}
	}

	fmt.Fprintln(w)
	switch {
	case daemonErr != nil:
		row("daemon", "not reachable (%v): no live counters", daemonErr)
	case live == nil:
		row("daemon", "running since %s but without this policy (reload it: systemctl reload tcpnorm)", doc.Started.Format(time.RFC3339))
	default:
		since := doc.Started
		if live.Loaded != nil && live.Loaded.After(since) {
			since = *live.Loaded
		}
		row("active", "since %s (%s ago)", since.Format(time.RFC3339), status.Ago(doc.Now, since))
		row("addresses", "%s", strings.Join(live.Addresses, ", "))
		last := "no connection yet"
		if live.LastMatch != nil {
			last = "the last " + status.Ago(doc.Now, *live.LastMatch) + " ago"
		}
		row("touched", "%d connections (SYNs matched), %s", live.Connections, last)
		var rs []string
		for _, r := range live.Rewrites {
			rs = append(rs, fmt.Sprintf("%s %s: %d segments", r.Option, r.Action, r.Count))
		}
		for _, r := range live.WouldRewrite {
			rs = append(rs, fmt.Sprintf("%s %s: %d segments (log-only: not changed)", r.Option, r.Action, r.Count))
		}
		if len(rs) == 0 {
			rs = []string{"none"}
		}
		row("rewrites", "%s", strings.Join(rs, "; "))
	}

	fmt.Fprintln(w)
	ev := evidence.Settings{Dir: cfg.Evidence.Dir, Keep: cfg.Evidence.Keep}
	if live != nil && live.EvidenceFile != "" {
		// The running daemon's directory, should the file say otherwise
		// since its last reload.
		ev.Dir = filepath.Dir(live.EvidenceFile)
	}
	files := evidence.Files(ev, p.Name)
	file := evidence.File(ev.Dir, p.Name)
	if !p.Evidence && len(files) == 0 {
		row("evidence", "off: add `evidence = true` to %s and reload; handshakes are then kept in %s", pf.File, file)
		return
	}
	if len(files) == 0 {
		row("evidence", "%s: no handshake recorded yet", file)
		return
	}
	sum, err := evidence.Summarize(files)
	if err != nil {
		row("evidence", "%s: %v", file, err)
		return
	}
	var size int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			size += fi.Size()
		}
	}
	what := file
	if len(files) > 1 {
		what += fmt.Sprintf(" (and %d rotated)", len(files)-1)
	}
	row("evidence", "%s, %d bytes, pcapng: open with wireshark or tcpdump -r", what, size)
	if !p.Evidence {
		row("", "(evidence is off now; these files are from before)")
	}
	if sum.Packets > 0 {
		row("recorded", "%d connections (%d rewritten), %s to %s", sum.Connections, sum.Rewritten,
			sum.First.UTC().Format(time.RFC3339), sum.Last.UTC().Format(time.RFC3339))
	}
	if len(sum.Handshake) > 0 {
		fmt.Fprintf(w, "\none handshake, each segment as tcpnorm received it and as it sent it on:\n")
		for _, pk := range sum.Handshake {
			fmt.Fprintf(w, "  %s\n      # %s\n", pk.Line(), pk.Comment)
		}
	}
}
