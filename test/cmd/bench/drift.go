package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

const (
	driftChanges    = 50
	unmanagedPods   = 5000
	unmanagedNSName = "bench-unmanaged"
)

// driftBench measures, with the daemon running on the MySQL stack, how long
// an out-of-band change takes to become a `drift detected` record (p50 and
// p99 over driftChanges changes, each healed before the next), and how much
// the daemon's RSS grows when unmanagedPods pods appear in a namespace it
// does not manage.
func (b *bench) driftBench(ctx context.Context, w io.Writer, root string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", b.kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	const ns = "bench-drift"
	b.used = append(b.used, ns)
	dir := filepath.Join(b.work, "drift")
	if err := mysqlStack(root, dir, ns); err != nil {
		return err
	}
	// A git source: it changes only by commit, so nothing but the drift
	// itself makes the daemon sync during the measurement.
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"},
		{"-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "stack"}} {
		if err := command(ctx, dir, "git", args...); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.gitopsd, "run", "--git-url", "file://"+dir, "--git-ref", "main", "--path", ".", "--kubeconfig", b.kubeconfig,
		"--cache-dir", filepath.Join(b.work, "drift-cache"), "--name", "bench-drift", "--interval", "1m", "--http-addr", "127.0.0.1:0", "--log-format", "json", "--log-level", "info")
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	records := make(chan map[string]any, 256)
	defer func() {
		cancel() // SIGTERM; its last records are drained so it can exit
		go func() {
			for range records {
			}
		}()
		_ = cmd.Wait()
	}()
	go func() {
		defer close(records)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil {
				records <- rec
			}
		}
	}()
	waitRecord := func(timeout time.Duration, match func(map[string]any) bool) (map[string]any, error) {
		deadline := time.After(timeout)
		for {
			select {
			case rec, ok := <-records:
				if !ok {
					return nil, fmt.Errorf("gitopsd exited")
				}
				if rec["msg"] == "sync failed" {
					return nil, fmt.Errorf("sync failed: %v", rec["error"])
				}
				if match(rec) {
					return rec, nil
				}
			case <-deadline:
				return nil, fmt.Errorf("no matching record within %s", timeout)
			}
		}
	}
	if _, err := waitRecord(2*time.Minute, func(r map[string]any) bool { return r["msg"] == "sync complete" }); err != nil {
		return fmt.Errorf("first sync: %w", err)
	}

	// Latency: change a field git sets; self-heal puts it back.
	const object = "ConfigMap/" + ns + "/mysql-config"
	var latencies []time.Duration
	for i := range driftChanges {
		patch := fmt.Sprintf(`{"data":{"master.cnf":"# changed by hand %d\n"}}`, i)
		if _, err := cs.CoreV1().ConfigMaps(ns).Patch(ctx, "mysql-config", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "bench"}); err != nil {
			return err
		}
		changed := time.Now()
		rec, err := waitRecord(30*time.Second, func(r map[string]any) bool { return r["msg"] == "drift detected" && r["object"] == object })
		if err != nil {
			return fmt.Errorf("change %d: %w", i, err)
		}
		at, err := time.Parse(time.RFC3339Nano, rec["time"].(string))
		if err != nil {
			return err
		}
		latencies = append(latencies, at.Sub(changed))
		if _, err := waitRecord(30*time.Second, func(r map[string]any) bool { return r["msg"] == "drift resolved" && r["object"] == object }); err != nil {
			return fmt.Errorf("change %d not healed: %w", i, err)
		}
	}
	slices.Sort(latencies)
	p := func(q float64) time.Duration {
		return latencies[int(q*float64(len(latencies)-1)+0.5)].Round(time.Millisecond)
	}
	fmt.Fprintf(w, "drift detection latency (out-of-band change -> `drift detected`), %d changes: p50 %s, p99 %s, max %s\n",
		len(latencies), p(0.5), p(0.99), latencies[len(latencies)-1].Round(time.Millisecond))
	fmt.Fprintln(w, "  (Flux and Argo CD notice drift at their next interval or refresh: minutes)")

	// Memory: unmanaged pods elsewhere must not grow the daemon. RSS is
	// read after a full resync (SIGHUP) each time.
	resyncRSS := func() (int64, error) {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return 0, err
		}
		if _, err := waitRecord(time.Minute, func(r map[string]any) bool { return r["msg"] == "sync complete" }); err != nil {
			return 0, err
		}
		return rssKiB(cmd.Process.Pid)
	}
	before, err := resyncRSS()
	if err != nil {
		return err
	}
	b.used = append(b.used, unmanagedNSName) // deleted before the next case
	if err := createUnmanagedPods(ctx, cs, unmanagedPods); err != nil {
		return err
	}
	after, err := resyncRSS()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "daemon RSS with %d unmanaged pods in another namespace: %d KiB -> %d KiB (%+d KiB; target under +20 MiB)\n",
		unmanagedPods, before, after, after-before)
	return nil
}

// createUnmanagedPods creates n scheduling-gated pods (the scheduler and
// kwok leave them alone) in their own namespace.
func createUnmanagedPods(ctx context.Context, cs kubernetes.Interface, n int) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: unmanagedNSName}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i), Labels: map[string]string{"app": "unmanaged"}},
				Spec: corev1.PodSpec{
					SchedulingGates: []corev1.PodSchedulingGate{{Name: "bench.gitopsd.io/never"}},
					Containers:      []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause:3.10"}},
				},
			}
			_, err := cs.CoreV1().Pods(unmanagedNSName).Create(ctx, pod, metav1.CreateOptions{})
			return err
		})
	}
	return g.Wait()
}

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
