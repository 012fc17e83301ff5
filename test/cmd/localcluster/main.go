// Command localcluster runs the local Kubernetes cluster of package
// test/cluster in the foreground: `make cluster`. It prints the kubeconfig to
// use and stops every component on Ctrl-C or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gitopsd/gitopsd/test/cluster"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("localcluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", envOr("CLUSTER_DIR", ".cluster"), "state directory (certificates, etcd data, logs, kubeconfig); env CLUSTER_DIR")
	buildOnly := fs.Bool("build-only", false, "build the control-plane binaries if missing, then exit")
	verbose := fs.Bool("v", false, "log the simulated EBS CSI driver's actions")
	apply := fs.String("apply", "", "a kustomization directory to server-side apply once the cluster is up (the demo)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bins, err := cluster.EnsureBinaries(ctx, cluster.BuildOptions{Progress: stderr})
	if err != nil {
		return err
	}
	if bins.Built {
		fmt.Fprintf(stderr, "control-plane binaries built in %s\n", bins.Duration.Round(1e9))
	}
	if *buildOnly {
		fmt.Fprintln(stdout, bins.Dir)
		return nil
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Dir:      *dir,
		Binaries: &bins,
		Progress: stderr,
		Logger:   slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return err
	}
	defer c.Stop()

	fmt.Fprintf(stderr, "cluster: ready in %s: Kubernetes %s, %d nodes; component logs in %s\n",
		c.StartDuration.Round(1e8), cluster.KubeVersion, len(cluster.DefaultNodes()), filepath.Join(c.Dir(), "logs"))
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", c.Kubeconfig())
	kubectl := c.Binaries().Path("kubectl")
	fmt.Fprintf(stderr, "kubectl: %s\n", kubectl)
	if *apply != "" {
		if err := applyDemo(ctx, kubectl, c.Kubeconfig(), *apply, stdout, stderr); err != nil {
			return err
		}
	}
	fmt.Fprintln(stderr, "Press Ctrl-C to stop.")

	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr, "cluster: stopping")
		return nil
	case err := <-c.Failed():
		return errors.Join(errors.New("a cluster component failed"), err)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// applyDemo applies a kustomization with the cluster's kubectl, waits for the
// MySQL StatefulSet and shows what a user of the walkthrough would look at.
func applyDemo(ctx context.Context, kubectl, kubeconfig, dir string, stdout, stderr io.Writer) error {
	steps := [][]string{
		{"apply", "--server-side", "--field-manager=demo", "-k", dir},
		{"-n", "mysql", "rollout", "status", "statefulset/mysql", "--timeout=2m"},
		{"-n", "mysql", "get", "statefulset,pods,pvc", "-o", "wide"},
		{"get", "pv"},
	}
	for _, args := range steps {
		fmt.Fprintf(stderr, "\n$ kubectl %s\n", strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kubectl %s: %w", strings.Join(args, " "), err)
		}
	}
	fmt.Fprintf(stdout, `
The MySQL stack of the walkthrough is up. In another terminal:
  export KUBECONFIG=%s
  alias kubectl=%s
  kubectl -n mysql scale statefulset mysql --replicas=3   # mysql-2 and data-mysql-2 appear
  kubectl -n mysql scale statefulset mysql --replicas=2   # data-mysql-2 stays behind
  kubectl -n mysql annotate pod mysql-1 sim.gitopsd.io/not-ready=mysql   # mysql-1 shows 1/2
`, kubeconfig, kubectl)
	return nil
}
