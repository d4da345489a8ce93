package status

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Privileges are the user and capabilities the process runs with, as
// /proc shows them for every thread (capabilities are per thread).
type Privileges struct {
	UID        int      `json:"uid"`
	GID        int      `json:"gid"`
	Effective  []string `json:"effective"` // capability names
	Permitted  []string `json:"permitted"`
	Bounding   []string `json:"bounding"`
	Ambient    []string `json:"ambient"`
	NoNewPrivs bool     `json:"no_new_privs"`
	Threads    int      `json:"threads"`
	// SameInAllThreads: every thread has the main thread's user and
	// capability sets.
	SameInAllThreads bool `json:"same_in_all_threads"`

	CapEff, CapPrm, CapBnd, CapAmb uint64 `json:"-"`
}

// capNames are the capabilities by number (linux/capability.h).
var capNames = []string{"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
	"sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
	"sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
	"mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
	"checkpoint_restore"}

// CapList names the capabilities in set: "cap_net_admin", ...; all of
// them, from the first to the highest the kernel knows, is "all".
func CapList(set uint64) []string {
	out := []string{}
	all := true
	for c := range 64 {
		has := set&(1<<c) != 0
		switch {
		case has && c < len(capNames):
			out = append(out, "cap_"+capNames[c])
		case has:
			out = append(out, "cap_"+strconv.Itoa(c))
		case c < len(capNames):
			all = false
		}
	}
	if all && len(out) > 0 {
		return []string{"all"}
	}
	return out
}

// ReadCaps reads the capability sets of a process or thread status file
// (/proc/PID/status, /proc/PID/task/TID/status).
func ReadCaps(pid int) (eff, prm, inh, amb, bnd uint64, err error) {
	f, err := readStatus(fmt.Sprintf("/proc/%d/status", pid))
	return f.eff, f.prm, f.inh, f.amb, f.bnd, err
}

type procStatus struct {
	uid, gid                int
	eff, prm, inh, amb, bnd uint64
	nnp                     bool
}

func readStatus(path string) (procStatus, error) {
	var s procStatus
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	for _, ln := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(ln, ":")
		v = strings.TrimSpace(v)
		hex := func() uint64 { n, _ := strconv.ParseUint(v, 16, 64); return n }
		first := func() int {
			f := strings.Fields(v)
			if len(f) < 2 {
				return -1
			}
			n, _ := strconv.Atoi(f[1]) // the effective id
			return n
		}
		switch k {
		case "Uid":
			s.uid = first()
		case "Gid":
			s.gid = first()
		case "CapEff":
			s.eff = hex()
		case "CapPrm":
			s.prm = hex()
		case "CapInh":
			s.inh = hex()
		case "CapAmb":
			s.amb = hex()
		case "CapBnd":
			s.bnd = hex()
		case "NoNewPrivs":
			s.nnp = v == "1"
		}
	}
	return s, nil
}

// ReadPrivileges reads this process's privileges, every thread's.
func ReadPrivileges() Privileges {
	main, err := readStatus("/proc/self/status")
	p := Privileges{UID: main.uid, GID: main.gid, CapEff: main.eff, CapPrm: main.prm, CapBnd: main.bnd, CapAmb: main.amb,
		NoNewPrivs: main.nnp, SameInAllThreads: err == nil}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, t := range tasks {
		s, err := readStatus(t)
		if err != nil {
			continue // the thread ended
		}
		p.Threads++
		p.SameInAllThreads = p.SameInAllThreads && s == main
	}
	p.Effective, p.Permitted, p.Bounding, p.Ambient = CapList(p.CapEff), CapList(p.CapPrm), CapList(p.CapBnd), CapList(p.CapAmb)
	return p
}

// Lines describes p for people.
func (p Privileges) Lines() []string {
	list := func(s []string) string {
		if len(s) == 0 {
			return "none"
		}
		return strings.Join(s, ",")
	}
	threads := fmt.Sprintf("the same in all %d threads", p.Threads)
	if !p.SameInAllThreads {
		threads = fmt.Sprintf("NOT the same in all %d threads", p.Threads)
	}
	return []string{
		fmt.Sprintf("uid %d, gid %d, no_new_privs %v, %s", p.UID, p.GID, p.NoNewPrivs, threads),
		"capabilities " + list(p.Effective) + " (permitted " + list(p.Permitted) + ", bounding " + list(p.Bounding) + ", ambient " + list(p.Ambient) + ")",
	}
}
