package kustomize

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// WorkerArg is the first argument that makes a gitopsd binary (or a test
// binary whose TestMain checks for it) serve one build as a worker: see
// ServeWorker. A command line never needs it; it is not a subcommand users
// see.
const WorkerArg = "__gitopsd-build-worker"

// Exit codes of a worker, besides 0 (a response was written) and what the
// kernel and the Go runtime use for a killed or crashed process.
const (
	exitMemory = 3 // the worker's own memory watchdog fired
	exitUsage  = 4 // no request could be read
)

// LimitError is the error of a build that hit one of the Options bounds:
// memory, time, output size, object count, file size, total read or YAML
// expansion. The daemon reports it like any build failure (stage build); a
// caller may branch on it with errors.As, for example to count limits hit.
type LimitError struct {
	Path  string // the kustomization being built, relative to the root
	Limit string // the Options field, like "MaxBuildMemory"
	Msg   string // what was over the bound, in words
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: build stopped: %s (%s)", e.Path, e.Msg, e.Limit)
}

// request is what the parent sends a worker on its standard input.
type request struct {
	Root    string // absolute, symlink-free snapshot root
	Dir     string // absolute, symlink-free kustomization directory inside Root
	Path    string // Dir as the caller named it, for error messages
	Options Options
}

// response is what a worker writes to its standard output, gob-encoded.
type response struct {
	YAML    []byte
	Objects [][]byte // one JSON document per object, in apply order
	Hash    string
	Err     string // the build error, already scrubbed of secret values
	Limit   string // set with Err when a bound was hit: the Options field
	LimitIn string // set with Limit: what was over it
}

// buildInWorker runs one build of dir (inside root) in a child process:
// the same binary started with WorkerArg, a private temporary directory,
// an environment of its own and the memory, CPU and time bounds of the
// options. The child is killed, not asked, when ctx ends or the build time
// runs out; see docs/design.md, "Build isolation", for why a process.
func (b *Builder) buildInWorker(ctx context.Context, root, dir, path string) (*Result, error) {
	tmp, err := privateTempDir()
	if err != nil {
		return nil, fmt.Errorf("%s: build: %w", path, err)
	}
	defer os.RemoveAll(tmp)

	req, err := json.Marshal(request{Root: root, Dir: dir, Path: path, Options: b.opts})
	if err != nil {
		return nil, fmt.Errorf("%s: build: %w", path, err)
	}
	exe, err := b.workerExecutable()
	if err != nil {
		return nil, fmt.Errorf("%s: build: worker: %w", path, err)
	}
	cmd := exec.Command(exe, WorkerArg)
	// Not the private directory: /proc/self/cwd would name it.
	cmd.Dir = "/"
	cmd.Env = workerEnv(tmp, b.opts)
	cmd.Stdin = bytes.NewReader(req)
	cmd.SysProcAttr = workerProcAttr()
	stderr := &limitedBuffer{max: 64 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: build: worker: %w", path, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: build: start worker: %w", path, err)
	}

	// The watchdog kills the worker's whole process group (git, when remote
	// bases are allowed, runs in it too) at the deadline or on cancellation.
	timeout := time.NewTimer(b.opts.MaxBuildTime)
	defer timeout.Stop()
	done := make(chan struct{})
	var killedFor error
	watchdog := make(chan struct{})
	go func() {
		defer close(watchdog)
		select {
		case <-done:
			return
		case <-ctx.Done():
			killedFor = context.Cause(ctx)
		case <-timeout.C:
			killedFor = &LimitError{Path: path, Limit: "MaxBuildTime",
				Msg: fmt.Sprintf("the build ran for longer than %s", b.opts.MaxBuildTime)}
		}
		killGroup(cmd.Process.Pid)
	}()

	// The worker writes YAML and JSON of every object: about twice the
	// rendered output, which the worker itself bounds by MaxOutputSize.
	maxResponse := 2*b.opts.MaxOutputSize + 1<<20
	var resp response
	decErr := gob.NewDecoder(&limitedReader{r: stdout, left: maxResponse}).Decode(&resp)
	if decErr != nil {
		// Stop a worker that is still writing, so that Wait returns.
		killGroup(cmd.Process.Pid)
	}
	io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	close(done)
	<-watchdog

	if killedFor != nil {
		if le := (*LimitError)(nil); errors.As(killedFor, &le) {
			return nil, le
		}
		return nil, fmt.Errorf("%s: build: %w", path, killedFor)
	}
	if errors.Is(decErr, errResponseTooLarge) {
		return nil, &LimitError{Path: path, Limit: "MaxOutputSize",
			Msg: fmt.Sprintf("the worker's output is over %d bytes", maxResponse)}
	}
	if waitErr != nil || decErr != nil {
		return nil, b.workerFailure(path, cmd.ProcessState, stderr.String(), errors.Join(waitErr, decErr))
	}
	return resp.result(path)
}

// workerFailure explains why a worker ended without a response: which
// limit it hit, or that it crashed. The worker's standard error is read to
// tell an out-of-memory crash apart, never quoted: a Go crash dump may hold
// parts of the input.
func (b *Builder) workerFailure(path string, st *os.ProcessState, stderr string, err error) error {
	memory := &LimitError{Path: path, Limit: "MaxBuildMemory",
		Msg: fmt.Sprintf("the build needed more than %d MiB of memory", b.opts.MaxBuildMemory>>20)}
	if st == nil {
		return fmt.Errorf("%s: build: worker: %w", path, err)
	}
	if st.ExitCode() == exitMemory {
		return memory
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		cpu := st.UserTime() + st.SystemTime()
		// The kernel kills at the hard limit; its accounting is in ticks.
		if sig := ws.Signal(); sig == syscall.SIGXCPU || (sig == syscall.SIGKILL && cpu >= cpuLimit(b.opts)-time.Second) {
			return &LimitError{Path: path, Limit: "MaxBuildTime",
				Msg: fmt.Sprintf("the build used more than %s of CPU time", cpuLimit(b.opts))}
		}
	}
	// The Go runtime's words, and a race-detector build's when its shadow
	// memory or its heap meets the address-space limit.
	for _, oom := range []string{"out of memory", "cannot allocate memory",
		"ThreadSanitizer failed to allocate", "too many address space collisions"} {
		if strings.Contains(stderr, oom) {
			return memory
		}
	}
	return fmt.Errorf("%s: build: the build worker failed (%s)", path, st)
}

// result turns a worker's response into a Result or its error.
func (r *response) result(path string) (*Result, error) {
	if r.Limit != "" {
		return nil, &LimitError{Path: path, Limit: r.Limit, Msg: r.LimitIn}
	}
	if r.Err != "" {
		return nil, errors.New(r.Err)
	}
	res := &Result{YAML: r.YAML, Hash: r.Hash, Objects: make([]*unstructured.Unstructured, len(r.Objects))}
	for i, j := range r.Objects {
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(j); err != nil {
			return nil, fmt.Errorf("%s: build: object %d from the worker: %w", path, i, err)
		}
		res.Objects[i] = obj
	}
	return res, nil
}

// workerExecutable is Options.WorkerExecutable, else this binary.
func (b *Builder) workerExecutable() (string, error) {
	if b.opts.WorkerExecutable != "" {
		return b.opts.WorkerExecutable, nil
	}
	return os.Executable()
}

// privateTempDir makes a directory for one build with a name nobody can
// guess (128 random bits) and mode 0700. The worker's TMPDIR and HOME point
// there, so kustomize's clones of remote bases land in it and nowhere a
// kustomization path could name.
func privateTempDir() (string, error) {
	dir := filepath.Join(os.TempDir(), "gitopsd-build-"+rand.Text())
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// workerEnv is the whole environment of a worker: none of the daemon's (no
// KUBECONFIG, cloud credentials or GITOPSD_* settings reach a build). PATH
// is kept only when remote bases are allowed, for kustomize's git, which is
// then told to use network protocols only (no file:// or ext:: helpers)
// and no configuration but its own.
func workerEnv(tmp string, opts Options) []string {
	env := []string{"TMPDIR=" + tmp, "HOME=" + tmp, "LANG=C"}
	if opts.AllowRemoteBases {
		env = append(env,
			"PATH="+os.Getenv("PATH"),
			"GIT_ALLOW_PROTOCOL=https:http:ssh:git",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			"GIT_TERMINAL_PROMPT=0",
			"GIT_ASKPASS=/bin/false",
			"SSH_ASKPASS=/bin/false")
	}
	return env
}

// cpuLimit is the CPU time a worker may use: the build time rounded up to
// the whole seconds the kernel counts in, so that a build spinning on every
// core is stopped no later than the wall clock would stop it.
func cpuLimit(opts Options) time.Duration {
	return time.Duration(math.Ceil(opts.MaxBuildTime.Seconds())) * time.Second
}

// limitedBuffer keeps the first max bytes written to it and drops the rest.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string { return b.buf.String() }

var errResponseTooLarge = errors.New("response too large")

// limitedReader fails with errResponseTooLarge past left bytes.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errResponseTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}
