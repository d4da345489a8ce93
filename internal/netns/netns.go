//go:build linux

package netns

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Dir is where `ip netns` keeps its named namespaces: Dir/NAME is the file
// to open to join namespace NAME, or to give an NFQUEUE socket its namespace.
const Dir = "/var/run/netns"

// InNetns runs fn on an OS thread that has joined the named network
// namespace. Sockets fn creates stay in that namespace for their whole life,
// whichever thread uses them later. fn must not start goroutines that expect
// to run in the namespace.
func InNetns(name string, fn func() error) error {
	target, err := unix.Open(Dir+"/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer unix.Close(target)

	errc := make(chan error, 1)
	go func() {
		// The thread is locked for good unless it is back in its original
		// namespace: a goroutine that exits while locked takes its thread
		// with it, so a thread stuck in the wrong namespace is never reused.
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("netns: own namespace: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns %s: setns: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: back from %s: %w", name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Run runs a command in namespace ns ("" for the current one) and returns
// its combined output; the error names the command and carries its output.
// The command is killed if the calling thread dies.
func Run(ctx context.Context, ns string, args ...string) (string, error) {
	return RunInput(ctx, ns, "", args...)
}

// RunInput is Run with stdin.
func RunInput(ctx context.Context, ns, stdin string, args ...string) (string, error) {
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// WriteSysctl sets net sysctls inside namespace ns; keys use dots.
func WriteSysctl(ns string, kv ...string) error {
	return InNetns(ns, func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			p := "/proc/sys/" + strings.ReplaceAll(kv[i], ".", "/")
			if err := os.WriteFile(p, []byte(kv[i+1]), 0); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", kv[i], kv[i+1], ns, err)
			}
		}
		return nil
	})
}

// ReadSysctl reads one net sysctl inside namespace ns.
func ReadSysctl(ns, key string) (string, error) {
	var v string
	err := InNetns(ns, func() error {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
		v = strings.TrimSpace(string(b))
		return err
	})
	return v, err
}

// NewName returns a name for a set of namespaces, prefix-PID-random, unique
// to this process and run. It first removes the namespaces of runs with the
// same prefix whose process is gone (cleanStale).
func NewName(ctx context.Context, prefix string) (string, error) {
	if err := cleanStale(ctx, prefix); err != nil {
		return "", err
	}
	var rb [3]byte
	if _, err := rand.Read(rb[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%d-%s", prefix, os.Getpid(), hex.EncodeToString(rb[:])), nil
}

// DeleteNamespaces ends the processes left in each named namespace that
// exists and deletes it. Safe to call more than once.
func DeleteNamespaces(names ...string) error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, ns := range names {
		if _, err := os.Stat(Dir + "/" + ns); err != nil {
			continue
		}
		killNetnsProcs(ctx, ns)
		if _, err := Run(ctx, "", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNetnsProcs ends processes still running in namespace ns (a daemon
// whose parent died), so deleting it frees everything.
func killNetnsProcs(ctx context.Context, ns string) {
	out, err := Run(ctx, "", "ip", "netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// cleanStale deletes namespaces named prefix-PID-... whose creating process
// PID no longer exists: leftovers of a crashed or killed run. Namespaces of
// live processes (tests running in parallel) are left alone.
func cleanStale(ctx context.Context, prefix string) error {
	ents, err := os.ReadDir(Dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix+"-")
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 {
			continue
		}
		if pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
			killNetnsProcs(ctx, e.Name())
			if _, err := Run(ctx, "", "ip", "netns", "del", e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ReadNetFile reads /proc/net/NAME (e.g. "snmp", "netfilter/nfnetlink_queue")
// as namespace ns sees it.
func ReadNetFile(ns, name string) (string, error) {
	var s string
	err := InNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/" + name)
		s = string(b)
		return err
	})
	return s, err
}
