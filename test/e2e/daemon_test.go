package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/test/gitserver"
	"github.com/gitopsd/gitopsd/test/manifests"
)

// gitServer is the HTTP git server the daemons fetch from.
type gitServer = gitserver.HTTP

// newGitServer serves a new, empty directory of repositories over HTTP.
func newGitServer(t *testing.T) *gitServer { return gitserver.NewHTTP(t, t.TempDir()) }

// workRepo is a clone the test commits to and pushes from.
type workRepo struct {
	t   *testing.T
	dir string
}

// seedRepo makes <server>/stack.git holding the repository's base/ and
// overlays/, moved into namespace ns, and returns a work clone of it.
func seedRepo(t *testing.T, srv *gitServer, ns string) *workRepo {
	t.Helper()
	return seedRepoAt(t, filepath.Join(srv.Root, "stack.git"), ns)
}

// seedRepoAt is seedRepo for the bare repository at path bare, whichever
// server serves it.
func seedRepoAt(t *testing.T, bare, ns string) *workRepo {
	t.Helper()
	releaseNamespace(t, ns)
	w := &workRepo{t: t, dir: t.TempDir()}
	w.git(filepath.Dir(bare), "init", "--quiet", "--bare", "--initial-branch=main", bare)
	w.git(w.dir, "init", "--quiet", "--initial-branch=main")
	w.git(w.dir, "remote", "add", "origin", bare)
	root, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"base", "overlays"} {
		if err := os.CopyFS(filepath.Join(w.dir, sub), os.DirFS(filepath.Join(root, sub))); err != nil {
			t.Fatal(err)
		}
	}
	editFile(t, filepath.Join(w.dir, "base", "kustomization.yaml"), func(s string) string {
		return strings.Replace(s, "namespace: mysql\n", "namespace: "+ns+"\n", 1)
	})
	editFile(t, filepath.Join(w.dir, "base", "namespace.yaml"), func(s string) string {
		return strings.Replace(s, "name: mysql\n", "name: "+ns+"\n", 1)
	})
	w.commit("seed the MySQL stack")
	return w
}

func (w *workRepo) git(dir string, args ...string) string {
	w.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com",
		"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		w.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit commits everything and pushes; it returns the commit SHA.
func (w *workRepo) commit(msg string) string {
	w.git(w.dir, "add", "-A")
	w.git(w.dir, "commit", "--quiet", "-m", msg)
	w.git(w.dir, "push", "--quiet", "--force", "origin", "main")
	return w.git(w.dir, "rev-parse", "HEAD")
}

func (w *workRepo) path(p string) string { return filepath.Join(w.dir, p) }

// logRecord is one JSON log line of the daemon.
type logRecord map[string]any

func (r logRecord) str(key string) string { s, _ := r[key].(string); return s }

// daemon is a running `gitopsd run` whose JSON log is collected.
type daemon struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	records []logRecord
	next    int // records before next are consumed
}

func buildGitopsd(t *testing.T) string {
	t.Helper()
	root, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "gitopsd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gitopsd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build gitopsd: %v\n%s", err, out)
	}
	return bin
}

func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	bin := buildGitopsd(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{"run", "--kubeconfig", env.cluster.Kubeconfig(),
		"--log-format", "json", "--log-level", "debug", "--cache-dir", t.TempDir(), "--http-addr", "127.0.0.1:0"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec logRecord
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = logRecord{"msg": "(not json)", "line": sc.Text()}
			}
			d.mu.Lock()
			d.records = append(d.records, rec)
			d.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		<-done
		if dir := os.Getenv("E2E_ARTIFACTS"); dir != "" {
			d.mu.Lock()
			var all strings.Builder
			for _, r := range d.records {
				line, _ := json.Marshal(r)
				all.Write(append(line, '\n'))
			}
			d.mu.Unlock()
			// The whole log, DEBUG included, to read after a run.
			// One file per daemon: a test's second daemon gets .2, and so on.
			base := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
			for i := 1; ; i++ {
				name := base + ".gitopsd.log"
				if i > 1 {
					name = fmt.Sprintf("%s.%d.gitopsd.log", base, i)
				}
				f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if errors.Is(err, os.ErrExist) {
					continue
				}
				if err == nil {
					f.WriteString(all.String())
					f.Close()
				}
				break
			}
		}
		if t.Failed() {
			d.mu.Lock()
			for _, r := range d.records {
				if r.str("level") != "DEBUG" {
					t.Logf("gitopsd: %v", r)
				}
			}
			d.mu.Unlock()
		}
	})
	return d
}

// waitFor returns the first record after the last one consumed that match
// accepts, failing the test if none comes within timeout.
func (d *daemon) waitFor(t *testing.T, timeout time.Duration, what string, match func(logRecord) bool) logRecord {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d.mu.Lock()
		for i := d.next; i < len(d.records); i++ {
			if match(d.records[i]) {
				d.next = i + 1
				rec := d.records[i]
				d.mu.Unlock()
				return rec
			}
		}
		d.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no log record %s within %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond) // polling the collected log, with the deadline above
	}
}

func syncComplete(sha string) func(logRecord) bool {
	return func(r logRecord) bool {
		return r.str("msg") == "sync complete" && strings.HasSuffix(r.str("revision"), "sha1:"+sha)
	}
}

func syncFailed(stage reconciler.Stage, sha string) func(logRecord) bool {
	return func(r logRecord) bool {
		return r.str("msg") == "sync failed" && r.str("stage") == string(stage) &&
			(sha == "" || strings.HasSuffix(r.str("revision"), "sha1:"+sha))
	}
}

// TestDaemon runs `gitopsd run` against a git repository served over HTTP
// and replays what users do with it: commit, break, fix, remove, force-push.
func TestDaemon(t *testing.T) {
	const ns = "daemon-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	first := repo.git(repo.dir, "rev-parse", "HEAD")
	d := startDaemon(t, "--git-url", srv.URL+"/stack.git", "--git-ref", "main", "--path", "overlays/dev", "--interval", "2s")
	ctx := t.Context()

	rec := d.waitFor(t, 90*time.Second, "first sync complete", syncComplete(first))
	// 6 objects; the StorageClass is cluster scoped and may exist already
	// (another test applied it), so it may count as configured.
	if created, _ := rec["created"].(float64); rec.str("path") != "overlays/dev" || created < 5 || created+rec["configured"].(float64) != 6 {
		t.Errorf("first sync record %v: want path overlays/dev and 6 created (or 5 and the shared StorageClass configured)", rec)
	}
	waitStatefulSetReady(t, ns, 2)

	t.Run("a commit to 3 replicas brings mysql-2 within 10s", func(t *testing.T) {
		editFile(t, repo.path("overlays/dev/kustomization.yaml"), func(s string) string {
			return strings.Replace(s, "count: 2", "count: 3", 1)
		})
		pushed := time.Now()
		sha := repo.commit("scale to 3")
		eventually(t, 10*time.Second, "mysql-2 Ready", func(ctx context.Context) error {
			pod, err := env.cs.CoreV1().Pods(ns).Get(ctx, "mysql-2", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !podReady(pod) {
				return fmt.Errorf("mysql-2 not ready")
			}
			return nil
		})
		t.Logf("mysql-2 Ready %s after the push", time.Since(pushed).Round(100*time.Millisecond))
		d.waitFor(t, 20*time.Second, "sync complete for the scale commit", syncComplete(sha))
	})
	applied := repo.git(repo.dir, "rev-parse", "HEAD")

	// broken commits: each must fail at its stage, name the culprit and change nothing.
	broken := []struct {
		name   string
		stage  reconciler.Stage
		break_ func()
		names  []string // what the error must name
	}{
		{"malformed kustomization", reconciler.StageBuild, func() {
			writeFile(t, repo.path("overlays/dev/kustomization.yaml"), "resources:\n- ../../base\nreplicas: [: oops\n")
		}, []string{"overlays/dev/kustomization.yaml"}},
		{"schema error", reconciler.StageValidate, func() {
			writeFile(t, repo.path("overlays/dev/extra.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new-and-valid\n  namespace: "+ns+"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: broken\n  namespace: "+ns+"\nspec:\n  ports:\n  - port: 700000\n")
			appendResource(t, repo.path("overlays/dev"), "extra.yaml")
		}, []string{"Service/" + ns + "/broken", "spec.ports[0].port"}},
		{"unknown field", reconciler.StageValidate, func() {
			writeFile(t, repo.path("overlays/dev/extra.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new-and-valid\n  namespace: "+ns+"\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: typo\n  namespace: "+ns+"\nspec:\n  ports:\n  - port: 80\n  selectr: {app: mysql}\n")
			appendResource(t, repo.path("overlays/dev"), "extra.yaml")
		}, []string{"Service/" + ns + "/typo", ".spec.selectr: field not declared in schema"}},
		{"symlink out of the repository", reconciler.StageBuild, func() {
			if err := os.Symlink("/etc/passwd", repo.path("overlays/dev/evil.yaml")); err != nil {
				t.Fatal(err)
			}
			appendResource(t, repo.path("overlays/dev"), "evil.yaml")
		}, []string{"evil.yaml"}},
	}
	for _, tc := range broken {
		t.Run(tc.name+" fails at "+string(tc.stage)+" and changes nothing", func(t *testing.T) {
			tc.break_()
			sha := repo.commit(tc.name)
			rec := d.waitFor(t, 20*time.Second, "sync failed at "+string(tc.stage), syncFailed(tc.stage, sha))
			for _, name := range tc.names {
				if !strings.Contains(rec.str("error"), name) {
					t.Errorf("error %q does not name %q", rec.str("error"), name)
				}
			}
			sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := sts.Annotations[reconciler.RevisionAnnotation]; !strings.HasSuffix(got, applied) {
				t.Errorf("StatefulSet at revision %q after a failed sync, want %s", got, applied)
			}
			if _, err := env.cs.CoreV1().ConfigMaps(ns).Get(ctx, "new-and-valid", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("ConfigMap new-and-valid of a failed commit exists (err %v)", err)
			}
			repo.git(repo.dir, "reset", "--quiet", "--hard", applied)
			repo.git(repo.dir, "push", "--quiet", "--force", "origin", "main")
			d.waitFor(t, 20*time.Second, "sync complete after the revert", syncComplete(applied))
		})
	}

	t.Run("removing mysql-read prunes it", func(t *testing.T) {
		removeResource(t, repo.path("base"), "service-mysql-read.yaml")
		sha := repo.commit("drop mysql-read")
		rec := d.waitFor(t, 20*time.Second, "sync complete with a prune", syncComplete(sha))
		if rec["pruned"] != float64(1) {
			t.Errorf("sync record %v: want pruned 1", rec)
		}
		if _, err := env.cs.CoreV1().Services(ns).Get(ctx, "mysql-read", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Service mysql-read still there (err %v)", err)
		}
	})

	t.Run("a fix pushed during a health wait is applied at once", func(t *testing.T) {
		stuck := func(notReady bool) string {
			annotations := "{}"
			if notReady {
				annotations = "{sim.gitopsd.io/not-ready: app}"
			}
			return "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\n  namespace: " + ns +
				"\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: stuck}}\n  template:\n    metadata:\n      labels: {app: stuck}\n      annotations: " +
				annotations + "\n    spec:\n      containers:\n      - {name: app, image: busybox:1.36}\n"
		}
		writeFile(t, repo.path("overlays/dev/stuck.yaml"), stuck(true))
		appendResource(t, repo.path("overlays/dev"), "stuck.yaml")
		repo.commit("a Deployment that never becomes ready")
		eventually(t, 20*time.Second, "Deployment stuck applied", func(ctx context.Context) error {
			_, err := env.cs.AppsV1().Deployments(ns).Get(ctx, "stuck", metav1.GetOptions{})
			return err
		})
		writeFile(t, repo.path("overlays/dev/stuck.yaml"), stuck(false))
		fix := repo.commit("fix it")
		// The health timeout is 5 minutes: only a superseded wait makes this.
		d.waitFor(t, 30*time.Second, "health wait superseded", func(r logRecord) bool {
			return r.str("msg") == "health wait superseded" && strings.HasSuffix(r.str("newRevision"), "sha1:"+fix)
		})
		d.waitFor(t, 30*time.Second, "sync complete for the fix", syncComplete(fix))
	})

	t.Run("a force-push rewriting history is followed", func(t *testing.T) {
		repo.git(repo.dir, "reset", "--quiet", "--hard", first)
		editFile(t, repo.path("base/configmap.yaml"), func(s string) string { return s + "  rewritten: \"yes\"\n" })
		sha := repo.commit("rewritten history")
		d.waitFor(t, 20*time.Second, "sync complete for the rewritten history", syncComplete(sha))
		cm, err := env.cs.CoreV1().ConfigMaps(ns).Get(ctx, "mysql-config", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm.Data["rewritten"] != "yes" {
			t.Errorf("mysql-config lacks the rewritten key: %v", cm.Data)
		}
	})

	t.Run("git server down: fetch fails, the cluster stays, sync resumes", func(t *testing.T) {
		last := repo.git(repo.dir, "rev-parse", "HEAD")
		srv.Down(true)
		d.waitFor(t, 20*time.Second, "sync failed at fetch", syncFailed(reconciler.StageFetch, ""))
		sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := sts.Annotations[reconciler.RevisionAnnotation]; !strings.HasSuffix(got, last) {
			t.Errorf("StatefulSet at %q while the server is down, want %s", got, last)
		}
		srv.Down(false)
		d.waitFor(t, 30*time.Second, "sync complete once the server is back", syncComplete(last))
	})
}
