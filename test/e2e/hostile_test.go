package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/kustomize"
	"github.com/gitopsd/gitopsd/reconciler"
)

// buildTimeout is the daemon's --build-timeout in these tests: short, so a
// build that spins is stopped soon, long enough for the stack's builds.
const buildTimeout = 15 * time.Second

// TestHostileCommits runs the daemon on the MySQL stack from git and
// commits what used to take it down (issue 11): an alias bomb, 100,000
// objects, a build that spins past the build time limit. Each fails at
// stage build by the bound it hits, within the build time limit; the
// daemon's memory stays within 50 MiB of its steady state; an out-of-band
// scale is still detected and healed (from the last good revision) while
// the bad commit is the head; the next good commit is applied within 10 s
// of its push; and SIGTERM during a build ends the daemon within 5 s.
func TestHostileCommits(t *testing.T) {
	const ns = "hostile-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	first := repo.git(repo.dir, "rev-parse", "HEAD")
	d := startDaemon(t, "--git-url", srv.URL+"/stack.git", "--git-ref", "main", "--path", "overlays/dev",
		"--interval", "2s", "--build-timeout", buildTimeout.String())
	d.waitFor(t, 90*time.Second, "first sync complete", syncComplete(first))
	waitStatefulSetReady(t, ns, 2)
	rss := watchRSS(t, d.cmd.Process.Pid)

	overlay := repo.path("overlays/dev")
	cases := []struct {
		name   string
		write  func(t *testing.T)
		limits []string // the LimitError's Limit in the record's error: one of these
	}{
		{"alias bomb", func(t *testing.T) {
			writeFile(t, filepath.Join(overlay, "bomb.yaml"), aliasBomb(ns))
			appendResource(t, overlay, "bomb.yaml")
		}, []string{"YAML aliases"}},
		// 10,000 objects a file: kustomize spends minutes on the first file
		// (its id checks grow with the square of the objects), before the
		// count of the third goes over MaxObjects; the time limit stops it.
		{"100,000 objects", func(t *testing.T) { writeManyConfigMaps(t, overlay, ns, 100_000, 10) }, []string{"MaxObjects", "MaxBuildTime"}},
		{"100,000 objects in one file", func(t *testing.T) { writeManyConfigMaps(t, overlay, ns, 100_000, 1) }, []string{"MaxObjects"}},
		{"a build that spins past the time limit", func(t *testing.T) { writeManyConfigMaps(t, overlay, ns, 19_000, 10) }, []string{"MaxBuildTime"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { removeHostileFiles(t, overlay) }) // a failed case leaves the next a clean overlay
			tc.write(t)
			pushed := time.Now()
			bad := repo.commit(tc.name)
			// Seen within the 2 s interval, fetched, then built.
			rec := d.waitFor(t, buildTimeout+20*time.Second, "sync failed at build", syncFailed(reconciler.StageBuild, bad))
			t.Logf("%s: sync failed %s after the push: %s", tc.name, time.Since(pushed).Round(10*time.Millisecond), rec.str("error"))
			if !slices.ContainsFunc(tc.limits, func(l string) bool { return strings.Contains(rec.str("error"), "("+l+")") }) ||
				!strings.Contains(rec.str("error"), "overlays/dev") {
				t.Errorf("error %q: want one of the bounds %v and the path built", rec.str("error"), tc.limits)
			}
			stages := d.find(func(r logRecord) bool {
				return r.str("msg") == "sync stages" && strings.HasSuffix(r.str("revision"), "sha1:"+bad)
			})
			took, err := time.ParseDuration(stages.str("build"))
			if err != nil {
				t.Fatalf("sync stages record %v: build: %v", stages, err)
			}
			t.Logf("%s: the build took %s", tc.name, took)
			if took > buildTimeout+time.Second {
				t.Errorf("the build took %s, longer than the build time limit (%s)", took, buildTimeout)
			}

			healWhileHeadIsBad(t, d, ns)

			removeHostileFiles(t, overlay)
			good := repo.commit("back to the stack")
			pushed = time.Now()
			d.waitFor(t, 10*time.Second, "the next good commit applied", syncComplete(good))
			t.Logf("%s: good commit applied %s after its push", tc.name, time.Since(pushed).Round(10*time.Millisecond))
		})
	}
	rss.check(t, 50<<20)

	t.Run("SIGTERM during a build ends the daemon within 5 s", func(t *testing.T) {
		writeManyConfigMaps(t, overlay, ns, 19_000, 10)
		writeFile(t, filepath.Join(overlay, "note.txt"), "another spinning commit\n")
		repo.commit("spin again")
		worker := waitWorker(t, d.cmd.Process.Pid, buildTimeout)
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		done := make(chan error, 1)
		go func() { done <- d.cmd.Wait() }()
		select {
		case <-done:
			t.Logf("daemon exited %s after SIGTERM", time.Since(sent).Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Fatalf("daemon still running 5 s after SIGTERM during a build")
		}
		if processAlive(worker) {
			t.Errorf("build worker %d outlived the daemon", worker)
		}
	})
}

// TestHostileDirSource runs the daemon on a --dir source (git cannot hold
// a FIFO) and names a FIFO as a resource: the sync fails at build, by the
// file's type, without blocking; drift is healed meanwhile; removing it
// syncs again within 10 s.
func TestHostileDirSource(t *testing.T) {
	const ns = "hostile-dir-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	d := startDaemon(t, "--dir", repo.dir, "--path", "overlays/dev", "--interval", "2s", "--build-timeout", buildTimeout.String())
	d.waitFor(t, 90*time.Second, "first sync complete", func(r logRecord) bool { return r.str("msg") == "sync complete" })
	waitStatefulSetReady(t, ns, 2)
	rss := watchRSS(t, d.cmd.Process.Pid)

	overlay := repo.path("overlays/dev")
	if err := syscall.Mkfifo(filepath.Join(overlay, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	appendResource(t, overlay, "fifo.yaml")
	made := time.Now()
	rec := d.waitFor(t, buildTimeout, "sync failed at build", syncFailed(reconciler.StageBuild, ""))
	t.Logf("FIFO: sync failed %s after it was named: %s", time.Since(made).Round(10*time.Millisecond), rec.str("error"))
	if want := "overlays/dev/fifo.yaml: not a regular file (a FIFO)"; !strings.Contains(rec.str("error"), want) {
		t.Errorf("error %q: want %q", rec.str("error"), want)
	}
	healWhileHeadIsBad(t, d, ns)

	removeResource(t, overlay, "fifo.yaml")
	if err := os.Remove(filepath.Join(overlay, "fifo.yaml")); err != nil {
		t.Fatal(err)
	}
	fixed := time.Now()
	d.waitFor(t, 10*time.Second, "sync complete after the FIFO left", func(r logRecord) bool { return r.str("msg") == "sync complete" })
	t.Logf("FIFO removed: synced %s later", time.Since(fixed).Round(10*time.Millisecond))
	rss.check(t, 50<<20)
}

// healWhileHeadIsBad scales the StatefulSet by hand while the head commit
// cannot be built: the change is detected and the last good revision is
// applied again, within the alert bound.
func healWhileHeadIsBad(t *testing.T, d *daemon, ns string) {
	t.Helper()
	sts := "StatefulSet/" + ns + "/mysql"
	lastGood := func(r logRecord) bool { return r.str("msg") == reconciler.MsgLastGoodApplied }
	// Scale just after a sync of the loop, so that the next (2 s later)
	// does not heal the change before the watcher has seen it.
	d.waitFor(t, 5*time.Second, "a sync of the loop", func(r logRecord) bool { return r.str("msg") == "sync stages" })
	heals := d.count(lastGood)
	scale(t, ns, 3)
	rec := d.waitFor(t, alertWithin, "object-drift detected", driftRecord(reconciler.MsgDriftDetected, "object-drift", sts))
	checkReplicasDrift(t, rec)
	d.waitFor(t, alertWithin, "object-drift resolved", driftRecord(reconciler.MsgDriftResolved, "object-drift", sts))
	// The loop logs the apply after it returns, the watcher the
	// resolution when it sees the object: either may come first.
	eventually(t, alertWithin, "a last good revision applied record", func(context.Context) error {
		if n := d.count(lastGood); n == heals {
			return errors.New("none yet")
		}
		return nil
	})
	if got := replicasOf(t, ns); got != 2 {
		t.Errorf("replicas %d after the heal, want git's 2", got)
	}
}

// count is how many records so far match.
func (d *daemon) count(match func(logRecord) bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range d.records {
		if match(r) {
			n++
		}
	}
	return n
}

// aliasBomb is a ConfigMap whose annotation is a billion laughs: 30 lines
// that expand to 10^9 nodes.
func aliasBomb(ns string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n  namespace: %s\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", ns)
	for i := 1; i < 10; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", ")
		fmt.Fprintf(&b, "  a%d: &a%d [%s]\n", i, i, refs)
	}
	return b.String()
}

// writeManyConfigMaps writes n small ConfigMaps into files many-N.yaml of
// dir and names the files in its kustomization.
func writeManyConfigMaps(t *testing.T, dir, ns string, n, files int) {
	t.Helper()
	for f := range files {
		var b strings.Builder
		for i := f; i < n; i += files {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-%d\n  namespace: %s\ndata:\n  i: %q\n", i, ns, strconv.Itoa(i))
		}
		name := fmt.Sprintf("many-%d.yaml", f)
		writeFile(t, filepath.Join(dir, name), b.String())
		appendResource(t, dir, name)
	}
}

// removeHostileFiles takes the files the cases add out of the overlay and
// its kustomization.
func removeHostileFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "bomb.yaml" || strings.HasPrefix(name, "many-") {
			editFile(t, filepath.Join(dir, "kustomization.yaml"), func(s string) string {
				return strings.ReplaceAll(s, "- "+name+"\n", "")
			})
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// rssWatch samples a process's resident memory every 50 ms from when it
// is made, which is its steady state, to the end of the test.
type rssWatch struct {
	mu           sync.Mutex
	steady, peak int64
	pid          int
}

func watchRSS(t *testing.T, pid int) *rssWatch {
	t.Helper()
	w := &rssWatch{pid: pid, steady: rssOf(pid)}
	w.peak = w.steady
	if w.steady == 0 {
		t.Fatalf("no VmRSS for pid %d", pid)
	}
	stop := make(chan struct{})
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				v := rssOf(pid)
				w.mu.Lock()
				w.peak = max(w.peak, v)
				w.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { close(stop) })
	return w
}

// check fails the test when the peak went more than slack over the steady
// state.
func (w *rssWatch) check(t *testing.T, slack int64) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("daemon RSS: steady %d MiB, peak %d MiB", w.steady>>20, w.peak>>20)
	if w.peak > w.steady+slack {
		t.Errorf("daemon RSS peaked at %d MiB, over its steady %d MiB + %d MiB", w.peak>>20, w.steady>>20, slack>>20)
	}
}

// rssOf is a process's VmRSS in bytes, 0 when it cannot be read.
func rssOf(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// waitWorker waits until the daemon pid has a build worker child that has
// been running for a second, and returns its pid.
func waitWorker(t *testing.T, pid int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	seen := map[int]time.Time{}
	for time.Now().Before(deadline) {
		for _, child := range children(pid) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child))
			if !strings.Contains(string(cmdline), kustomize.WorkerArg) {
				continue
			}
			if _, ok := seen[child]; !ok {
				seen[child] = time.Now()
			}
			if time.Since(seen[child]) > time.Second {
				return child
			}
		}
		time.Sleep(50 * time.Millisecond) // polling /proc, with the deadline above
	}
	t.Fatalf("no build worker under pid %d within %s", pid, timeout)
	return 0
}

// children lists the child processes of pid, from every thread's children
// file.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, f := range tasks {
		data, _ := os.ReadFile(f)
		for _, field := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(field); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// processAlive reports whether pid still exists (and is not a zombie).
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(data), ") ")
	return !strings.HasPrefix(rest, "Z")
}
