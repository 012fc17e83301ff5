// Command bench is `make bench`: it measures gitopsd against
// `kubectl apply --server-side` of the same build on the same local cluster,
// in the same run, and prints the ratios. Each tool gets its own namespace so
// that neither finds the other's objects.
//
// Cases: the MySQL stack of overlays/dev, and 1,000 generated objects
// (ConfigMaps, Services, Deployments). For each, a cold apply and a no-op
// re-apply; wall time and the peak RSS of the process (ru_maxrss).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gitopsd/gitopsd/test/cluster"
	"github.com/gitopsd/gitopsd/test/manifests"
)

func main() {
	cases := flag.String("cases", "drift,mysql,1000", "the cases to run, comma-separated: drift, mysql, 1000")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, os.Stderr, strings.Split(*cases, ","))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// measurement is one timed run of one tool.
type measurement struct {
	wall   time.Duration
	maxRSS int64         // KiB
	cpu    time.Duration // user + system; 0 when not measured per run
}

func run(ctx context.Context, stdout, stderr io.Writer, cases []string) error {
	root, err := manifests.RepoRoot()
	if err != nil {
		return err
	}
	bins, err := cluster.EnsureBinaries(ctx, cluster.BuildOptions{Progress: stderr})
	if err != nil {
		return err
	}
	c, err := cluster.Start(ctx, cluster.Options{Binaries: &bins, Progress: stderr})
	if err != nil {
		return err
	}
	defer c.Stop()
	work, err := os.MkdirTemp("", "gitopsd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	gitopsd := filepath.Join(work, "gitopsd")
	// Built as the Dockerfile builds the shipped binary: static, stripped.
	// (A cgo build maps more of itself: about 17 MiB more peak RSS.)
	if err := command(ctx, root, "env", "CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", gitopsd, "./cmd/gitopsd"); err != nil {
		return err
	}
	rusage := filepath.Join(work, "rusage")
	if err := command(ctx, root, "go", "build", "-o", rusage, "./test/cmd/rusage"); err != nil {
		return err
	}
	b := bench{kubectl: bins.Path("kubectl"), gitopsd: gitopsd, rusage: rusage, kubeconfig: c.Kubeconfig(), work: work}

	// Drift first: the 1,000-object cases leave hundreds of pods that fill
	// the nodes.
	if slices.Contains(cases, "drift") {
		if err := b.driftBench(ctx, stdout, root); err != nil {
			return fmt.Errorf("drift: %w", err)
		}
	}
	fmt.Fprintf(stdout, "gitopsd vs kubectl apply --server-side, Kubernetes %s local cluster, %s\n\n", cluster.KubeVersion, time.Now().UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "%-40s %12s %12s %8s %14s %14s %11s %11s\n", "case", "gitopsd", "kubectl", "ratio", "gitopsd RSS", "kubectl RSS", "gitopsd CPU", "kubectl CPU")
	for _, tc := range []struct {
		key, name string
		make      func(dir, ns string) error
	}{
		{"mysql", "MySQL stack (overlays/dev)", func(dir, ns string) error { return mysqlStack(root, dir, ns) }},
		{"1000", "1,000 objects", func(dir, ns string) error { return generated(dir, ns, 1000) }},
	} {
		if !slices.Contains(cases, tc.key) {
			continue
		}
		if err := b.compare(ctx, stdout, tc.name, tc.make); err != nil {
			return fmt.Errorf("%s: %w", tc.name, err)
		}
	}
	fmt.Fprintln(stdout, "\nratio = kubectl time / gitopsd time (above 1: gitopsd is faster). RSS is the peak of the process,")
	fmt.Fprintln(stdout, "CPU its user + system time (a whole process: cold apply only). The no-op resync is the median")
	fmt.Fprintf(stdout, "of the running daemon's %d syncs after its first (interval 1s).\n", resyncSamples)

	return nil
}

type bench struct {
	kubectl, gitopsd, rusage, kubeconfig, work string
	seq, runs                                  int
}

// measured is a command started through test/cmd/rusage, which measures it
// (see there why the bench cannot).
type measured struct {
	*exec.Cmd
	usage string // the JSON file rusage writes
}

func (b *bench) measuredCommand(ctx context.Context, bin string, args ...string) *measured {
	b.runs++
	usage := filepath.Join(b.work, fmt.Sprintf("usage-%d.json", b.runs))
	return &measured{Cmd: exec.CommandContext(ctx, b.rusage, append([]string{usage, bin}, args...)...), usage: usage}
}

// measurement reads what rusage wrote once the command has ended.
func (m *measured) measurement() (measurement, error) {
	data, err := os.ReadFile(m.usage)
	if err != nil {
		return measurement{}, err
	}
	var u struct{ WallNanos, CPUNanos, MaxRSSKiB int64 }
	if err := json.Unmarshal(data, &u); err != nil {
		return measurement{}, fmt.Errorf("%s: %w", m.usage, err)
	}
	return measurement{wall: time.Duration(u.WallNanos), cpu: time.Duration(u.CPUNanos), maxRSS: u.MaxRSSKiB}, nil
}

// compare renders the case twice (one namespace per tool), then times a cold
// apply and a no-op re-apply with each tool.
func (b *bench) compare(ctx context.Context, w io.Writer, name string, makeCase func(dir, ns string) error) error {
	b.seq++
	gDir := filepath.Join(b.work, fmt.Sprintf("g%d", b.seq))
	kDir := filepath.Join(b.work, fmt.Sprintf("k%d", b.seq))
	if err := makeCase(gDir, fmt.Sprintf("bench-g%d", b.seq)); err != nil {
		return err
	}
	if err := makeCase(kDir, fmt.Sprintf("bench-k%d", b.seq)); err != nil {
		return err
	}
	// kubectl needs the rendered manifests; gitopsd builds them itself.
	rendered := filepath.Join(b.work, fmt.Sprintf("k%d.yaml", b.seq))
	if err := b.render(ctx, kDir, rendered); err != nil {
		return err
	}
	gitopsdArgs := []string{"run", "--dir", gDir, "--path", ".", "--kubeconfig", b.kubeconfig,
		"--name", fmt.Sprintf("bench-%d", b.seq), "--log-level", "warn", "--wait=false", "--http-addr", "127.0.0.1:0"} // kubectl apply does not wait either
	kubectlArgs := []string{"--kubeconfig", b.kubeconfig, "apply", "--server-side", "--field-manager", "bench", "-f", rendered}
	row := func(phase string, g, k measurement) {
		cpu := func(m measurement) string {
			if m.cpu == 0 {
				return "-"
			}
			return m.cpu.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(w, "%-40s %12s %12s %7.2fx %11d KiB %11d KiB %11s %11s\n", name+", "+phase,
			g.wall.Round(time.Millisecond), k.wall.Round(time.Millisecond), k.wall.Seconds()/g.wall.Seconds(), g.maxRSS, k.maxRSS, cpu(g), cpu(k))
	}
	// Cold apply: a whole process each, start-up included.
	g, err := b.timed(ctx, b.gitopsd, append(gitopsdArgs, "--once")...)
	if err != nil {
		return fmt.Errorf("gitopsd cold apply: %w", err)
	}
	k, err := b.timed(ctx, b.kubectl, kubectlArgs...)
	if err != nil {
		return fmt.Errorf("kubectl cold apply: %w", err)
	}
	row("cold apply", g, k)
	// No-op resync: what the running daemon does every --interval (the
	// median of its syncs after the first), against kubectl applying again.
	g, err = b.daemonResync(ctx, gitopsdArgs...)
	if err != nil {
		return fmt.Errorf("gitopsd no-op resync: %w", err)
	}
	k, err = b.timed(ctx, b.kubectl, kubectlArgs...)
	if err != nil {
		return fmt.Errorf("kubectl no-op: %w", err)
	}
	row("no-op resync", g, k)
	return nil
}

// resyncSamples is how many no-op resyncs daemonResync times, after the
// daemon's first sync (which fills its caches and starts its watches).
const resyncSamples = 5

// daemonResync runs `gitopsd run` until it has done resyncSamples syncs
// after its first one, and returns their median duration and the process's
// peak RSS.
func (b *bench) daemonResync(ctx context.Context, args ...string) (measurement, error) {
	cmd := b.measuredCommand(ctx, b.gitopsd, append(args, "--interval", "1s", "--log-format", "json", "--log-level", "info")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return measurement{}, err
	}
	if err := cmd.Start(); err != nil {
		return measurement{}, err
	}
	var samples []time.Duration
	syncs := 0
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		var rec struct{ Msg, Duration, Error string }
		if json.Unmarshal(lines.Bytes(), &rec) != nil {
			continue
		}
		if rec.Msg == "sync failed" {
			err = errors.New(rec.Error)
			break
		}
		if rec.Msg != "sync complete" {
			continue
		}
		if syncs++; syncs == 1 {
			continue
		}
		d, perr := time.ParseDuration(rec.Duration)
		if perr != nil {
			err = perr
			break
		}
		if samples = append(samples, d); len(samples) == resyncSamples {
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM) // rusage passes it on
	_, _ = io.Copy(io.Discard, stderr)      // until the daemon has exited
	_ = cmd.Wait()
	m, merr := cmd.measurement()
	if err == nil && merr != nil {
		err = merr
	}
	if err == nil && len(samples) < resyncSamples {
		err = fmt.Errorf("the daemon stopped after %d syncs", syncs)
	}
	if err != nil {
		return m, err
	}
	slices.Sort(samples)
	m.wall = samples[len(samples)/2]
	m.cpu = 0 // the whole daemon's, not one resync's
	return m, nil
}

func (b *bench) render(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, b.gitopsd, "build", "--dir", dir, "--path", ".")
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, os.Stderr
	return cmd.Run()
}

// timed runs a command and returns its wall time and peak RSS.
func (b *bench) timed(ctx context.Context, bin string, args ...string) (measurement, error) {
	cmd := b.measuredCommand(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return measurement{}, fmt.Errorf("%w\n%s", err, out.String())
	}
	return cmd.measurement()
}

// mysqlStack copies base/ and overlays/dev into dir as one kustomization in
// namespace ns. The StorageClass is cluster scoped and shared by both copies.
func mysqlStack(root, dir, ns string) error {
	if err := os.CopyFS(filepath.Join(dir, "base"), os.DirFS(filepath.Join(root, "base"))); err != nil {
		return err
	}
	kustomization := fmt.Sprintf("namespace: %s\nresources:\n- base\nreplicas:\n- name: mysql\n  count: 2\npatches:\n- target: {kind: Namespace}\n  patch: |-\n    - op: replace\n      path: /metadata/name\n      value: %s\n", ns, ns)
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(kustomization), 0o644)
}

// generated writes n objects in namespace ns: a third ConfigMaps, a third
// Services, a third single-replica Deployments.
func generated(dir, ns string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var objs strings.Builder
	fmt.Fprintf(&objs, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns)
	for i := range n - 1 {
		objs.WriteString("---\n")
		switch i % 3 {
		case 0:
			fmt.Fprintf(&objs, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: %s\ndata:\n  key: value-%d\n", i, ns, i)
		case 1:
			fmt.Fprintf(&objs, "apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-%d\n  namespace: %s\nspec:\n  selector: {app: app-%d}\n  ports:\n  - port: 80\n", i, ns, i)
		case 2:
			fmt.Fprintf(&objs, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-%d\n  namespace: %s\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: app-%d}}\n  template:\n    metadata: {labels: {app: app-%d}}\n    spec:\n      containers:\n      - {name: app, image: registry.k8s.io/pause:3.10}\n", i, ns, i, i)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "objects.yaml"), []byte(objs.String()), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources:\n- objects.yaml\n"), 0o644)
}

func command(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
