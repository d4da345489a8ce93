package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tcpnorm/tcpnorm/config"
	"github.com/tcpnorm/tcpnorm/rules"
	"github.com/tcpnorm/tcpnorm/status"
)

// keptCaps are the capabilities the daemon keeps once its queues are
// bound: CAP_NET_ADMIN for the queues, rules, sets, marks and the probe's
// queues; CAP_NET_RAW for iptables' set match, which looks sets up by name
// over a raw socket.
var keptCaps = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}

// dropPrivileges narrows the process, in every thread, to keptCaps: the
// effective, permitted and inheritable sets hold them and nothing else, the
// bounding set too (when the process may change it), the ambient set
// passes them to iptables-restore and ipset, and no_new_privs is set. With
// user = NAME in the config it switches to that user first, keeping the
// two. What the daemon writes later as that user is made before: the
// evidence directory and the probe's lock directory, handed over to it.
//
// Capabilities are per thread: each change runs on every thread of the
// process (syscall.AllThreadsSyscall, which needs a binary built without
// cgo), and the result is read back from every thread.
func dropPrivileges(cfg *config.Config) error {
	uid, gid := os.Geteuid(), os.Getegid()
	switching := false
	if cfg.User != "" {
		u, err := user.Lookup(cfg.User)
		if err != nil {
			return err
		}
		tu, err1 := strconv.Atoi(u.Uid)
		tg, err2 := strconv.Atoi(u.Gid)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("user %s: %w", cfg.User, err)
		}
		if tu != uid {
			if uid != 0 {
				return fmt.Errorf("user %s: switching to it needs root (running as uid %d)", cfg.User, uid)
			}
			switching = true
		}
		uid, gid = tu, tg
	}
	// The probe's lock directory belongs to whoever runs the daemon (a
	// daemon without CAP_DAC_OVERRIDE cannot take a lock in a directory
	// an earlier one, running as another user, left). The evidence
	// directory is handed over only on a switch: without one the process
	// keeps its uid, and with it what it may write.
	type dir struct {
		path string
		perm os.FileMode
	}
	dirs := []dir{{rules.ProbeLockDir, 0o755}}
	if switching {
		dirs = append(dirs, dir{cfg.Evidence.Dir, 0o750})
	}
	for _, d := range dirs {
		if os.Geteuid() != 0 {
			break
		}
		if err := os.MkdirAll(d.path, d.perm); err != nil {
			return err
		}
		if err := os.Chown(d.path, uid, gid); err != nil {
			return err
		}
	}

	if switching {
		if err := allThreadsPrctl(unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
			return fmt.Errorf("keep capabilities across the user switch: %w", err)
		}
	}
	var kept uint64
	for _, c := range keptCaps {
		kept |= 1 << c
	}
	// The bounding set needs CAP_SETPCAP, which a daemon started
	// unprivileged with only the two capabilities does not have: its
	// bounding set is the starter's business (systemd's
	// CapabilityBoundingSet, setpriv --bounding-set).
	_, _, _, _, bnd, _ := status.ReadCaps(os.Getpid())
	if haveCap(unix.CAP_SETPCAP) {
		for c := uintptr(0); c <= lastCap(); c++ {
			if kept&(1<<c) == 0 && bnd&(1<<c) != 0 {
				if err := allThreadsPrctl(unix.PR_CAPBSET_DROP, c, 0); err != nil {
					return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
				}
			}
		}
	}
	if switching {
		if err := syscall.Setgroups([]int{gid}); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setresgid(gid, gid, gid); err != nil {
			return fmt.Errorf("setresgid %d: %w", gid, err)
		}
		if err := syscall.Setresuid(uid, uid, uid); err != nil {
			return fmt.Errorf("setresuid %d: %w", uid, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{{Effective: uint32(kept), Permitted: uint32(kept), Inheritable: uint32(kept)}}
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", allThreadsErr(e))
	}
	for _, c := range keptCaps {
		if _, _, e := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, c, 0, 0, 0); e != 0 {
			return fmt.Errorf("ambient capability %d: %w", c, allThreadsErr(e))
		}
	}
	if err := allThreadsPrctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// Read back from every thread.
	p := status.ReadPrivileges()
	if !p.SameInAllThreads || p.CapEff != kept || p.CapPrm != kept || p.UID != uid || !p.NoNewPrivs {
		return fmt.Errorf("privileges after the drop: %s", strings.Join(p.Lines(), "; "))
	}
	return nil
}

func allThreadsPrctl(op int, arg2, arg3 uintptr) error {
	if _, _, e := syscall.AllThreadsSyscall(unix.SYS_PRCTL, uintptr(op), arg2, arg3); e != 0 {
		return allThreadsErr(e)
	}
	return nil
}

func allThreadsErr(e syscall.Errno) error {
	if e == syscall.ENOTSUP {
		return fmt.Errorf("%w (a binary built with cgo cannot change every thread: build with CGO_ENABLED=0)", e)
	}
	return e
}

// haveCap reports whether capability c is in this thread's effective set.
func haveCap(c uintptr) bool {
	eff, _, _, _, _, _ := status.ReadCaps(os.Getpid())
	return eff&(1<<c) != 0
}

// lastCap is the kernel's highest capability number.
func lastCap() uintptr {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 40
	}
	return uintptr(n)
}
