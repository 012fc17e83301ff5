package e2e

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFaultCorruptCache stops the daemon, corrupts its git cache (a file of
// the published snapshot truncated; then the clone's pack truncated) and
// starts it again on the same cache: nothing is pruned, the same objects
// are applied, and a record says the cache was repaired.
func TestFaultCorruptCache(t *testing.T) {
	const ns = "fault-cache-e2e"
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 30)
	cache := t.TempDir()
	args := []string{"--git-url", srv.URL + "/stack.git", "--git-ref", "main", "--path", "overlays/many",
		"--interval", "2s", "--cache-dir", cache}
	d := startDaemon(t, args...)
	d.waitFor(t, 60*time.Second, "first sync complete", syncComplete(sha))

	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T)
	}{
		{"a snapshot file truncated", func(t *testing.T) {
			truncateHalf(t, filepath.Join(cache, "snapshots", sha, "overlays", "many", "many-0.yaml"))
		}},
		{"the clone's pack truncated", func(t *testing.T) {
			packs := findFiles(t, cache, ".pack")
			if len(packs) == 0 {
				t.Fatal("no pack in the cache")
			}
			for _, p := range packs {
				truncateHalf(t, p)
			}
		}},
	} {
		stopDaemon(t, d)
		tc.corrupt(t)
		d = startDaemon(t, args...)
		rec := d.waitFor(t, 30*time.Second, tc.name+": sync complete after the restart", syncComplete(sha))
		if pruned, _ := rec["pruned"].(float64); pruned != 0 {
			t.Errorf("%s: the sync after the restart pruned %v objects", tc.name, pruned)
		}
		if created, _ := rec["created"].(float64); created != 0 {
			t.Errorf("%s: the sync after the restart created %v objects (it should find them all)", tc.name, created)
		}
		if !d.has(func(r logRecord) bool { return r.str("msg") == "git cache repaired" }) {
			t.Errorf("%s: no `git cache repaired` record", tc.name)
		}
		if n := countConfigMaps(context.Background(), t, ns); n != 30 {
			t.Errorf("%s: %d ConfigMaps, want 30", tc.name, n)
		}
	}
}

// stopDaemon ends d with SIGTERM and waits for it.
func stopDaemon(t *testing.T, d *daemon) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the daemon to exit", func(context.Context) error {
		if processAlive(d.cmd.Process.Pid) {
			return errors.New("still running")
		}
		return nil
	})
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

// findFiles lists the files under dir whose names end in suffix.
func findFiles(t *testing.T, dir, suffix string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
