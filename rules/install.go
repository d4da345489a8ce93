//go:build linux

package rules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// Runner runs one rule tool. Exec runs it on this host; tests run it inside
// a network namespace with Exec{Prefix: []string{"ip", "netns", "exec", ns}}.
type Runner interface {
	// Run runs name with args, feeding it stdin, and returns its standard
	// output. A failure returns an *Error carrying the tool's messages.
	Run(ctx context.Context, stdin string, name string, args ...string) (string, error)
}

// Error is a failed rule tool run.
type Error struct {
	Op     string // what tcpnorm was doing, e.g. "install ipv4"
	Cmd    string // the command line
	Output string // the tool's standard error, trimmed
	Err    error
}

func (e *Error) Error() string {
	s := "rules: " + e.Op + ": " + e.Cmd + ": " + e.Err.Error()
	if e.Output != "" {
		s += ": " + e.Output
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Exec runs the tools as child processes, each command line prefixed by
// Prefix if set.
type Exec struct {
	Prefix []string
}

func (x Exec) Run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	argv := append(append(append([]string(nil), x.Prefix...), name), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &Error{Cmd: strings.Join(argv, " "), Output: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.String(), nil
}

// Install applies rs: it creates the address sets (an earlier run's are
// kept, members and all, until UpdateSets fills them), then replaces, in
// one iptables-restore per family, whatever rules of tcpnorm's are there
// with rs's: each table's old jumps and chains go in the same commit as
// the new ones come in. So a daemon started over a killed one's rules
// never leaves the flows it inherits without rules: between a removal and
// an install they would pass unrewritten (a clamped flow's windows read as
// field << N, a repaired flow's scrambled TSvals reaching the local host).
// A set an earlier run left with other parameters is replaced the old way:
// every rule and set removed, then created anew. On failure Install removes
// whatever it applied and returns the error.
func Install(ctx context.Context, r Runner, rs *Ruleset) error {
	if err := CreateSets(ctx, r, rs.Spec); err != nil {
		if err := Uninstall(ctx, r, rs.Spec); err != nil {
			return fmt.Errorf("removing stale rules: %w", err)
		}
		if err := CreateSets(ctx, r, rs.Spec); err != nil {
			return err
		}
	}
	for _, f := range Families {
		script, err := daemon.replaceScript(ctx, r, f, rs)
		if err == nil {
			_, err = r.Run(ctx, script, f.RestoreTool(), "-w", "--noflush")
			err = opErr(err, "install "+f.String())
		}
		if err != nil {
			if rerr := Uninstall(ctx, r, rs.Spec); rerr != nil {
				return errors.Join(err, rerr)
			}
			return err
		}
	}
	return nil
}

// replaceScript is the input for `RestoreTool --noflush` of family f that
// replaces the rules of own's present in each table with rs's: the chains
// declared (and so flushed), every copy of a known jump deleted, rs's rules
// and jumps added, and the chains rs no longer has deleted, one commit per
// table.
func (own owner) replaceScript(ctx context.Context, r Runner, f Family, rs *Ruleset) (string, error) {
	tables := own.knownTables()
	for _, t := range rs.Tables {
		if !slices.Contains(tables, t.Name) {
			tables = append(tables, t.Name)
		}
	}
	var b strings.Builder
	for _, name := range tables {
		save, err := r.Run(ctx, "", f.SaveTool(), "-t", name)
		if err != nil {
			return "", opErr(err, "list "+f.String()+" "+name)
		}
		present := parseSave(save, own.known)
		var t Table
		if i := slices.IndexFunc(rs.Tables, func(t Table) bool { return t.Name == name }); i >= 0 {
			t = rs.Tables[i]
		}
		var stale []string
		for _, c := range own.knownChains(name) {
			if present.chains[c] && !slices.Contains(t.Chains, c) {
				stale = append(stale, c)
			}
		}
		var drop []string
		for _, j := range own.known {
			if j.Table == name {
				for range min(present.jumps[j], maxDuplicates) {
					drop = append(drop, "-D "+j.From+" "+j.Rule())
				}
			}
		}
		if len(t.Chains)+len(t.Rules)+len(t.Jumps)+len(stale)+len(drop) == 0 {
			continue
		}
		b.WriteString("*" + name + "\n")
		// Declaring a stale chain flushes it: nothing jumps from it any
		// more when it is deleted below.
		for _, c := range append(slices.Clone(t.Chains), stale...) {
			b.WriteString(":" + c + " - [0:0]\n")
		}
		for _, d := range drop {
			b.WriteString(d + "\n")
		}
		rs.writeRules(&b, f, t)
		for _, c := range stale {
			b.WriteString("-X " + c + "\n")
		}
		b.WriteString("COMMIT\n")
	}
	return b.String(), nil
}

// Uninstall removes every rule of tcpnorm's (Remove), then the address sets
// of s, which can be destroyed only once no rule matches them. The sets
// are left alone if removing the rules failed.
func Uninstall(ctx context.Context, r Runner, s Spec) error {
	if err := Remove(ctx, r); err != nil {
		return err
	}
	return RemoveSets(ctx, r, s)
}

// maxDuplicates bounds how many copies of one jump rule Remove deletes, so a
// tool that reports success without deleting cannot loop forever.
const maxDuplicates = 64

// Remove deletes, for both families, every jump to tcpnorm's chains (every
// copy) and then the chains. It touches no other rule. It keeps going after
// an error and returns all of them.
func Remove(ctx context.Context, r Runner) error { return daemon.remove(ctx, r) }

func (own owner) remove(ctx context.Context, r Runner) error {
	var errs []error
	for _, f := range Families {
		for _, table := range own.knownTables() {
			if err := own.removeTable(ctx, r, f, table); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (own owner) removeTable(ctx context.Context, r Runner, f Family, table string) error {
	save, err := r.Run(ctx, "", f.SaveTool(), "-t", table)
	if err != nil {
		return opErr(err, "list "+f.String()+" "+table)
	}
	present := parseSave(save, own.known)
	var errs []error
	for _, j := range own.known {
		if j.Table != table {
			continue
		}
		n := present.jumps[j]
		if n > maxDuplicates {
			n = maxDuplicates
		}
		for i := 0; i < n; i++ {
			if _, err := r.Run(ctx, "", f.Tool(), "-w", "-t", table, "-D", j.From, "-j", j.To); err != nil {
				errs = append(errs, opErr(err, "remove "+f.String()+" jump"))
				break
			}
		}
	}
	// Flush every chain before deleting any: tcpnorm's chains jump to each
	// other, and a chain still referenced cannot be deleted.
	var flushed []string
	for _, c := range own.knownChains(table) {
		if !present.chains[c] {
			continue
		}
		if _, err := r.Run(ctx, "", f.Tool(), "-w", "-t", table, "-F", c); err != nil {
			errs = append(errs, opErr(err, "flush "+f.String()+" chain"))
			continue
		}
		flushed = append(flushed, c)
	}
	for _, c := range flushed {
		if _, err := r.Run(ctx, "", f.Tool(), "-w", "-t", table, "-X", c); err != nil {
			errs = append(errs, opErr(err, "delete "+f.String()+" chain"))
		}
	}
	return errors.Join(errs...)
}

func opErr(err error, op string) error {
	var e *Error
	if errors.As(err, &e) {
		e.Op = op
	}
	return err
}

// saved is what an iptables-save of one table shows of tcpnorm's rules.
type saved struct {
	chains map[string]bool
	jumps  map[Jump]int // copies of each known jump rule
}

// parseSave reads `iptables-save -t TABLE` output. Only exact copies of
// tcpnorm's jump rules count: a rule an operator wrote that happens to jump
// to a tcpnorm chain with extra matches is not tcpnorm's to delete.
func parseSave(out string, known []Jump) saved {
	s := saved{chains: map[string]bool{}, jumps: map[Jump]int{}}
	table := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			s.chains[name] = true
		case strings.HasPrefix(line, "-A "):
			for _, j := range known {
				if j.Table == table && line == "-A "+j.From+" "+j.Rule() {
					s.jumps[j]++
				}
			}
		}
	}
	return s
}

// Lines returns the lines of an iptables-save output that belong to
// tcpnorm: its chain declarations, its chains' rules and its jumps, for
// tests and diagnostics.
func Lines(save string) []string {
	var out []string
	for _, line := range strings.Split(save, "\n") {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "TCPNORM-") {
			out = append(out, line)
		}
	}
	return out
}
