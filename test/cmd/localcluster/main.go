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
	"os/signal"
	"path/filepath"
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
	demo := fs.Bool("demo", false, "run gitopsd on a local git repository seeded from base/ and overlays/ (make demo)")
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
	if *demo {
		return runDemo(ctx, c, kubectl, stdout, stderr)
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
