package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigReload runs the daemon from a --config file and edits it: a
// second sync (another repository, its own namespace) starts without a
// restart; a broken edit is rejected and the running syncs go on.
func TestConfigReload(t *testing.T) {
	const ns1, ns2 = "config-one-e2e", "config-two-e2e"
	srv1, srv2 := newGitServer(t), newGitServer(t)
	repo1, repo2 := seedRepo(t, srv1, ns1), seedRepo(t, srv2, ns2)
	sync := func(name string, srv *gitServer) string {
		return fmt.Sprintf("- name: %s\n  gitURL: %s/stack.git\n  gitRef: main\n  path: overlays/dev\n  interval: 2s\n", name, srv.URL)
	}
	config := filepath.Join(t.TempDir(), "gitopsd.yaml")
	write := func(content string) {
		// Replaced, not written in place, as editors and ConfigMap volumes do.
		tmp := config + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, config); err != nil {
			t.Fatal(err)
		}
	}
	write("syncs:\n" + sync("one", srv1))
	d := startDaemon(t, "--config", config)
	d.waitFor(t, 90*time.Second, "first sync of one", syncComplete(repo1.git(repo1.dir, "rev-parse", "HEAD")))
	waitStatefulSetReady(t, ns1, 2)

	write("syncs:\n" + sync("one", srv1) + sync("two", srv2))
	d.waitFor(t, 10*time.Second, "config reloaded", func(r logRecord) bool { return r.str("msg") == "config reloaded" })
	rec := d.waitFor(t, 90*time.Second, "first sync of two", syncComplete(repo2.git(repo2.dir, "rev-parse", "HEAD")))
	if rec.str("sync") != "gitopsd-two" {
		t.Errorf("sync record %v: want sync gitopsd-two", rec)
	}
	waitStatefulSetReady(t, ns2, 2)

	write("syncs:\n" + sync("one", srv1) + "- name: three\n  replicas: 3\n")
	rec = d.waitFor(t, 10*time.Second, "config rejected", func(r logRecord) bool { return r.str("msg") == "config rejected" })
	if !strings.Contains(rec.str("error"), config) || !strings.Contains(rec.str("error"), "replicas") {
		t.Errorf("config rejected record %v: want the file and the bad field named", rec)
	}
	// Both syncs still run: a commit to either is applied.
	for _, r := range []*workRepo{repo1, repo2} {
		editFile(t, r.path("overlays/dev/kustomization.yaml"), func(s string) string { return strings.Replace(s, "count: 2", "count: 3", 1) })
		d.waitFor(t, 30*time.Second, "a commit after the rejected edit", syncComplete(r.commit("scale to 3")))
	}
	d.never(t, 2*time.Second, "a sync stopped", func(r logRecord) bool { return r.str("msg") == "sync stopped" })
}
