package dir_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/sources/dir"
)

func TestNew(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"tree/kustomization.yaml": "resources: []\n",
		"file":                    "x",
		"link":                    "->tree",
		"dangling":                "->missing",
	})
	tests := map[string]struct {
		opts    dir.Options
		wantErr bool
	}{
		"directory":             {opts: dir.Options{Path: filepath.Join(root, "tree")}},
		"symlink to directory":  {opts: dir.Options{Path: filepath.Join(root, "link")}},
		"empty path":            {opts: dir.Options{}, wantErr: true},
		"missing":               {opts: dir.Options{Path: filepath.Join(root, "missing")}, wantErr: true},
		"dangling symlink":      {opts: dir.Options{Path: filepath.Join(root, "dangling")}, wantErr: true},
		"file":                  {opts: dir.Options{Path: filepath.Join(root, "file")}, wantErr: true},
		"negative debounce":     {opts: dir.Options{Path: root, Debounce: -time.Second}, wantErr: true},
		"negative max files":    {opts: dir.Options{Path: root, MaxFiles: -1}, wantErr: true},
		"explicit limits":       {opts: dir.Options{Path: root, Debounce: time.Second, MaxFiles: 1, MaxBytes: 1}},
		"relative path resolve": {opts: dir.Options{Path: "."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := dir.New(tc.opts)
			if gotErr := err != nil; gotErr != tc.wantErr {
				t.Fatalf("New(%+v) error = %v, want error %v", tc.opts, err, tc.wantErr)
			}
		})
	}
}

func TestString(t *testing.T) {
	root := t.TempDir()
	src := newSource(t, dir.Options{Path: root})
	if got, want := src.String(), "dir:"+root; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestNewErrorNamesPath(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := dir.New(dir.Options{Path: missing})
	if err == nil || !containsPath(err, missing) {
		t.Errorf("New error = %v, want one naming %s", err, missing)
	}
	if _, statErr := os.Stat(missing); statErr == nil {
		t.Fatal("missing exists")
	}
}
