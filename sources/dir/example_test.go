package dir_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/gitopsd/gitopsd/sources/dir"
)

// Example shows the loop the reconciler runs over a directory: Run in the
// background, and a Fetch on every signal.
func Example() {
	root, err := os.MkdirTemp("", "gitopsd-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	manifest := filepath.Join(root, "kustomization.yaml")
	if err := os.WriteFile(manifest, []byte("resources: []\n"), 0o644); err != nil {
		log.Fatal(err)
	}

	src, err := dir.New(dir.Options{Path: root, Debounce: 50 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		if err := src.Run(ctx); err != nil {
			log.Print(err)
		}
	}()

	var last string
	for i := range 2 {
		<-src.Changed() // first: Run's watch is in place; then: the edit below
		snap, err := src.Fetch(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("sync %d: new revision %v\n", i+1, snap.Revision != last)
		last = snap.Revision

		if i == 0 {
			if err := os.WriteFile(manifest, []byte("resources:\n- base\n"), 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
	// Output:
	// sync 1: new revision true
	// sync 2: new revision true
}
