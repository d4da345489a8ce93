//go:build linux

package netns

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a long-running program in a namespace: the lab's daemon, the
// benchmarks' servers and consumers. `ip netns exec` execs the program, so
// Pid is the program's own. It dies with the process that started it.
type Proc struct {
	Name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	ready  chan struct{}
	exited chan struct{}
	err    error // exit status, once exited is closed
}

// maxProcLines bounds the output a Proc keeps.
const maxProcLines = 100000

// StartProc starts args in namespace ns and, when readyWord is not empty,
// waits until the program prints a line containing it. On any error the
// program is stopped.
func StartProc(ctx context.Context, ns, readyWord string, timeout time.Duration, args ...string) (*Proc, error) {
	if len(args) == 0 {
		return nil, errors.New("StartProc: no program")
	}
	p := &Proc{Name: args[0], ready: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	r, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(args, " "), err)
	}
	go p.read(r, readyWord)
	if readyWord == "" {
		return p, nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.ready:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before ready (%v):\n%s", strings.Join(args, " "), p.err, p.Log())
	case <-t.C:
		p.Stop()
		return nil, fmt.Errorf("%s not ready after %s:\n%s", strings.Join(args, " "), timeout, p.Log())
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

func (p *Proc) read(r io.Reader, readyWord string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	readied := readyWord == ""
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.lines) < maxProcLines {
			p.lines = append(p.lines, line)
		}
		p.mu.Unlock()
		if !readied && strings.Contains(line, readyWord) {
			readied = true
			close(p.ready)
		}
	}
	p.err = p.cmd.Wait()
	close(p.exited)
}

// Signal sends sig to the program (perf record ends on SIGINT).
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is the program's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Log is everything the program printed so far.
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Lines is what the program printed so far, line by line.
func (p *Proc) Lines() []string { l, _ := p.LogLines(0); return l }

// LogLines returns the program's lines from index from on, and the next
// index.
func (p *Proc) LogLines(from int) ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	from = min(from, len(p.lines))
	return append([]string(nil), p.lines[from:]...), len(p.lines)
}

// Running reports whether the program has not exited.
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Kill ends the program with SIGKILL, as the OOM killer or a crash would
// (a daemon then removes none of its rules). It returns once it is gone.
func (p *Proc) Kill() {
	if p.Running() {
		p.cmd.Process.Kill()
	}
	<-p.exited
}

// Stop sends SIGTERM and waits for the program to exit (SIGKILL after
// 10s). It returns the exit error, nil for a clean exit.
func (p *Proc) Stop() error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s ignored SIGTERM for 10s: killed", p.Name)
	}
	return p.err
}
