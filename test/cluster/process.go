package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one control-plane component running as a child process in its
// own process group, with its output in <state>/logs/<name>.log.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	pidPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid once done is closed

	// args and ready start it again (Cluster.Restart); killed is set when
	// a test killed it on purpose (Cluster.Kill), so that its end is not a
	// failure of the cluster.
	args   []string
	ready  func(context.Context) error
	killed atomic.Bool
}

// startProcess starts bin with args. The child gets SIGKILL when this process
// dies (Pdeathsig), so a killed test binary leaves no component behind; its
// pid is recorded in the state dir so that the next start can reap survivors
// of a crash that Pdeathsig cannot cover (for example kill -9 of a wrapper).
// A restarted component's output is appended to the log of its first run.
func startProcess(stateDir, name, bin string, args []string, env []string, restart bool) (*process, error) {
	logDir := filepath.Join(stateDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	p := &process{
		name:    name,
		logPath: filepath.Join(logDir, name+".log"),
		pidPath: filepath.Join(stateDir, "pids", name+".pid"),
		done:    make(chan struct{}),
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if restart {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	logFile, err := os.OpenFile(p.logPath, flags, 0o644)
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = logFile
	p.cmd.Stderr = logFile
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := os.MkdirAll(filepath.Dir(p.pidPath), 0o755); err == nil {
		_ = os.WriteFile(p.pidPath, []byte(strconv.Itoa(p.cmd.Process.Pid)), 0o644)
	}
	go func() {
		p.err = p.cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process has ended, with its exit error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		return true, fmt.Errorf("%s exited: %v\n%s", p.name, p.err, p.tail(40))
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after grace.
func (p *process) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Reap anything left in the group (none of our components fork, but a
	// component that did must not outlive the cluster).
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	_ = os.Remove(p.pidPath)
}

// tail returns the last n lines of the component's log.
func (p *process) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// reapStale kills process groups recorded by an earlier run in stateDir that
// are still alive, so that a crashed `make cluster` does not hold its ports.
func reapStale(stateDir string) {
	files, _ := filepath.Glob(filepath.Join(stateDir, "pids", "*.pid"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil && pid > 1 && sameBinaryAlive(pid) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = os.Remove(f)
	}
}

// sameBinaryAlive guards against killing an unrelated process that reused a
// recorded pid: only a process whose command line names a state-dir path of
// ours, or one of our binaries, is taken.
func sameBinaryAlive(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	for _, name := range binaries {
		if bytes.Contains(cmdline, []byte(name)) {
			return true
		}
	}
	return false
}

var errStopped = errors.New("cluster stopped")

// cpuTime reads the CPU time (user + system) a running process has used
// from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing one. utime and stime are
	// fields 14 and 15, in clock ticks.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ticks) * (time.Second / 100), nil
}
