package local

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// proc is one running OS process: our child, or one adopted from an earlier
// ship (not our child, so it is watched through /proc instead of waited on).
type proc struct {
	pid        int
	port       int
	startTicks uint64    // /proc/PID/stat starttime: tells a reused PID apart
	started    time.Time // wall clock, for state files and messages
	exited     chan struct{}
	status     string // how it ended; set before exited is closed
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the instance binds it; the instance then exits with
// "address already in use" and is retried on another port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startProc starts cmd in its own process group with stdout and stderr
// appended straight to files, so the process keeps running and logging
// when ship itself stops.
func startProc(name string, args, env []string, dir string, stdout, stderr string, port int) (*proc, error) {
	outf, err := os.OpenFile(stdout, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer outf.Close()
	errf, err := os.OpenFile(stderr, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer errf.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.Stdout = outf
	cmd.Stderr = errf
	// Own process group: a terminal's Ctrl-C to ship must not reach the
	// instances mid-drain, and stopping signals the whole group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{pid: cmd.Process.Pid, port: port, started: time.Now(), exited: make(chan struct{})}
	if st, err := readStat(p.pid); err == nil {
		p.startTicks = st.startTicks
	}
	go func() {
		waitExited(p.pid)
		p.status = exitStatus(cmd.Wait())
		close(p.exited)
	}()
	return p, nil
}

// waitExited returns once our child pid has exited, leaving the reaping to
// Wait. Wait alone blocks an OS thread in waitid for the whole life of the
// child (1,000 instances: 1,000 threads in ship); the pidfd is waited on by
// Go's poller instead. Where pidfds cannot be polled it returns at once
// and Wait blocks as before.
func waitExited(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		// WNOWAIT: only look; Wait reaps. Linux zeroes info when the child
		// is still running.
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		return err != nil || info.Signo != 0
	})
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return "exit status 0"
}

// adoptProc watches a live process of an earlier ship. It is not our
// child, so it cannot be waited for: a pidfd (Linux 5.10+) becomes readable
// when it exits, which Go's poller waits for without a thread or a timer
// (1,000 adopted instances polled every 100 ms cost ship a good part of a
// core); without pidfds, /proc is polled every 100 ms.
func adoptProc(pid, port int, startTicks uint64, started time.Time, stop <-chan struct{}) *proc {
	p := &proc{pid: pid, port: port, startTicks: startTicks, started: started, exited: make(chan struct{})}
	go func() {
		gone, ok := waitPidfd(pid, startTicks, stop)
		if !ok {
			gone = pollExit(pid, startTicks, stop)
		}
		if gone {
			p.status = "exited (status unknown: adopted from an earlier ship)"
			close(p.exited)
		}
	}()
	return p
}

// waitPidfd waits until pid (the process that started at startTicks) is
// gone or stop closes. ok is false when pidfds cannot be used here.
func waitPidfd(pid int, startTicks uint64, stop <-chan struct{}) (gone, ok bool) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return true, true
		}
		return false, false
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return false, false
	}
	waiting := make(chan struct{})
	defer close(waiting)
	go func() { // owned here: ends with the wait
		select {
		case <-stop:
			f.SetReadDeadline(time.Now()) // ends the wait below
		case <-waiting:
		}
	}()
	// Checked first (the PID may have been reused before the pidfd was
	// opened), then each time the pidfd is readable.
	if err := rc.Read(func(uintptr) bool {
		gone = !alive(pid, startTicks)
		return gone
	}); err == nil {
		return true, true
	}
	select {
	case <-stop:
		return false, true
	default:
		return false, false // not pollable: fall back to polling
	}
}

// pollExit polls /proc until pid is gone (true) or stop closes (false).
func pollExit(pid int, startTicks uint64, stop <-chan struct{}) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if !alive(pid, startTicks) {
			return true
		}
		select {
		case <-t.C:
		case <-stop:
			return false
		}
	}
}

type procStat struct {
	state      byte
	pgrp       int
	startTicks uint64
}

// readStat parses /proc/PID/stat; the command name may hold spaces and
// parentheses, so fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	pgrp, err1 := strconv.Atoi(f[2])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return procStat{state: f[0][0], pgrp: pgrp, startTicks: start}, nil
}

// alive reports whether pid is still the process that started at
// startTicks (not a zombie, not a reused PID).
func alive(pid int, startTicks uint64) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X' && st.startTicks == startTicks
}

// groupAlive reports whether any process is left in group pgid.
func groupAlive(pgid int) bool {
	return pgid > 1 && syscall.Kill(-pgid, 0) == nil
}

// stopProc drains p: SIGTERM to its group, SIGKILL after grace, then
// SIGKILL to whatever is left of the group. It reports how it ended.
func stopProc(p *proc, grace time.Duration) (how string) {
	select {
	case <-p.exited:
		killGroup(p.pid, syscall.SIGKILL)
		return p.status
	default:
	}
	killGroup(p.pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		how = "stopped by SIGTERM (" + p.status + ")"
	case <-time.After(grace):
		killGroup(p.pid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
		how = fmt.Sprintf("killed with SIGKILL after a %s grace", grace)
	}
	if groupAlive(p.pid) {
		killGroup(p.pid, syscall.SIGKILL)
	}
	return how
}
