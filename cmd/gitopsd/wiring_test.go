package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/gitopsd/gitopsd/reconciler"
)

type namedSource string

func (n namedSource) Fetch(context.Context) (reconciler.Snapshot, error) {
	return reconciler.Snapshot{}, nil
}
func (n namedSource) String() string { return string(n) }

func TestInventoryName(t *testing.T) {
	a := namedSource("https://git.example.com/a.git (ref main)")
	b := namedSource("https://git.example.com/b.git (ref main)")
	prod := &options{path: "overlays/prod"}

	if got := inventoryName(&options{name: "MySQL Prod", path: "x"}, a); got != "gitopsd-mysql-prod" {
		t.Errorf("with --name: %q", got)
	}
	nameA, nameB := inventoryName(prod, a), inventoryName(prod, b)
	if nameA == nameB {
		t.Errorf("two sources on the same path share inventory %q", nameA)
	}
	if !strings.HasPrefix(nameA, "gitopsd-overlays-prod-") {
		t.Errorf("name %q does not say the path", nameA)
	}
	if again := inventoryName(&options{path: "overlays/prod/"}, a); again != nameA {
		t.Errorf("same source and path give %q and %q", nameA, again)
	}
	if root := inventoryName(&options{path: "."}, a); !strings.HasPrefix(root, "gitopsd-root-") {
		t.Errorf("root path name %q", root)
	}
}

func TestApplyEnv(t *testing.T) {
	t.Setenv("GITOPSD_GIT_URL", "https://env.example.com/repo.git")
	t.Setenv("GITOPSD_INTERVAL", "30s")
	t.Setenv("GITOPSD_PATH", "overlays/from-env")
	o := &options{}
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	sourceFlags(fs, o)
	fs.DurationVar(&o.interval, "interval", time.Minute, "")
	if err := fs.Parse([]string{"--path", "overlays/from-flag"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	got := struct{ URL, Path string }{o.gitURL, o.path}
	want := struct{ URL, Path string }{"https://env.example.com/repo.git", "overlays/from-flag"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("flags after the environment (-want +got):\n%s", diff)
	}
	if o.interval != 30*time.Second {
		t.Errorf("interval %s, want 30s from GITOPSD_INTERVAL", o.interval)
	}

	t.Setenv("GITOPSD_INTERVAL", "soon")
	fs2 := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs2.DurationVar(&o.interval, "interval", time.Minute, "")
	if err := applyEnv(fs2); err == nil || !strings.Contains(err.Error(), "GITOPSD_INTERVAL") {
		t.Errorf("a bad value gives %v, want an error naming GITOPSD_INTERVAL", err)
	}
}

func TestDiffExitsTwoOnBadEnvironment(t *testing.T) {
	t.Setenv("GITOPSD_ALLOW_REMOTE_BASES", "perhaps")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"diff", "--dir", t.TempDir()}, &stdout, &stderr)
	if err != exitError(2) {
		t.Fatalf("diff returned %v, want exit status 2", err)
	}
	if !strings.Contains(stderr.String(), "GITOPSD_ALLOW_REMOTE_BASES") {
		t.Errorf("stderr %q does not name the variable", stderr.String())
	}
}
