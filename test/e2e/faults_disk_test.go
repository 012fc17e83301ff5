package e2e

import (
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/reconciler"
)

// TestFaultFullCacheDisk runs the daemon with its cache on a 4 MiB tmpfs,
// over http and over file:// (whose git-upload-pack child used to block on
// a full pipe for ever), and commits a file that does not fit: the sync fails at stage fetch
// naming the cache directory, the cluster keeps its objects; once the
// filesystem is grown, the next commit is applied without a restart.
func TestFaultFullCacheDisk(t *testing.T) {
	for _, transport := range []string{"http", "file"} {
		t.Run(transport, func(t *testing.T) { fullCacheDisk(t, transport) })
	}
}

func fullCacheDisk(t *testing.T, transport string) {
	ns := "fault-disk-" + transport + "-e2e"
	cache := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", cache).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs (the fault cases run as root): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", cache).Run() })
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 10)
	const interval = 2 * time.Second
	gitURL := srv.URL + "/stack.git"
	if transport == "file" {
		gitURL = "file://" + filepath.Join(srv.Root, "stack.git")
	}
	d := startDaemon(t, "--git-url", gitURL, "--git-ref", "main", "--path", "overlays/many",
		"--interval", interval.String(), "--cache-dir", cache, "--git-timeout", "10s")
	d.waitFor(t, 60*time.Second, "first sync complete", syncComplete(sha))

	repo := cloneRepo(t, srv)
	big := make([]byte, 8<<20) // incompressible: the pack is as large
	rand.Read(big)
	if err := os.WriteFile(repo.path("big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	full := repo.commit("a file larger than the cache's filesystem")
	pushed := time.Now()
	rec := d.waitFor(t, 60*time.Second, "sync failed at fetch", syncFailed(reconciler.StageFetch, ""))
	if took := recordTime(t, rec).Sub(pushed); took > interval+10*time.Second {
		t.Errorf("the fetch failed %s after the push, want within an interval and the git timeout", took.Round(time.Millisecond))
	}
	if code, body := httpGet(t, d.baseURL(t)+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while the disk is full: %d %s (the loop is not stuck: its fetch fails)", code, body)
	}
	t.Logf("full disk: %s", shorten(rec.str("error"), 300))
	if !strings.Contains(rec.str("error"), cache) || !strings.Contains(rec.str("error"), "no space left on device") {
		t.Errorf("the fetch error does not name the cache directory and the full disk: %s", rec.str("error"))
	}
	if d.has(syncComplete(full)) {
		t.Error("the commit that does not fit was applied")
	}
	if n := countConfigMaps(t.Context(), t, ns); n != 10 {
		t.Errorf("%d ConfigMaps while the disk is full, want 10", n)
	}

	if out, err := exec.Command("mount", "-o", "remount,size=64m", cache).CombinedOutput(); err != nil {
		t.Fatalf("grow the tmpfs: %v: %s", err, out)
	}
	editFile(t, repo.path("overlays/many/namespace.yaml"), func(s string) string { return s + "  labels: {disk: back}\n" })
	freed := time.Now()
	head := repo.commit("after space came back")
	rec = d.waitFor(t, 30*time.Second, "the commit after space came back", syncComplete(head))
	t.Logf("applied %s after space was freed, without a restart", recordTime(t, rec).Sub(freed).Round(time.Millisecond))
}
