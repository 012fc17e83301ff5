package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/test/gitserver"
)

// TestDaemonSSH runs `gitopsd run` against a repository served over SSH,
// its credentials in --git-secret-dir as a mounted Secret holds them: it
// syncs and follows commits; a daemon whose known_hosts holds another host
// key for the server refuses to fetch and applies nothing.
func TestDaemonSSH(t *testing.T) {
	const ns, refusedNS = "daemon-ssh-e2e", "daemon-ssh-refused-e2e"
	root := t.TempDir()
	repo := seedRepoAt(t, filepath.Join(root, "stack.git"), ns)
	seedRepoAt(t, filepath.Join(root, "refused.git"), refusedNS)
	identity, clientPub := gitserver.NewSSHKey(t, "")
	srv := gitserver.NewSSH(t, root, clientPub)
	ctx := t.Context()

	// A StorageClass of its own, as it has a namespace of its own: mysql-gp2
	// is cluster-scoped, so whichever test applies it first creates it and
	// the next only configures it.
	for file, field := range map[string]string{"base/storageclass.yaml": "name", "base/statefulset.yaml": "storageClassName"} {
		editFile(t, repo.path(file), func(s string) string {
			if !strings.Contains(s, field+": mysql-gp2\n") {
				t.Fatalf("%s: no %s: mysql-gp2", file, field)
			}
			return strings.Replace(s, field+": mysql-gp2\n", field+": "+ns+"-gp2\n", 1)
		})
	}
	first := repo.commit("a StorageClass of its own")
	d := startDaemon(t, "--git-url", srv.RepoURL("stack.git"), "--git-secret-dir", secretDir(t, identity, srv.KnownHostsLine()),
		"--interval", "2s", "--path", "overlays/dev")
	rec := d.waitFor(t, 90*time.Second, "first sync complete over SSH", syncComplete(first))
	if rec.str("path") != "overlays/dev" || rec["created"] != float64(6) {
		t.Errorf("first sync record %v: want path overlays/dev and 6 created", rec)
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

	t.Run("a wrong host key in known_hosts: fetch fails, nothing applied", func(t *testing.T) {
		_, otherHostKey := gitserver.NewSSHKey(t, "")
		wrong := knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, otherHostKey)
		refused := startDaemon(t, "--git-url", srv.RepoURL("refused.git"), "--git-secret-dir", secretDir(t, identity, wrong),
			"--interval", "2s", "--path", "overlays/dev", "--name", "daemon-ssh-refused")
		for i := range 2 { // the first attempt and a retry
			rec := refused.waitFor(t, 30*time.Second, fmt.Sprintf("sync failed at fetch (%d)", i+1), syncFailed(reconciler.StageFetch, ""))
			if !strings.Contains(rec.str("error"), "knownhosts: key mismatch") {
				t.Fatalf("sync failed record %v: want an error saying the host key does not match", rec)
			}
		}
		if _, err := env.cs.CoreV1().Namespaces().Get(ctx, refusedNS, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s of the refused repository exists (err %v)", refusedNS, err)
		}
		if _, err := env.cs.CoreV1().ConfigMaps("gitopsd").Get(ctx, "gitopsd-daemon-ssh-refused", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the refused daemon wrote an inventory (err %v)", err)
		}
	})
}

// secretDir writes the files of --git-secret-dir for SSH (see
// git.AuthFromFiles), as a mounted Secret holds them.
func secretDir(t *testing.T, identity []byte, knownHosts string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string][]byte{"identity": identity, "known_hosts": []byte(knownHosts + "\n")} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
