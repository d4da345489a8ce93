//go:build linux

package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// searchable makes the directories up to dir searchable by an MTA's
// unprivileged user (named user in the error): those under the temporary
// directory (a test's, 0700) are opened up; any other is the host's, left
// as it is, and must already be.
func searchable(dir, user string) error {
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for d := filepath.Clean(dir); d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 != 0 {
			continue
		}
		if !strings.HasPrefix(d, tmp) {
			return fmt.Errorf("%s is not searchable by the %s user; put the instance under %s", d, user, os.TempDir())
		}
		if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	return nil
}

// programPids lists the processes running the executable exe: an MTA
// unpacked under a test's directory forks delivery processes that outlive
// the command which started them, and exe names only those.
func programPids(exe string) []int {
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && l == exe {
			pids = append(pids, pid)
		}
	}
	return pids
}

// stopProgram ends every process running exe, SIGTERM first and SIGKILL
// after 5 s, and returns once they are gone or after 10 s.
func stopProgram(exe string) error {
	sig := syscall.SIGTERM
	start := time.Now()
	for {
		pids := programPids(exe)
		if len(pids) == 0 {
			return nil
		}
		if time.Since(start) > 5*time.Second {
			sig = syscall.SIGKILL
		}
		if time.Since(start) > 10*time.Second {
			return fmt.Errorf("%s: processes %v still running after SIGKILL", exe, pids)
		}
		for _, p := range pids {
			syscall.Kill(p, sig)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// AddSystemUser creates the system user and group name for the time of a
// test (useradd --system --user-group, no home, no shell) unless the user
// exists. remove deletes what it created, and nothing when it created
// nothing.
func AddSystemUser(name string) (remove func() error, err error) {
	if exec.Command("getent", "passwd", name).Run() == nil {
		return func() error { return nil }, nil
	}
	out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
		"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("useradd %s: %v: %s", name, err, out)
	}
	return func() error {
		var errs []error
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("userdel %s: %v: %s", name, err, out))
		}
		// userdel takes the user's own group with it (USERGROUPS_ENAB);
		// when it did not, the group goes too.
		if exec.Command("getent", "group", name).Run() == nil {
			if out, err := exec.Command("groupdel", name).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("groupdel %s: %v: %s", name, err, out))
			}
		}
		return errors.Join(errs...)
	}, nil
}
