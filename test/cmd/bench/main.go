// Command bench is `make bench`: it measures gitopsd against
// `kubectl apply --server-side` of the same build on the same local cluster,
// in the same run, and prints the ratios. Each tool gets its own namespace so
// that neither finds the other's objects.
//
// Cases: build isolation (build.go), the MySQL stack of overlays/dev, and 1,000 generated objects
// (ConfigMaps, Services, Deployments). For each, cold applies on an idle
// control plane (the median of coldRuns) and a no-op re-apply; wall time,
// the process's peak RSS and CPU time, the control plane's CPU time; and
// the floor (floor.go), what the machine allows any tool.
package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/klog/v2"

	"github.com/gitopsd/gitopsd/test/cluster"
	"github.com/gitopsd/gitopsd/test/manifests"
)

func main() {
	cases := flag.String("cases", "build,drift,mysql,1000", "the cases to run, comma-separated: build, drift, mysql, 1000")
	flag.Parse()
	// The in-process CSI driver's client-go controllers log races they
	// retry (a volume deleted under them) through klog: not the bench's
	// output.
	klog.SetSlogLogger(slog.New(slog.DiscardHandler))
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
	// cluster is the CPU time the control plane used during the run (0
	// when not measured): the requests, and the controllers' work they set
	// off while the tool ran.
	cluster time.Duration
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
	if slices.Contains(cases, "build") {
		if err := buildBench(ctx, stdout, root, work, gitopsd); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	rusage := filepath.Join(work, "rusage")
	if err := command(ctx, root, "go", "build", "-o", rusage, "./test/cmd/rusage"); err != nil {
		return err
	}
	b, err := newBench(c, bins.Path("kubectl"), gitopsd, rusage, work)
	if err != nil {
		return err
	}

	// Drift first: the 1,000-object cases leave hundreds of pods that fill
	// the nodes.
	if slices.Contains(cases, "drift") {
		if err := b.driftBench(ctx, stdout, root); err != nil {
			return fmt.Errorf("drift: %w", err)
		}
	}
	fmt.Fprintf(stdout, "gitopsd vs kubectl apply --server-side, Kubernetes %s local cluster, %d CPUs, %s\n\n", cluster.KubeVersion, runtime.NumCPU(), time.Now().UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "%-36s %9s %9s %7s %14s %14s %9s %9s %9s %9s\n", "case", "gitopsd", "kubectl", "ratio", "gitopsd RSS", "kubectl RSS", "g CPU", "k CPU", "g cluster", "k cluster")
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
	if err := b.quiesce(ctx); err != nil { // leaves the cluster as it found it
		return err
	}
	fmt.Fprintf(stdout, "\nratio = kubectl time / gitopsd time (above 1: gitopsd is faster). Cold apply: the median of %d runs\n", coldRuns)
	fmt.Fprintln(stdout, "of each tool, each in a new namespace on an idle control plane (earlier runs' namespaces deleted and")
	fmt.Fprintln(stdout, "their controllers' work finished). RSS is the peak of the process (the largest of the runs), CPU its")
	fmt.Fprintln(stdout, "user + system time, cluster the CPU time etcd, kube-apiserver, kube-controller-manager,")
	fmt.Fprintln(stdout, "kube-scheduler and kwok used meanwhile. The no-op resync is the median of the running daemon's")
	fmt.Fprintf(stdout, "%d syncs after its first (interval 1s), against kubectl applying again.\n", resyncSamples)
	fmt.Fprintf(stdout, "\nFloor: the same objects written by %d parallel server-side applies (gitopsd's --apply-concurrency)\n", floorConcurrency)
	fmt.Fprintln(stdout, "from a client already running and holding them: no build, no validation, no start-up. What this")
	fmt.Fprintln(stdout, "control plane allows any tool that applies them, on this machine:")
	for _, f := range b.floors {
		fmt.Fprintln(stdout, "  "+f)
	}

	return nil
}

type bench struct {
	kubectl, gitopsd, rusage, kubeconfig, work string
	seq, runs                                  int

	cluster *cluster.Cluster
	cs      kubernetes.Interface
	dyn     dynamic.Interface
	mapper  meta.RESTMapper
	// used are the namespaces of finished runs, deleted by quiesce.
	used []string
	// floors are the floor lines printed under the table.
	floors []string
}

func newBench(c *cluster.Cluster, kubectl, gitopsd, rusage, work string) (*bench, error) {
	cfg := c.RESTConfig()
	cfg.QPS, cfg.Burst = 500, 1000 // as gitopsd's
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &bench{kubectl: kubectl, gitopsd: gitopsd, rusage: rusage, kubeconfig: c.Kubeconfig(), work: work,
		cluster: c, cs: cs, dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))}, nil
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

// coldRuns is how many cold applies of each case each tool makes; the
// table shows the median.
const coldRuns = 3

// compare times, for one case, coldRuns cold applies with each tool, each on
// an idle cluster in a namespace of its own, then a no-op re-apply with each
// (after the last cold apply) and the floor (floor.go). Tools alternate:
// gitopsd, kubectl, floor, gitopsd, ...
func (b *bench) compare(ctx context.Context, w io.Writer, name string, makeCase func(dir, ns string) error) error {
	b.seq++
	var gs, ks, fs []measurement
	var gNoop, kNoop measurement
	for run := range coldRuns {
		last := run == coldRuns-1
		gDir := filepath.Join(b.work, fmt.Sprintf("g%d-%d", b.seq, run))
		kDir := filepath.Join(b.work, fmt.Sprintf("k%d-%d", b.seq, run))
		fDir := filepath.Join(b.work, fmt.Sprintf("f%d-%d", b.seq, run))
		gNS, kNS, fNS := fmt.Sprintf("bench-g%d-%d", b.seq, run), fmt.Sprintf("bench-k%d-%d", b.seq, run), fmt.Sprintf("bench-f%d-%d", b.seq, run)
		for _, c := range []struct{ dir, ns string }{{gDir, gNS}, {kDir, kNS}, {fDir, fNS}} {
			if err := makeCase(c.dir, c.ns); err != nil {
				return err
			}
		}
		// kubectl needs the rendered manifests; gitopsd builds them itself.
		rendered := kDir + ".yaml"
		if err := b.render(ctx, kDir, rendered); err != nil {
			return err
		}
		gitopsdArgs := []string{"run", "--dir", gDir, "--path", ".", "--kubeconfig", b.kubeconfig,
			"--name", fmt.Sprintf("bench-%d-%d", b.seq, run), "--log-level", "warn", "--wait=false", "--http-addr", "127.0.0.1:0"} // kubectl apply does not wait either
		kubectlArgs := []string{"--kubeconfig", b.kubeconfig, "apply", "--server-side", "--field-manager", "bench", "-f", rendered}

		// Cold apply: a whole process each, start-up included.
		if err := b.quiesce(ctx); err != nil {
			return err
		}
		g, err := b.timed(ctx, b.gitopsd, append(gitopsdArgs, "--once")...)
		if err != nil {
			return fmt.Errorf("gitopsd cold apply: %w", err)
		}
		gs = append(gs, g)
		if last {
			// No-op resync: what the running daemon does every --interval
			// (the median of its syncs after the first).
			if gNoop, err = b.daemonResync(ctx, gitopsdArgs...); err != nil {
				return fmt.Errorf("gitopsd no-op resync: %w", err)
			}
		}
		b.used = append(b.used, gNS)
		if err := b.quiesce(ctx); err != nil {
			return err
		}
		k, err := b.timed(ctx, b.kubectl, kubectlArgs...)
		if err != nil {
			return fmt.Errorf("kubectl cold apply: %w", err)
		}
		ks = append(ks, k)
		if last {
			// Against kubectl applying the same again.
			if kNoop, err = b.timed(ctx, b.kubectl, kubectlArgs...); err != nil {
				return fmt.Errorf("kubectl no-op: %w", err)
			}
			kNoop.cluster = 0 // not comparable: the daemon's is not measured
		}
		b.used = append(b.used, kNS)
		if err := b.quiesce(ctx); err != nil {
			return err
		}
		f, err := b.floor(ctx, fDir)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		fs = append(fs, f)
		b.used = append(b.used, fNS)
	}
	g, k, f := median(gs), median(ks), median(fs)
	row(w, name+", cold apply", g, k)
	row(w, name+", no-op resync", gNoop, kNoop)
	b.floors = append(b.floors, fmt.Sprintf("%s: %s (kubectl / floor = %.2fx, gitopsd / floor = %.2fx), the control plane using %s CPU",
		name, f.wall.Round(time.Millisecond), k.wall.Seconds()/f.wall.Seconds(), g.wall.Seconds()/f.wall.Seconds(), f.cluster.Round(10*time.Millisecond)))
	return nil
}

// row prints one line of the table.
func row(w io.Writer, name string, g, k measurement) {
	dur := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return d.Round(10 * time.Millisecond).String()
	}
	fmt.Fprintf(w, "%-36s %9s %9s %6.2fx %10d KiB %10d KiB %9s %9s %9s %9s\n", name,
		g.wall.Round(time.Millisecond), k.wall.Round(time.Millisecond), k.wall.Seconds()/g.wall.Seconds(),
		g.maxRSS, k.maxRSS, dur(g.cpu), dur(k.cpu), dur(g.cluster), dur(k.cluster))
}

// median is the run of median wall time, with the largest peak RSS of all.
func median(ms []measurement) measurement {
	sorted := slices.Clone(ms)
	slices.SortFunc(sorted, func(a, b measurement) int { return cmp.Compare(a.wall, b.wall) })
	m := sorted[len(sorted)/2]
	for _, o := range ms {
		m.maxRSS = max(m.maxRSS, o.maxRSS)
	}
	return m
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

// timed runs a command and returns its wall time, CPU time and peak RSS,
// and the control plane's CPU time meanwhile.
func (b *bench) timed(ctx context.Context, bin string, args ...string) (measurement, error) {
	cmd := b.measuredCommand(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	before, err := b.cluster.CPUTime()
	if err != nil {
		return measurement{}, err
	}
	if err := cmd.Run(); err != nil {
		return measurement{}, fmt.Errorf("%w\n%s", err, out.String())
	}
	after, err := b.cluster.CPUTime()
	if err != nil {
		return measurement{}, err
	}
	m, err := cmd.measurement()
	m.cluster = after - before
	return m, err
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
