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
	"sync"
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
	Tmp     string // the private directory of this build (see privateTempDir)
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
//
// The worker is the spare one started after the previous build, when there
// is one (Options.SpareWorker, takeWorker): its start-up and kustomize's
// initialisation are then already done.
func (b *Builder) buildInWorker(ctx context.Context, root, dir, path string) (*Result, error) {
	exe, err := b.workerExecutable()
	if err != nil {
		return nil, fmt.Errorf("%s: build: worker: %w", path, err)
	}
	tmp, err := privateTempDir()
	if err != nil {
		return nil, fmt.Errorf("%s: build: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	req, err := json.Marshal(request{Root: root, Dir: dir, Path: path, Tmp: tmp, Options: b.opts})
	if err != nil {
		return nil, fmt.Errorf("%s: build: %w", path, err)
	}
	key := workerKey{exe: exe, remote: b.opts.AllowRemoteBases}
	w, err := takeWorker(key)
	if err != nil {
		return nil, fmt.Errorf("%s: build: start worker: %w", path, err)
	}
	defer w.close()
	if b.opts.SpareWorker {
		// The next build's worker starts (and initialises) while there is
		// nothing to build, not while the next commit waits.
		defer refillSpare(key)
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
		w.kill()
	}()

	// A worker that has died since it was started fails the write or the
	// decoding below, and is reported from its exit status.
	_, writeErr := w.stdin.Write(req)
	w.stdin.Close()
	// The worker writes YAML and JSON of every object: about twice the
	// rendered output, which the worker itself bounds by MaxOutputSize.
	maxResponse := 2*b.opts.MaxOutputSize + 1<<20
	var resp response
	decErr := gob.NewDecoder(&limitedReader{r: w.stdout, left: maxResponse}).Decode(&resp)
	if decErr != nil {
		// Stop a worker that is still writing, so that it exits.
		w.kill()
	}
	io.Copy(io.Discard, w.stdout)
	<-w.exited
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
	if w.waitErr != nil || decErr != nil {
		return nil, b.workerFailure(path, w.state, w.stderr.String(), errors.Join(w.waitErr, decErr, writeErr))
	}
	return resp.result(path)
}

// worker is a started worker process, waiting for its request on stdin.
type worker struct {
	pid    int
	stdin  *os.File // the write end of the worker's standard input
	stdout *os.File // the read end of its standard output
	stderr *limitedBuffer

	exited  chan struct{} // closed once the process has ended and been waited for
	state   *os.ProcessState
	waitErr error
}

// workerKey is what a started worker depends on: the binary, and whether
// its environment is that of a build with remote bases (see workerEnv).
// Everything else about a build comes with its request.
type workerKey struct {
	exe    string
	remote bool
}

// spare is the one worker started ahead of the next build: builds run one
// at a time in the process (buildSlot), so one is enough. It is for the key
// of the last build; a build of another key replaces it.
var spare struct {
	sync.Mutex
	key workerKey
	w   *worker
}

// takeWorker returns the spare worker for key if it is still alive, else a
// newly started one.
func takeWorker(key workerKey) (*worker, error) {
	spare.Lock()
	w := spare.w
	spare.w = nil
	same := spare.key == key
	spare.Unlock()
	if w != nil {
		select {
		case <-w.exited:
			same = false
		default:
		}
		if same {
			return w, nil
		}
		w.kill()
		w.close()
	}
	return startWorker(key)
}

// refillSpare starts the spare worker for key, unless there is one. A
// worker that cannot start is not an error here: the next build starts
// its own and reports why.
func refillSpare(key workerKey) {
	spare.Lock()
	defer spare.Unlock()
	if spare.w != nil && spare.key == key {
		return
	}
	w, err := startWorker(key)
	if err != nil {
		return
	}
	if old := spare.w; old != nil {
		old.kill()
		old.close()
	}
	spare.key, spare.w = key, w
}

// startWorker starts a worker process for key. Its standard input and
// output are pipes of its own (not exec's copying goroutines), so that the
// process can be waited for as soon as it starts, and a spare that dies
// while it waits is seen dead.
func startWorker(key workerKey) (*worker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.Command(key.exe, WorkerArg)
	// Not a directory of the build: /proc/self/cwd would name it.
	cmd.Dir = "/"
	cmd.Env = workerEnv(key.remote)
	cmd.Stdin, cmd.Stdout = inR, outW
	w := &worker{stdin: inW, stdout: outR, stderr: &limitedBuffer{max: 64 << 10}, exited: make(chan struct{})}
	cmd.Stderr = w.stderr
	cmd.SysProcAttr = workerProcAttr()
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	w.pid = cmd.Process.Pid
	go func() {
		w.waitErr = cmd.Wait()
		w.state = cmd.ProcessState
		close(w.exited)
	}()
	return w, nil
}

// kill kills the worker's process group (git, when remote bases are
// allowed, runs in it too), unless the worker has been waited for: its
// process group ID may then be another's.
func (w *worker) kill() {
	select {
	case <-w.exited:
	default:
		killGroup(w.pid)
	}
}

// close releases the parent's ends of the worker's pipes.
func (w *worker) close() {
	w.stdin.Close()
	w.stdout.Close()
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

// workerEnv is the whole environment a worker starts with: none of the
// daemon's (no KUBECONFIG, cloud credentials or GITOPSD_* settings reach a
// build). PATH is kept only when remote bases are allowed, for kustomize's
// git, which is then told to use network protocols only (no file:// or
// ext:: helpers) and no configuration but its own. TMPDIR and HOME come
// with the request: the build's private directory (see ServeWorker).
func workerEnv(remote bool) []string {
	env := []string{"LANG=C"}
	if remote {
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
