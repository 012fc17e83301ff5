package kustomize

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const configMap = `apiVersion: v1
kind: ConfigMap
metadata:
  name: %s
`

// kustomization returns a kustomization file listing resources.
func kustomization(resources ...string) string {
	return "resources:\n- " + strings.Join(resources, "\n- ") + "\n"
}

// TestBuildConfinement builds overlays whose files reach outside the
// repository root through symlinks and "../", each in a fresh temporary
// directory laid out as
//
//	tmp/outside.yaml, tmp/outside-base/   (outside the root)
//	tmp/repo/                             (the root)
func TestBuildConfinement(t *testing.T) {
	tests := map[string]struct {
		files    map[string]string // under the root
		symlinks map[string]string // link (under the root): target ("$OUT" is tmp)
		path     string
		want     string // substring of the error; "" for success
	}{
		"symlink to /etc/passwd": {
			files:    map[string]string{"overlays/dev/kustomization.yaml": kustomization("evil.yaml")},
			symlinks: map[string]string{"overlays/dev/evil.yaml": "/etc/passwd"},
			path:     "overlays/dev",
			want:     "overlays/dev: overlays/dev/evil.yaml: symlink escapes the repository root",
		},
		"symlink escaping through another symlink": {
			files: map[string]string{"overlays/dev/kustomization.yaml": kustomization("evil.yaml")},
			symlinks: map[string]string{
				"overlays/dev/evil.yaml": "../../hop.yaml",
				"hop.yaml":               "$OUT/outside.yaml",
			},
			path: "overlays/dev",
			want: "overlays/dev/evil.yaml: symlink escapes the repository root",
		},
		"symlinked directory out of the root": {
			files:    map[string]string{"overlays/dev/kustomization.yaml": kustomization("../../base")},
			symlinks: map[string]string{"base": "$OUT/outside-base"},
			path:     "overlays/dev",
			want:     "base: symlink escapes the repository root",
		},
		"file through a symlinked directory": {
			files:    map[string]string{"overlays/dev/kustomization.yaml": kustomization("etc/passwd")},
			symlinks: map[string]string{"overlays/dev/etc": "/etc"},
			path:     "overlays/dev",
			want:     "overlays/dev/etc/passwd: symlink escapes the repository root",
		},
		"resource climbing out with ../": {
			files: map[string]string{"overlays/dev/kustomization.yaml": kustomization("../../../outside.yaml")},
			path:  "overlays/dev",
			want:  "../outside.yaml: path escapes the repository root",
		},
		"base climbing out with ../": {
			files: map[string]string{"overlays/dev/kustomization.yaml": kustomization("../../../outside-base")},
			path:  "overlays/dev",
			want:  "../outside-base: path escapes the repository root",
		},
		"absolute path outside the root": {
			files: map[string]string{"overlays/dev/kustomization.yaml": kustomization("$OUT/outside.yaml")},
			path:  "overlays/dev",
			want:  "../outside.yaml: path escapes the repository root",
		},
		"configMapGenerator file through a symlink": {
			files:    map[string]string{"overlays/dev/kustomization.yaml": "configMapGenerator:\n- name: leak\n  files:\n  - passwd\n"},
			symlinks: map[string]string{"overlays/dev/passwd": "/etc/passwd"},
			path:     "overlays/dev",
			want:     "overlays/dev/passwd: symlink escapes the repository root",
		},
		"kustomization file that is a symlink out": {
			symlinks: map[string]string{"overlays/dev/kustomization.yaml": "$OUT/outside-base/kustomization.yaml"},
			path:     "overlays/dev",
			want:     "overlays/dev/kustomization.yaml: symlink escapes the repository root",
		},
		"overlay directory that is a symlink out": {
			symlinks: map[string]string{"overlays/dev": "$OUT/outside-base"},
			path:     "overlays/dev",
			want:     "overlays/dev: symlink escapes the repository root",
		},
		"dangling symlink": {
			files:    map[string]string{"overlays/dev/kustomization.yaml": kustomization("gone.yaml")},
			symlinks: map[string]string{"overlays/dev/gone.yaml": "$OUT/does-not-exist.yaml"},
			path:     "overlays/dev",
			want:     "overlays/dev/gone.yaml: dangling symlink",
		},
		// kustomize's own load restriction keeps a file within its
		// kustomization's directory, even through a symlink.
		"symlinks that stay inside are fine": {
			files: map[string]string{
				"overlays/dev/kustomization.yaml": kustomization("cm.yaml", "../../base"),
				"overlays/dev/data/cm.yaml":       strings.Replace(configMap, "%s", "inside", 1),
				"real-base/kustomization.yaml":    kustomization("cm.yaml"),
				"real-base/cm.yaml":               strings.Replace(configMap, "%s", "base", 1),
			},
			symlinks: map[string]string{
				"overlays/dev/cm.yaml": "data/cm.yaml",
				"base":                 "real-base",
			},
			path: "overlays/dev",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out := t.TempDir()
			root := filepath.Join(out, "repo")
			writeFiles(t, out, map[string]string{
				"outside.yaml":                    strings.Replace(configMap, "%s", "outside", 1),
				"outside-base/kustomization.yaml": kustomization("cm.yaml"),
				"outside-base/cm.yaml":            strings.Replace(configMap, "%s", "outside-base", 1),
			})
			files := map[string]string{}
			for name, content := range tc.files {
				files[name] = strings.ReplaceAll(content, "$OUT", out)
			}
			writeFiles(t, root, files)
			for link, target := range tc.symlinks {
				p := filepath.Join(root, link)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(strings.ReplaceAll(target, "$OUT", out), p); err != nil {
					t.Fatal(err)
				}
			}

			res, err := NewBuilder(Options{}).Build(context.Background(), root, tc.path)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := ids(res.Objects); len(got) != 2 {
					t.Errorf("objects = %v, want the two ConfigMaps", got)
				}
				return
			}
			t.Log(err)
			if err == nil {
				t.Fatalf("Build succeeded with %v, want an error containing %q", ids(res.Objects), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestConfinedFSCloneDir checks the one place outside the root that a build
// may read: kustomize's clones of remote bases, when they are allowed.
func TestConfinedFSCloneDir(t *testing.T) {
	root := t.TempDir()
	clone, err := os.MkdirTemp("", "kustomize-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(clone)
	other, err := os.MkdirTemp("", "not-kustomize-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(other)
	for _, dir := range []string{clone, other} {
		writeFiles(t, dir, map[string]string{"cm.yaml": configMap})
	}
	realRoot, _ := filepath.EvalSymlinks(root)

	tests := map[string]struct {
		allowRemote bool
		file        string
		wantErr     bool
	}{
		"clone, remote allowed":          {allowRemote: true, file: filepath.Join(clone, "cm.yaml")},
		"clone, remote off":              {allowRemote: false, file: filepath.Join(clone, "cm.yaml"), wantErr: true},
		"other temp dir, remote on":      {allowRemote: true, file: filepath.Join(other, "cm.yaml"), wantErr: true},
		"other temp dir, remote off":     {allowRemote: false, file: filepath.Join(other, "cm.yaml"), wantErr: true},
		"the temp dir itself, remote on": {allowRemote: true, file: filepath.Join(os.TempDir(), "x.yaml"), wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := newConfinedFS(realRoot, Options{AllowRemoteBases: tc.allowRemote}.withDefaults())
			_, err := c.ReadFile(tc.file)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("ReadFile(%s) error = %v, want error: %t", tc.file, err, tc.wantErr)
			}
		})
	}
}

func TestConfinedFSReadOnly(t *testing.T) {
	root := t.TempDir()
	realRoot, _ := filepath.EvalSymlinks(root)
	c := newConfinedFS(realRoot, Options{}.withDefaults())
	p := filepath.Join(realRoot, "new.yaml")
	errs := map[string]error{
		"WriteFile": c.WriteFile(p, []byte("x")),
		"Mkdir":     c.Mkdir(p),
		"MkdirAll":  c.MkdirAll(p),
		"RemoveAll": c.RemoveAll(realRoot),
	}
	_, errs["Create"] = c.Create(p)
	_, errs["Open"] = c.Open(p)
	for op, err := range errs {
		if err == nil {
			t.Errorf("%s succeeded, want an error", op)
		}
	}
	if _, err := os.Stat(realRoot); err != nil {
		t.Errorf("root gone: %v", err)
	}
}
