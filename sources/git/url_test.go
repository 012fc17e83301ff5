package git

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRemote(t *testing.T) {
	abs, err := filepath.Abs("rel/repo")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		in          string
		want        remote
		wantSecrets []string
		wantErr     string
	}{
		"https": {
			in:   "https://github.com/org/repo.git",
			want: remote{url: "https://github.com/org/repo.git", scheme: "https"},
		},
		"https user and token stripped": {
			in:          "https://alice:t0ken@github.com/org/repo.git",
			want:        remote{url: "https://github.com/org/repo.git", scheme: "https", user: "alice", password: "t0ken"},
			wantSecrets: []string{"t0ken", "alice:t0ken", "alice"},
		},
		"https token as username": {
			in:          "https://t0ken@github.com/org/repo.git",
			want:        remote{url: "https://github.com/org/repo.git", scheme: "https", user: "t0ken"},
			wantSecrets: []string{"t0ken"},
		},
		"http with port": {
			in:   "http://127.0.0.1:8080/repo.git",
			want: remote{url: "http://127.0.0.1:8080/repo.git", scheme: "http"},
		},
		"ssh keeps user": {
			in:   "ssh://git@github.com/org/repo.git",
			want: remote{url: "ssh://git@github.com/org/repo.git", scheme: "ssh", user: "git", hostPort: "github.com:22"},
		},
		"ssh default user and port": {
			in:   "ssh://example.com:2222/repo.git",
			want: remote{url: "ssh://git@example.com:2222/repo.git", scheme: "ssh", user: "git", hostPort: "example.com:2222"},
		},
		"ssh password stripped": {
			in:          "ssh://deploy:pw@example.com/repo.git",
			want:        remote{url: "ssh://deploy@example.com/repo.git", scheme: "ssh", user: "deploy", password: "pw", hostPort: "example.com:22"},
			wantSecrets: []string{"pw"},
		},
		"scp-like": {
			in:   "git@github.com:org/repo.git",
			want: remote{url: "git@github.com:org/repo.git", scheme: "ssh", user: "git", hostPort: "github.com:22"},
		},
		"scp-like without user": {
			in:   "github.com:org/repo.git",
			want: remote{url: "git@github.com:org/repo.git", scheme: "ssh", user: "git", hostPort: "github.com:22"},
		},
		"file URL": {
			in:   "file:///srv/git/repo",
			want: remote{url: "file:///srv/git/repo", scheme: "file"},
		},
		"absolute path": {
			in:   "/srv/git/repo",
			want: remote{url: "/srv/git/repo", scheme: "file"},
		},
		"relative path made absolute": {
			in:   "rel/repo",
			want: remote{url: abs, scheme: "file"},
		},
		"path with colon after slash": {
			in:   "./a:b",
			want: remote{url: mustAbs(t, "./a:b"), scheme: "file"},
		},
		"git protocol": {
			in:   "git://example.com/repo.git",
			want: remote{url: "git://example.com/repo.git", scheme: "git"},
		},
		"empty":            {in: "", wantErr: "empty"},
		"unknown scheme":   {in: "ftp://example.com/repo", wantErr: `scheme "ftp"`},
		"no host":          {in: "https:///repo", wantErr: "no host"},
		"bad URL no echo":  {in: "https://alice:s3cret@exa mple.com/%zz", wantErr: "parse git URL"},
		"bad port no echo": {in: "ssh://alice:s3cret@example.com:99999999999999999999/r", wantErr: "parse git URL"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseRemote(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseRemote(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error reveals the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRemote(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(remote{})); diff != "" {
				t.Errorf("parseRemote(%q) (-want +got):\n%s", tc.in, diff)
			}
			if diff := cmp.Diff(tc.wantSecrets, got.secrets()); diff != "" {
				t.Errorf("secrets (-want +got):\n%s", diff)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
