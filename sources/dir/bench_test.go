package dir_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/sources/dir"
)

// Sizes of the benchmark's tree: a small overlay beside 45 MiB of other
// files, as in a repository that keeps datasets or build output next to
// its manifests.
const (
	benchDirs     = 24
	benchPerDir   = 30
	benchFileSize = 64 << 10 // 24*30 files of 64 KiB: 45 MiB
)

// BenchmarkFetchLargeTree measures Fetch of a small overlay in a 45 MiB
// tree, from the second Fetch on: what the reconciler pays on every signal
// and resync of an unchanged tree.
//
//   - tracked: the 45 MiB is content the revision covers.
//   - ignored: the 45 MiB is under a directory .gitignore ignores.
//   - cold: as tracked, with a new Source, and so no cache, every time.
//
// The tree is generated in a temporary directory. It is left to age past
// the window in which a file's hash is not yet trusted, as a real tree
// between two edits does, before the timer starts.
func BenchmarkFetchLargeTree(b *testing.B) {
	tracked := largeTree(b, "data")
	ignored := largeTree(b, "build")
	time.Sleep(2500 * time.Millisecond) // the racy-git window, see Fetch

	b.Run("tracked", func(b *testing.B) { benchFetch(b, newSource(b, dir.Options{Path: tracked})) })
	b.Run("ignored", func(b *testing.B) { benchFetch(b, newSource(b, dir.Options{Path: ignored})) })
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			src := newSource(b, dir.Options{Path: tracked})
			if _, err := src.Fetch(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchFetch times the Fetches of src after the first.
func benchFetch(b *testing.B, src *dir.Source) {
	first, err := src.Fetch(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		snap, err := src.Fetch(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if snap.Revision != first.Revision {
			b.Fatalf("revision changed from %s to %s", first.Revision, snap.Revision)
		}
	}
}

// largeTree writes an overlay and 45 MiB of other files under bulk, which
// .gitignore ignores when bulk is "build".
func largeTree(b *testing.B, bulk string) string {
	b.Helper()
	root := b.TempDir()
	writeTree(b, root, map[string]string{
		".gitignore":                        "/build/\n",
		"kustomization.yaml":                "resources:\n- base\npatches:\n- path: patch.yaml\n",
		"patch.yaml":                        "kind: Deployment\nmetadata:\n  name: app\nspec:\n  replicas: 3\n",
		"base/kustomization.yaml":           "resources:\n- deployment.yaml\n- service.yaml\n",
		"base/deployment.yaml":              "kind: Deployment\nmetadata:\n  name: app\n",
		"base/service.yaml":                 "kind: Service\nmetadata:\n  name: app\n",
		"base/configmap/settings.env":       "LEVEL=info\n",
		"base/configmap/kustomization.yaml": "configMapGenerator:\n- name: settings\n  envs: [settings.env]\n",
	})
	content := make([]byte, benchFileSize)
	for i := range content {
		content[i] = byte(i * 7)
	}
	for d := range benchDirs {
		sub := filepath.Join(root, bulk, fmt.Sprintf("set%02d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range benchPerDir {
			content[0], content[1] = byte(d), byte(f) // no two files alike
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("part%03d.bin", f)), content, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	return root
}
