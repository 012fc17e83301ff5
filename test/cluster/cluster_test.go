package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gitopsd/gitopsd/test/cluster"
)

// childEnv makes the test binary, re-executed by TestKilledTestBinary, start
// a cluster, report its component pids on stdout and wait to be killed.
const childEnv = "GITOPSD_CLUSTER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func binaries(t *testing.T) *cluster.BuildResult {
	t.Helper()
	b, err := cluster.EnsureBinaries(t.Context(), cluster.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &b
}

// TestStartStop starts a cluster, checks what a test relies on (nodes Ready in
// three zones, the EBS CSI driver registered on each) and that Stop leaves no
// process and no temporary state behind.
func TestStartStop(t *testing.T) {
	c, err := cluster.Start(t.Context(), cluster.Options{Binaries: binaries(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warm start: %s", c.StartDuration.Round(100*time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	cs, err := kubernetes.NewForConfig(c.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var zones []string
	for _, n := range nodes.Items {
		if !nodeReady(&n) {
			t.Errorf("Node/%s not Ready", n.Name)
		}
		zones = append(zones, n.Labels["topology.kubernetes.io/zone"])
	}
	slices.Sort(zones)
	if diff := cmp.Diff([]string{"ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"}, zones); diff != "" {
		t.Errorf("node zones (-want +got):\n%s", diff)
	}
	waitFor(t, 20*time.Second, "CSIDriver and a CSINode per node", func(ctx context.Context) error {
		if _, err := cs.StorageV1().CSIDrivers().Get(ctx, "ebs.csi.aws.com", metav1.GetOptions{}); err != nil {
			return err
		}
		for _, n := range nodes.Items {
			csiNode, err := cs.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !hasDriver(csiNode, "ebs.csi.aws.com") {
				return fmt.Errorf("CSINode/%s lacks ebs.csi.aws.com", n.Name)
			}
		}
		return nil
	})

	// Starting the control plane costs CPU, and the count only grows.
	cpu, err := c.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	if cpu <= 0 {
		t.Errorf("control plane CPU time %s after start, want > 0", cpu)
	}
	if _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if later, err := c.CPUTime(); err != nil || later < cpu {
		t.Errorf("control plane CPU time went from %s to %s (%v)", cpu, later, err)
	}

	pids := componentPIDs(t, c.Dir())
	dir := c.Dir()
	c.Stop()
	stopped = true
	for name, pid := range pids {
		if alive(pid) {
			t.Errorf("%s (pid %d) still running after Stop", name, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary state dir %s left behind (stat: %v)", dir, err)
	}
}

// TestKilledTestBinary kills (SIGKILL) a process that started a cluster and
// checks that every component dies with it.
func TestKilledTestBinary(t *testing.T) {
	binaries(t) // build before the child, so its start is quick
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// The child prints "ready" once its cluster is up.
	lines := bufio.NewScanner(out)
	ready := make(chan bool, 1)
	go func() { ready <- lines.Scan() && lines.Text() == "ready" }()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("child did not start a cluster: %v", lines.Err())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("child cluster not ready within 2 minutes")
	}
	pids := componentPIDs(t, dir)
	if len(pids) != 5 {
		t.Fatalf("want 5 component pids, got %v", pids)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitFor(t, 15*time.Second, "every component gone", func(context.Context) error {
		for name, pid := range pids {
			if alive(pid) {
				return fmt.Errorf("%s (pid %d) still alive", name, pid)
			}
		}
		return nil
	})
}

func runChild() int {
	ctx := context.Background()
	b, err := cluster.EnsureBinaries(ctx, cluster.BuildOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := cluster.Start(ctx, cluster.Options{Binaries: &b, Dir: os.Getenv(childEnv), Progress: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Stop()
	fmt.Println("ready")
	select {} // wait for SIGKILL
}

// componentPIDs reads the pid files the cluster keeps in its state dir.
func componentPIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "pids", "*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return pids
}

// alive reports whether pid runs and is not a zombie awaiting its reaper.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func hasDriver(n *storagev1.CSINode, driver string) bool {
	for _, d := range n.Spec.Drivers {
		if d.Name == driver {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, timeout time.Duration, what string, check func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	for {
		err := check(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true within %s: %v", what, timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
