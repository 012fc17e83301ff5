package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFaultKilledMidSync kills the daemon (SIGKILL) in the middle of a cold
// apply of 1,000 ConfigMaps, then in the middle of pruning 400 of them, and
// starts it again each time on the same cache: the cluster ends equal to
// git, every object carries the ApplySet label, nothing extra is left, and
// the Namespace is never deleted.
func TestFaultKilledMidSync(t *testing.T) {
	const ns = "fault-kill-e2e"
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 1000)
	args := []string{"--git-url", srv.URL + "/stack.git", "--git-ref", "main", "--path", "overlays/many",
		"--interval", "2s", "--cache-dir", t.TempDir(), "--name", ns}
	ctx := context.Background()

	d := startDaemon(t, args...)
	eventually(t, 90*time.Second, "the apply to begin", func(ctx context.Context) error {
		if n := countConfigMaps(ctx, t, ns); n == 0 || n >= 1000 {
			return fmt.Errorf("%d of 1,000 ConfigMaps", n)
		}
		return nil
	})
	killDaemon(t, d)
	t.Logf("killed mid-apply with %d of 1,000 ConfigMaps", countConfigMaps(ctx, t, ns))
	d = startDaemon(t, args...)
	d.waitFor(t, 90*time.Second, "sync complete after the restart", syncComplete(sha))
	checkManaged(t, ns, 1000)

	repo := cloneRepo(t, srv)
	var objs strings.Builder
	for i := range 600 {
		fmt.Fprintf(&objs, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-%d\n  namespace: %s\ndata:\n  i: %q\n", i, ns, strconv.Itoa(i))
	}
	writeFile(t, repo.path("overlays/many/many-0.yaml"), objs.String())
	head := repo.commit("400 ConfigMaps removed")
	eventually(t, 60*time.Second, "the prune to begin", func(ctx context.Context) error {
		if n := countConfigMaps(ctx, t, ns); n >= 1000 || n <= 600 {
			return fmt.Errorf("%d ConfigMaps", n)
		}
		return nil
	})
	killDaemon(t, d)
	t.Logf("killed mid-prune with %d ConfigMaps left", countConfigMaps(ctx, t, ns))
	d = startDaemon(t, args...)
	d.waitFor(t, 90*time.Second, "sync complete after the restart", syncComplete(head))
	checkManaged(t, ns, 600)
}

// killDaemon kills d with SIGKILL and waits until it is gone.
func killDaemon(t *testing.T, d *daemon) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the daemon to die", func(context.Context) error {
		if processAlive(d.cmd.Process.Pid) {
			return fmt.Errorf("still running")
		}
		return nil
	})
}

// checkManaged asserts that ns exists and holds exactly many-0..many-(n-1),
// each labelled as a member of the sync's ApplySet.
func checkManaged(t *testing.T, ns string, n int) {
	t.Helper()
	if _, err := env.cs.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	list, err := env.cs.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, cm := range list.Items {
		if !strings.HasPrefix(cm.Name, "many-") {
			continue
		}
		got[cm.Name] = true
		if cm.Labels["applyset.kubernetes.io/part-of"] == "" {
			t.Errorf("%s carries no ApplySet label", cm.Name)
		}
	}
	for i := range n {
		if !got["many-"+strconv.Itoa(i)] {
			t.Errorf("many-%d missing", i)
		}
	}
	if len(got) != n {
		t.Errorf("%d ConfigMaps, want exactly %d", len(got), n)
	}
}
