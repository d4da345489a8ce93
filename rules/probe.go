//go:build linux

package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/normalize"
)

// The probe's marks. A probe's sockets carry ProbeBit in their mark
// (SO_MARK); its chains save the bit to the connmark with the SYN, so the
// SYN-ACK and every later segment of a probe connection are known by it.
// The daemon's handshake chains return at once for such packets, and the
// probe's chains for all others: each leaves the other's connections alone,
// whatever order their jumps end up in. ProbeFieldMask holds the probe
// normalizer's stateful fields (clamp), as [rules] mark does the daemon's.
const (
	ProbeBit       = normalize.ProbeMark
	ProbeFieldMask = 0x007f8000
)

// ProbeMarks is every mark bit the probe uses: [rules] mark must leave them
// alone (config checks the bit the daemon's rules depend on; the probe
// checks the rest before it starts).
const ProbeMarks = ProbeBit | ProbeFieldMask

// The probe's chains.
const (
	chainProbeOut  = "TCPNORM-PROBE-OUT"
	chainProbeIn   = "TCPNORM-PROBE-IN"
	chainProbeFlow = "TCPNORM-PROBE-FLOW"
	chainProbeSave = "TCPNORM-PROBE-SAVE"
)

// ProbeKnown lists every jump a probe installs.
var ProbeKnown = []Jump{
	{Table: "mangle", From: "OUTPUT", To: chainProbeOut},
	{Table: "mangle", From: "INPUT", To: chainProbeIn},
	{Table: "filter", From: "OUTPUT", To: chainProbeSave},
	{Table: "filter", From: "INPUT", To: chainProbeSave},
}

var prober = owner{known: ProbeKnown, inner: map[string][]string{"mangle": {chainProbeFlow}}, flow: chainProbeFlow, save: chainProbeSave}

// probeSkip is the first rule of each of the daemon's host chains: a probe
// connection's packets return at once.
var probeSkip = map[string]string{
	"TCPNORM-OUT": "-m mark --mark " + hex(ProbeBit) + "/" + hex(ProbeBit),
	"TCPNORM-IN":  "-m connmark --mark " + hex(ProbeBit) + "/" + hex(ProbeBit),
}

// BuildProbe returns a probe's rules: on this host, the handshakes of
// sockets marked with ProbeBit go to queue first, and the later segments of
// those the probe clamps or repairs to queue first+1.
func BuildProbe(first uint16) (*Ruleset, error) {
	if first == 65535 {
		return nil, fmt.Errorf("rules: probe queues %d and %d: queue numbers end at 65535", first, int(first)+1)
	}
	bit := hex(ProbeBit) + "/" + hex(ProbeBit)
	target := queueTarget(first, 1)
	mangle := Table{Name: "mangle", Jumps: []Jump{ProbeKnown[0], ProbeKnown[1]}, Chains: []string{chainProbeOut, chainProbeIn},
		Rules: []string{
			"-A " + chainProbeOut + " -m mark ! --mark " + bit + " -j RETURN",
			// Saved before the queue: an accepted packet leaves the table.
			"-A " + chainProbeOut + " -p tcp -m tcp --tcp-flags SYN SYN -j CONNMARK --save-mark --nfmask " + hex(ProbeBit) + " --ctmask " + hex(ProbeBit),
			"-A " + chainProbeOut + " -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE " + target + " --queue-bypass",
			"-A " + chainProbeIn + " -m connmark ! --mark " + bit + " -j RETURN",
			"-A " + chainProbeIn + " -p tcp -m tcp --tcp-flags SYN SYN -j NFQUEUE " + target + " --queue-bypass",
		}}
	rs := &Ruleset{Spec: Spec{Mode: ModeHost, First: first, Count: 1, Mark: ProbeFieldMask}, Tables: []Table{mangle}}
	mb, err := normalize.NewMarkBits(ProbeFieldMask)
	if err != nil {
		return nil, err
	}
	stateful(rs, mb, prober, "-m mark --mark "+bit)
	return rs, nil
}

// InstallProbe removes a probe's leftover rules, then applies rs (from
// BuildProbe) for both families; on failure it removes what it applied.
func InstallProbe(ctx context.Context, r Runner, rs *Ruleset) error {
	if err := RemoveProbe(ctx, r); err != nil {
		return fmt.Errorf("removing a probe's stale rules: %w", err)
	}
	for _, f := range Families {
		if _, err := r.Run(ctx, rs.Script(f), f.RestoreTool(), "-w", "--noflush"); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.Op = "install probe " + f.String()
			}
			return errors.Join(err, RemoveProbe(ctx, r))
		}
	}
	return nil
}

// RemoveProbe deletes every jump to a probe's chains and the chains, for
// both families. The daemon's rules are untouched.
func RemoveProbe(ctx context.Context, r Runner) error { return prober.remove(ctx, r) }

// ProbeLock is held by a running probe, one per network namespace: a
// probe or daemon that finds it free may remove a probe's leftover rules
// (a killed probe's), and one that finds it held must not.
type ProbeLock struct {
	f    *os.File
	path string
}

// ProbeLockDir holds the lock files.
var ProbeLockDir = "/run/tcpnorm"

// probeLockPath is the lock file of the current network namespace (its
// inode tells namespaces apart).
func probeLockPath() (string, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return "", fmt.Errorf("network namespace: %w", err)
	}
	return filepath.Join(ProbeLockDir, "probe-netns-"+strconv.FormatUint(st.Ino, 10)+".lock"), nil
}

// TryProbeLock takes the current network namespace's probe lock without
// waiting; held reports a running probe (nil lock, nil error).
func TryProbeLock() (l *ProbeLock, held bool, err error) {
	p, err := probeLockPath()
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, false, err
	}
	// The holder removes the file when it unlocks (so namespaces that
	// come and go leave none behind): a lock taken on a file that was
	// removed meanwhile is taken again on the new one.
	for try := 0; ; try++ {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, false, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, true, nil
			}
			return nil, false, fmt.Errorf("lock %s: %w", p, err)
		}
		var held, onDisk unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(p, &onDisk) == nil && held.Ino == onDisk.Ino && held.Dev == onDisk.Dev {
			return &ProbeLock{f: f, path: p}, false, nil
		}
		f.Close()
		if try == 10 {
			return nil, false, fmt.Errorf("lock %s: the file keeps being replaced", p)
		}
	}
}

// Unlock removes the lock file and releases the lock.
func (l *ProbeLock) Unlock() error {
	err := os.Remove(l.path)
	return errors.Join(err, l.f.Close())
}

// RemoveProbeLeftovers removes a killed probe's rules if no probe holds the
// lock of this namespace: the daemon calls it at start.
func RemoveProbeLeftovers(ctx context.Context, r Runner) error {
	l, held, err := TryProbeLock()
	if err != nil || held {
		return err
	}
	defer l.Unlock()
	return RemoveProbe(ctx, r)
}
