package kustomize

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIsRemote(t *testing.T) {
	tests := map[string]bool{
		"https://example.invalid/org/repo//base?ref=v1": true,
		"http://example.invalid/cm.yaml":                true,
		"HTTPS://EXAMPLE.INVALID/cm.yaml":               true,
		"https:cm.yaml":                                 true,
		"git@github.com:org/repo.git//base":             true,
		"deploy@git.example.invalid:org/repo":           true,
		"github.com/org/repo//base?ref=v1":              true,
		"GitHub.com/org/repo":                           true,
		"git::https://example.invalid/org/repo":         true,
		"ssh://git@example.invalid/org/repo":            true,
		"file:///srv/repo":                              true,
		"../../base":                                    false,
		"base":                                          false,
		"patches/replicas.yaml":                         false,
		"github.com.yaml":                               false,
		"/abs/path/cm.yaml":                             false,
	}
	got := map[string]bool{}
	for s := range tests {
		got[s] = isRemote(s)
	}
	if diff := cmp.Diff(tests, got); diff != "" {
		t.Errorf("isRemote (-want +got):\n%s", diff)
	}
}

// fakeGit puts a git on PATH that logs its calls to the returned file and,
// on checkout, copies the directory $FAKE_GIT_SRC into the clone, so that
// remote bases can be tested without a network.
func fakeGit(t *testing.T, src string) (log string) {
	t.Helper()
	dir := t.TempDir()
	log = filepath.Join(dir, "calls")
	// The paths are in the script: a build worker gets no environment but
	// PATH from the test.
	script := "#!/bin/sh\necho \"$@\" >> '" + log + "'\n" +
		"if [ \"$1\" = checkout ]; then cp -R '" + src + "'/. .; fi\n"
	if err := os.WriteFile(filepath.Join(dir, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

// countingServer serves a ConfigMap at every path and counts requests.
func countingServer(t *testing.T) (url string, hits *atomic.Int64) {
	t.Helper()
	hits = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(strings.Replace(configMap, "%s", "fetched", 1)))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// TestBuildRefusesRemote checks that every way of naming remote content is
// refused before kustomize fetches anything: no HTTP request reaches the
// local server, no git runs, and the error names the kustomization file and
// the entry.
func TestBuildRefusesRemote(t *testing.T) {
	url, hits := countingServer(t)
	gitLog := fakeGit(t, t.TempDir())
	builtinPatch := "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\npath: " + url + "/patch.yaml\n"
	tests := map[string]struct {
		files map[string]string
		want  string
	}{
		"http resource": {
			files: map[string]string{"o/kustomization.yaml": kustomization(url + "/cm.yaml")},
			want:  `o/kustomization.yaml: resources: "` + url + `/cm.yaml": remote bases and resources are refused`,
		},
		"git base over https": {
			files: map[string]string{"o/kustomization.yaml": kustomization("https://example.invalid/org/repo//base?ref=v1")},
			want:  `o/kustomization.yaml: resources: "https://example.invalid/org/repo//base?ref=v1"`,
		},
		"scp-style git base": {
			files: map[string]string{"o/kustomization.yaml": kustomization("git@github.com:org/repo//base")},
			want:  `o/kustomization.yaml: resources: "git@github.com:org/repo//base"`,
		},
		"github shorthand in deprecated bases": {
			files: map[string]string{"o/kustomization.yaml": "bases:\n- github.com/org/repo//base?ref=v1\n"},
			want:  `o/kustomization.yaml: bases: "github.com/org/repo//base?ref=v1"`,
		},
		"component": {
			files: map[string]string{"o/kustomization.yaml": "components:\n- https://example.invalid/org/repo//c\n"},
			want:  `o/kustomization.yaml: components:`,
		},
		"patch path": {
			files: map[string]string{"o/kustomization.yaml": "patches:\n- path: " + url + "/patch.yaml\n"},
			want:  `o/kustomization.yaml: patches[0].path:`,
		},
		"secretGenerator env": {
			files: map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  env: " + url + "/env\n"},
			want:  `o/kustomization.yaml: secretGenerator[0].env:`,
		},
		"configMapGenerator file with a key": {
			files: map[string]string{"o/kustomization.yaml": "configMapGenerator:\n- name: c\n  files:\n  - key=" + url + "/data\n"},
			want:  `o/kustomization.yaml: configMapGenerator[0].files:`,
		},
		"remote base in a local base": {
			files: map[string]string{
				"o/kustomization.yaml":    kustomization("../base"),
				"base/kustomization.yaml": kustomization("https://example.invalid/org/repo//base"),
			},
			want: `base/kustomization.yaml: resources:`,
		},
		"builtin transformer config file": {
			files: map[string]string{
				"o/kustomization.yaml": "transformers:\n- patch.yaml\n",
				"o/patch.yaml":         builtinPatch,
			},
			want: `o/patch.yaml: PatchTransformer/p.path:`,
		},
		"inline builtin transformer config": {
			files: map[string]string{"o/kustomization.yaml": "transformers:\n- |\n  " + strings.ReplaceAll(strings.TrimSpace(builtinPatch), "\n", "\n  ") + "\n"},
			want:  `o/kustomization.yaml: PatchTransformer/p.path:`,
		},
		"credentials are not repeated": {
			files: map[string]string{"o/kustomization.yaml": kustomization("https://bot:s3cret@example.invalid/org/repo//base")},
			want:  `o/kustomization.yaml: resources: "https://bot:xxxxx@example.invalid/org/repo//base"`,
		},
		"file URL, never allowed": {
			files: map[string]string{"o/kustomization.yaml": kustomization("file:///etc/repo//base")},
			want:  `o/kustomization.yaml: resources: "file:///etc/repo//base": file:// URLs are not allowed`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			_, err := NewBuilder(Options{}).Build(context.Background(), root, "o")
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q repeats a password", err)
			}
			if n := hits.Load(); n != 0 {
				t.Errorf("%d HTTP requests reached the server, want none", n)
			}
			if calls, err := os.ReadFile(gitLog); err == nil {
				t.Errorf("git ran: %s", calls)
			}
		})
	}
}

// TestBuildAllowsRemote checks that AllowRemoteBases lets kustomize fetch
// an http resource (from a local server) and clone a git base (with a fake
// git), and read the clone despite its being outside the root.
func TestBuildAllowsRemote(t *testing.T) {
	url, hits := countingServer(t)
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{
		"base/kustomization.yaml": kustomization("cm.yaml"),
		"base/cm.yaml":            strings.Replace(configMap, "%s", "cloned", 1),
	})
	gitLog := fakeGit(t, repo)
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"o/kustomization.yaml": kustomization(url+"/cm.yaml", "https://example.invalid/org/repo//base?ref=v1"),
	})

	res, err := NewBuilder(Options{AllowRemoteBases: true}).Build(context.Background(), root, "o")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ConfigMap/fetched", "ConfigMap/cloned"}, ids(res.Objects)); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
	if hits.Load() == 0 {
		t.Error("no HTTP request reached the server")
	}
	if _, err := os.Stat(gitLog); err != nil {
		t.Errorf("git did not run: %v", err)
	}

	// file:// stays refused.
	writeFiles(t, root, map[string]string{"f/kustomization.yaml": kustomization("file://" + repo + "//base")})
	if _, err := NewBuilder(Options{AllowRemoteBases: true}).Build(context.Background(), root, "f"); err == nil || !strings.Contains(err.Error(), "file:// URLs are not allowed") {
		t.Errorf("file:// base: error = %v, want a refusal", err)
	}
}
