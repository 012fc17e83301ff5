package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/gitopsd/gitopsd/test/cluster"
	"github.com/gitopsd/gitopsd/test/manifests"
)

// runDemo is `make demo`: a local git repository seeded from this
// repository's base/ and overlays/, and gitopsd syncing overlays/dev from it
// into the cluster, with text logs, until Ctrl-C.
func runDemo(ctx context.Context, c *cluster.Cluster, kubectl string, stdout, stderr io.Writer) error {
	root, err := manifests.RepoRoot()
	if err != nil {
		return err
	}
	dir := c.Dir()
	bare, work := filepath.Join(dir, "git", "stack.git"), filepath.Join(dir, "stack")
	for _, d := range []string{filepath.Dir(bare), work} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	bin := filepath.Join(dir, "bin", "gitopsd")
	fmt.Fprintln(stderr, "demo: building gitopsd")
	if err := command(ctx, root, stderr, "go", "build", "-o", bin, "./cmd/gitopsd"); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "demo: seeding %s from base/ and overlays/\n", bare)
	if err := seed(ctx, root, bare, work, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stdout, `
demo: gitopsd syncs overlays/dev from %s every 5s. Its log follows.
Try it, in another terminal:

  export KUBECONFIG=%s
  alias kubectl=%s
  cd %s
  sed -i 's/count: 2/count: 3/' overlays/dev/kustomization.yaml
  git commit -qam "mysql: 3 replicas" && git push -q
  kubectl -n mysql get pods,pvc          # mysql-2 and data-mysql-2 appear

Scale back to 2 the same way: mysql-2 goes, data-mysql-2 stays (gitopsd never
deletes claims) and the log says "drift detected" drift=pvc-orphaned. Break a
commit (say, "replicas: [") and the log says "sync failed" with stage=build,
and nothing in the cluster changes. "kubectl scale sts mysql --replicas=4" is
object-drift, undone at once (self-heal).

Status page: http://localhost:8080/ (also /status, /metrics).

`, "file://"+bare, c.Kubeconfig(), kubectl, work)
	cmd := exec.CommandContext(ctx, bin, "run", "--git-url", "file://"+bare, "--git-ref", "main",
		"--path", "overlays/dev", "--interval", "5s", "--log-format", "text",
		"--kubeconfig", c.Kubeconfig(), "--cache-dir", filepath.Join(dir, "gitopsd-cache"))
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	if err := cmd.Start(); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("gitopsd exited: %w", err)
	case err := <-c.Failed():
		return errors.Join(errors.New("a cluster component failed"), err)
	}
}

// seed makes a bare repository and a work clone holding base/ and overlays/.
func seed(ctx context.Context, root, bare, work string, log io.Writer) error {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	for _, sub := range []string{"base", "overlays"} {
		if err := os.CopyFS(filepath.Join(work, sub), os.DirFS(filepath.Join(root, sub))); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"init", "--quiet", "--bare", "--initial-branch=main", bare},
		{"-C", work, "init", "--quiet", "--initial-branch=main"},
		{"-C", work, "remote", "add", "origin", bare},
		{"-C", work, "add", "-A"},
		{"-C", work, "-c", "user.name=demo", "-c", "user.email=demo@example.com", "commit", "--quiet", "-m", "The MySQL stack"},
		{"-C", work, "push", "--quiet", "-u", "origin", "main"},
		{"-C", work, "config", "user.name", "demo"},
		{"-C", work, "config", "user.email", "demo@example.com"},
	}
	for _, args := range steps {
		if err := command(ctx, "", log, "git", args...); err != nil {
			return err
		}
	}
	return nil
}

func command(ctx context.Context, dir string, log io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %v: %w", name, args, err)
	}
	return nil
}
