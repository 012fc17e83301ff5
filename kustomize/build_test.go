package kustomize

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// repoRoot returns the root of the gitopsd repository: the directory above
// this one whose go.mod declares the gitopsd module.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for {
		if f, err := os.Open(filepath.Join(dir, "go.mod")); err == nil {
			line, _ := bufio.NewReader(f).ReadString('\n')
			f.Close()
			if strings.TrimSpace(line) == "module github.com/gitopsd/gitopsd" {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod for module github.com/gitopsd/gitopsd above the test directory")
		}
		dir = parent
	}
}

// copyTree copies the fixture directory testdata/src to dst, which it
// creates. Tests that add symlinks or need a file outside the root work on
// a copy: symlinks in git fixtures are fragile.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	src = filepath.Join("testdata", src)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		return os.WriteFile(target, data, mode)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// writeFiles writes files (path relative to dir: content) under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ids returns "Kind/name" for each object, in order.
func ids(objs []*unstructured.Unstructured) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetKind() + "/" + o.GetName()
	}
	return out
}

func TestBuildRepoOverlays(t *testing.T) {
	root := repoRoot(t)
	tests := map[string]struct {
		path     string
		replicas int64
	}{
		"dev":  {path: "overlays/dev", replicas: 2},
		"prod": {path: "overlays/prod", replicas: 3},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res, err := NewBuilder(Options{}).Build(context.Background(), root, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Objects) == 0 || res.Objects[0].GetKind() != "Namespace" {
				t.Fatalf("first object is not the Namespace: %v", ids(res.Objects))
			}
			lastService, firstStatefulSet := -1, -1
			for i, o := range res.Objects {
				switch o.GetKind() {
				case "Service":
					lastService = i
				case "StatefulSet":
					if firstStatefulSet < 0 {
						firstStatefulSet = i
					}
					got, _, _ := unstructured.NestedInt64(o.Object, "spec", "replicas")
					if got != tc.replicas {
						t.Errorf("StatefulSet %s has %d replicas, want %d", o.GetName(), got, tc.replicas)
					}
				}
			}
			if lastService < 0 || firstStatefulSet < 0 || firstStatefulSet < lastService {
				t.Errorf("want the StatefulSet after every Service: %v", ids(res.Objects))
			}
			if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(res.Hash) {
				t.Errorf("Hash = %q, want sha256:<64 hex digits>", res.Hash)
			}
			if n := strings.Count(string(res.YAML), "\n---\n") + 1; n != len(res.Objects) {
				t.Errorf("YAML has %d documents, want %d", n, len(res.Objects))
			}
		})
	}
}

func TestBuildOrdersFixture(t *testing.T) {
	res, err := NewBuilder(Options{}).Build(context.Background(), "testdata", "app/overlays/dev")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Namespace/app",
		"ClusterRole/web-reader",
		"ConfigMap/web",
		"Service/web",
		"Deployment/web",
		"ValidatingWebhookConfiguration/web-check",
	}
	if diff := cmp.Diff(want, ids(res.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	// The YAML is in the same order.
	var kinds []string
	for _, m := range regexp.MustCompile(`(?m)^kind: (\w+)$`).FindAllStringSubmatch(string(res.YAML), -1) {
		kinds = append(kinds, m[1])
	}
	wantKinds := []string{"Namespace", "ClusterRole", "ConfigMap", "Service", "Deployment", "ValidatingWebhookConfiguration"}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("YAML kinds (-want +got):\n%s", diff)
	}
}

// TestBuildErrorsNameTheFile checks the failures that come from the content
// of a fixture: each error must name the offending file relative to the
// root, and say why.
func TestBuildErrorsNameTheFile(t *testing.T) {
	tests := map[string]struct {
		path string
		want []string // substrings of the error
	}{
		"malformed kustomization": {
			path: "malformed",
			want: []string{"malformed/kustomization.yaml: invalid Kustomization"},
		},
		"exec function generator": {
			path: "exec-generator",
			want: []string{"exec-generator", "external plugins disabled", "Evil"},
		},
		"container function transformer": {
			path: "container-transformer",
			want: []string{"container-transformer", "external plugins disabled", "Evil"},
		},
		"helm chart": {
			path: "helm",
			want: []string{"helm", "--enable-helm"},
		},
		"remote base": {
			path: "remote",
			want: []string{"remote/kustomization.yaml: resources:", "https://example.invalid/org/repo//base?ref=v1", "AllowRemoteBases"},
		},
		"path outside the root": {
			path: "../outside",
			want: []string{"../outside: the path must be relative and inside the repository root"},
		},
		"path that does not exist": {
			path: "overlays/nope",
			want: []string{"overlays/nope: no such directory"},
		},
		"path that is not a directory": {
			path: "app/base/namespace.yaml",
			want: []string{"app/base/namespace.yaml: not a directory"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			copyTree(t, ".", root)
			_, err := NewBuilder(Options{}).Build(context.Background(), root, tc.path)
			t.Log(err)
			if err == nil {
				t.Fatal("Build succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), root) {
				t.Errorf("error %q names the snapshot directory; want paths relative to it", err)
			}
			// Nothing ran: the exec function would have left this file.
			if _, err := os.Stat(filepath.Join(root, "exec-generator", "ran")); err == nil {
				t.Error("the exec function ran")
			}
		})
	}
}

func TestBuildLimits(t *testing.T) {
	root := t.TempDir()
	big := strings.Replace(configMap, "%s", "big", 1) + "data:\n  key: " + strings.Repeat("x", 2000) + "\n"
	writeFiles(t, root, map[string]string{
		"o/kustomization.yaml": kustomization("small.yaml", "big.yaml"),
		"o/small.yaml":         strings.Replace(configMap, "%s", "small", 1),
		"o/big.yaml":           big,
	})
	tests := map[string]struct {
		opts Options
		want string
	}{
		"file over MaxFileSize": {
			opts: Options{MaxFileSize: 1000},
			want: "o: build stopped: o/big.yaml is 2067 bytes, over the limit of 1000 (MaxFileSize)",
		},
		"total over MaxTotalRead": {
			opts: Options{MaxTotalRead: 1000},
			want: "o: build stopped: reading o/big.yaml takes the build over 1000 bytes read (MaxTotalRead)",
		},
		"output over MaxOutputSize": {
			opts: Options{MaxOutputSize: 1000},
			want: "o: build stopped: the rendered output is over 1000 bytes (MaxOutputSize)",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := NewBuilder(tc.opts).Build(context.Background(), root, "o")
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := NewBuilder(Options{MaxFileSize: 3000, MaxTotalRead: 3000, MaxOutputSize: 3000}).Build(context.Background(), root, "o"); err != nil {
		t.Errorf("within the limits: %v", err)
	}
}

func TestBuildEmptyIsNotAnError(t *testing.T) {
	res, err := NewBuilder(Options{}).Build(context.Background(), "testdata", "empty")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 0 || len(res.YAML) != 0 {
		t.Errorf("got %d objects and %d bytes of YAML, want none", len(res.Objects), len(res.YAML))
	}
}

func TestBuildHash(t *testing.T) {
	root := t.TempDir()
	copyTree(t, "app", root)
	b := NewBuilder(Options{})
	build := func() string {
		t.Helper()
		res, err := b.Build(context.Background(), root, "overlays/dev")
		if err != nil {
			t.Fatal(err)
		}
		return res.Hash
	}
	first, again := build(), build()
	if first != again {
		t.Errorf("hash changed between two builds of the same input: %s, %s", first, again)
	}
	k := filepath.Join(root, "overlays/dev/kustomization.yaml")
	data, err := os.ReadFile(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, []byte(strings.Replace(string(data), "count: 2", "count: 3", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed := build(); changed == first {
		t.Errorf("hash %s did not change with the replica count", changed)
	}
}

func TestBuildConcurrent(t *testing.T) {
	root := repoRoot(t)
	b := NewBuilder(Options{})
	const n = 8
	results := make([]*Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Two builders, to show that builds are serialized process-wide.
			builder := b
			if i%2 == 1 {
				builder = NewBuilder(Options{})
			}
			results[i], errs[i] = builder.Build(context.Background(), root, "overlays/prod")
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		if diff := cmp.Diff(string(results[0].YAML), string(results[i].YAML)); diff != "" {
			t.Errorf("build %d differs from build 0 (-want +got):\n%s", i, diff)
		}
		if results[i].Hash != results[0].Hash {
			t.Errorf("build %d: hash %s, want %s", i, results[i].Hash, results[0].Hash)
		}
	}
}

func TestBuildRecoversPanic(t *testing.T) {
	b := NewBuilder(Options{InProcess: true})
	b.run = func(filesys.FileSystem, string) (resmap.ResMap, error) { panic("boom") }
	_, err := b.Build(context.Background(), "testdata", "app/overlays/dev")
	want := "app/overlays/dev: kustomize build panicked: boom"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	// The panic released the build slot.
	if _, err := NewBuilder(Options{}).Build(context.Background(), "testdata", "app/overlays/dev"); err != nil {
		t.Fatalf("build after a panic: %v", err)
	}
}

func TestBuildContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := NewBuilder(Options{}).Build(ctx, "testdata", "app/overlays/dev")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}

	// A caller waiting for its turn gives up with its context.
	// A deadline rather than a cancel, so that the build surely starts to
	// wait before its context ends.
	buildSlot <- struct{}{}
	defer func() { <-buildSlot }()
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = NewBuilder(Options{}).Build(ctx, "testdata", "app/overlays/dev")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting build: error = %v, want context.DeadlineExceeded", err)
	}
}

func TestOptionsDefaults(t *testing.T) {
	got := Options{MaxFileSize: 10}.withDefaults()
	want := Options{MaxFileSize: 10, MaxTotalRead: DefaultMaxTotalRead, MaxOutputSize: DefaultMaxOutputSize,
		MaxObjects: DefaultMaxObjects, MaxYAMLDepth: DefaultMaxYAMLDepth, MaxBuildMemory: DefaultMaxBuildMemory, MaxBuildTime: DefaultMaxBuildTime}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("withDefaults (-want +got):\n%s", diff)
	}
}

func TestRelativize(t *testing.T) {
	tests := map[string]string{
		"open /snap/r1/base/cm.yaml: no such file": "open base/cm.yaml: no such file",
		"'/snap/r1' is not a directory":            "'.' is not a directory",
		"under /snap/r1":                           "under .",
		"/snap/r10/x and /snap/r1/y":               "/snap/r10/x and y",
		"nothing to do":                            "nothing to do",
	}
	got := map[string]string{}
	for msg := range tests {
		got[msg] = relativize(msg, "/snap/r1")
	}
	if diff := cmp.Diff(tests, got); diff != "" {
		t.Errorf("relativize (-want +got):\n%s", diff)
	}
}

func TestResultLogValue(t *testing.T) {
	res, err := NewBuilder(Options{}).Build(context.Background(), "testdata", "app/overlays/dev")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("built", "result", res)
	want := fmt.Sprintf("result.hash=%s result.objects=6", res.Hash)
	if !strings.Contains(buf.String(), want) || strings.Contains(buf.String(), "greeting") {
		t.Errorf("log record %q, want %q and no object content", buf.String(), want)
	}
}
