package git

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

func TestFetchOverSSH(t *testing.T) {
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	h := up.commitFile("app.yaml", "over ssh\n")
	clientKey, clientPub := gitserver.NewSSHKey(t, "")
	otherKey, _ := gitserver.NewSSHKey(t, "")
	srv := gitserver.NewSSH(t, root, clientPub)
	_, wrongHostKey := gitserver.NewSSHKey(t, "")
	url := srv.RepoURL("repo.git")

	tests := map[string]struct {
		auth     Auth
		insecure bool
		wantErr  string
	}{
		"known host": {
			auth: Auth{SSHPrivateKey: clientKey, KnownHosts: []byte(srv.KnownHostsLine())},
		},
		"insecure opt-in without known_hosts": {
			auth: Auth{SSHPrivateKey: clientKey}, insecure: true,
		},
		"host key changed": {
			auth:    Auth{SSHPrivateKey: clientKey, KnownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.Addr)}, wrongHostKey))},
			wantErr: "knownhosts: key mismatch",
		},
		"host unknown": {
			auth:    Auth{SSHPrivateKey: clientKey, KnownHosts: []byte(knownhosts.Line([]string{"elsewhere.example.com"}, srv.HostKey))},
			wantErr: "knownhosts: key is unknown",
		},
		"client key not authorized": {
			auth:    Auth{SSHPrivateKey: otherKey, KnownHosts: []byte(srv.KnownHostsLine())},
			wantErr: "unable to authenticate",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			src, err := New(Options{URL: url, Auth: tc.auth, InsecureSkipHostKeyCheck: tc.insecure, CacheDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			got, err := src.Fetch(t.Context())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), url) {
					t.Fatalf("Fetch error = %v, want one naming %s and containing %q", err, url, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if want := revision("main", h); got.Revision != want {
				t.Errorf("revision = %q, want %q", got.Revision, want)
			}
		})
	}
}
