package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestLeaderElection runs two daemons with --leader-elect on one source:
// exactly one syncs; after `kill -9` of the leader the other takes the
// Lease and applies the next commit within 30 s.
func TestLeaderElection(t *testing.T) {
	const ns = "leader-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	args := []string{"--git-url", srv.URL + "/stack.git", "--git-ref", "main", "--path", "overlays/dev", "--interval", "2s",
		"--leader-elect", "--leader-election-namespace", "gitopsd", "--leader-election-id", "leader-e2e", "--name", "leader-e2e"}
	first := repo.git(repo.dir, "rev-parse", "HEAD")
	leader, standby := startPair(t, args, first, 90*time.Second)
	waitStatefulSetReady(t, ns, 2)
	// Three intervals: the standby never syncs.
	standby.never(t, 6*time.Second, "a sync by the standby", func(r logRecord) bool {
		return strings.HasPrefix(r.str("msg"), "sync ")
	})
	if standby.has(func(r logRecord) bool { return strings.HasPrefix(r.str("msg"), "sync ") }) {
		t.Fatal("the standby synced")
	}
	base := standby.baseURL(t)
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK || !strings.Contains(string(body), "standby") {
		t.Errorf("standby /readyz: %d %s", code, body)
	}

	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	editFile(t, repo.path("overlays/dev/kustomization.yaml"), func(s string) string { return strings.Replace(s, "count: 2", "count: 3", 1) })
	sha := repo.commit("scale to 3 after the leader died")
	standby.waitFor(t, 30*time.Second, "the standby applies the next commit", syncComplete(sha))
	t.Logf("the standby applied the next commit %s after the leader was killed", time.Since(killed).Round(100*time.Millisecond))
	elected := standby.find(func(r logRecord) bool { return r.str("msg") == "leader elected" })
	if elected == nil {
		t.Fatal("no `leader elected` record from the new leader")
	}
	// The Lease lasts 12 s from the standby's last sight of a renewal, and
	// the standby looks every 2 s.
	takeover := recordTime(t, elected).Sub(killed)
	t.Logf("the standby took the Lease %s after the leader was killed", takeover.Round(100*time.Millisecond))
	if takeover > 20*time.Second {
		t.Errorf("the standby took the Lease %s after the leader's death, want within 20s", takeover)
	}
}

// startPair makes sure the Lease's namespace gitopsd exists, starts two
// daemons with args (which elect a leader), and returns them once one has
// completed a sync of sha: the leader first.
func startPair(t *testing.T, args []string, sha string, within time.Duration) (leader, standby *daemon) {
	t.Helper()
	if _, err := env.cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gitopsd"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	a, b := startDaemon(t, args...), startDaemon(t, args...)
	eventually(t, within, "one daemon completes the first sync", func(context.Context) error {
		switch {
		case a.has(syncComplete(sha)):
			leader, standby = a, b
		case b.has(syncComplete(sha)):
			leader, standby = b, a
		default:
			return fmt.Errorf("no sync yet")
		}
		return nil
	})
	return leader, standby
}

// has reports whether any record so far matches.
func (d *daemon) has(match func(logRecord) bool) bool { return d.find(match) != nil }

// find returns the first record so far that matches, or nil.
func (d *daemon) find(match func(logRecord) bool) logRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.records {
		if match(r) {
			return r
		}
	}
	return nil
}
