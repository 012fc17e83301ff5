package git_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitopsd/gitopsd/sources/git"
)

func ExampleSource_Fetch() {
	// A local upstream repository stands in for https://github.com/org/fleet.git.
	upstream, cleanup := exampleUpstream()
	defer cleanup()
	cache, err := os.MkdirTemp("", "gitopsd-example-cache-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(cache)

	src, err := git.New(git.Options{
		URL:      upstream,
		Ref:      "main",
		CacheDir: cache,
		// Auth: from git.AuthFromFiles("/etc/gitopsd/git-auth") for a private repo.
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	snap, err := src.Fetch(ctx)
	if err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(snap.Dir, "overlays", "prod", "kustomization.yaml"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(snap.Revision)
	fmt.Print(string(b))
	// Output:
	// main@sha1:717ed9a1b0bfce2397dfd86867d733172d419b69
	// resources: [../../base]
}

// exampleUpstream makes a one-commit repository with fixed dates, so the
// revision above is the same on every run.
func exampleUpstream() (string, func()) {
	dir, err := os.MkdirTemp("", "gitopsd-example-upstream-")
	if err != nil {
		log.Fatal(err)
	}
	repo, err := gogit.PlainInitWithOptions(dir, &gogit.PlainInitOptions{
		InitOptions: gogit.InitOptions{DefaultBranch: plumbing.Main},
	})
	if err != nil {
		log.Fatal(err)
	}
	file := filepath.Join(dir, "overlays", "prod", "kustomization.yaml")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("resources: [../../base]\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	w, err := repo.Worktree()
	if err != nil {
		log.Fatal(err)
	}
	if err := w.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		log.Fatal(err)
	}
	sig := &object.Signature{Name: "Example", Email: "example@example.com", When: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := w.Commit("prod overlay", &gogit.CommitOptions{Author: sig}); err != nil {
		log.Fatal(err)
	}
	return dir, func() { os.RemoveAll(dir) }
}
