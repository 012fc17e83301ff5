package git

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

func TestAuthFromFiles(t *testing.T) {
	key, hostKey := gitserver.NewSSHKey(t, "")
	knownHosts := knownhosts.Line([]string{"github.com"}, hostKey) + "\n"
	tests := map[string]struct {
		files map[string]string
		want  Auth
	}{
		"empty dir": {files: map[string]string{}, want: Auth{}},
		"https basic, trailing newlines trimmed": {
			files: map[string]string{"username": "alice\n", "password": "t0ken\r\n"},
			want:  Auth{Username: "alice", Password: "t0ken"},
		},
		"ssh: password is the key passphrase, as in Flux": {
			files: map[string]string{"identity": string(key), "known_hosts": knownHosts, "password": "phrase\n"},
			want:  Auth{SSHPrivateKey: key, SSHKeyPassphrase: "phrase", KnownHosts: []byte(knownHosts)},
		},
		"unknown files ignored": {
			files: map[string]string{"identity.pub": "x", "caFile": "y", "username": "bob"},
			want:  Auth{Username: "bob"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := AuthFromFiles(dir)
			if err != nil {
				t.Fatalf("AuthFromFiles: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("AuthFromFiles (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthFromFilesErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	// A directory where a file should be cannot be read.
	if err := os.Mkdir(filepath.Join(dir, "password"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := AuthFromFiles(dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "password")) {
		t.Errorf("AuthFromFiles error = %v, want one naming %s", err, filepath.Join(dir, "password"))
	}
	big := t.TempDir()
	if err := os.WriteFile(filepath.Join(big, "identity"), bytes.Repeat([]byte("k"), maxAuthFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = AuthFromFiles(big)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(big, "identity")) {
		t.Errorf("AuthFromFiles error = %v, want one naming the oversized identity file", err)
	}
}

func TestAuthRedacts(t *testing.T) {
	key, _ := gitserver.NewSSHKey(t, "")
	a := Auth{Username: "alice", Password: "pa55word", SSHPrivateKey: key, SSHKeyPassphrase: "phr4se", KnownHosts: []byte("h")}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("auth", "auth", a)
	for what, out := range map[string]string{
		"String": a.String(),
		"%v":     fmt.Sprintf("%v", a),
		"%+v":    fmt.Sprintf("%+v", a),
		"%#v":    fmt.Sprintf("%#v", a),
		"slog":   logged.String(),
	} {
		for _, secret := range []string{"alice", "pa55word", "phr4se", "PRIVATE KEY", string(key[40:60])} {
			if strings.Contains(out, secret) {
				t.Errorf("%s reveals %q: %s", what, secret, out)
			}
		}
	}
	want := "git.Auth{username,password,ssh-private-key,ssh-key-passphrase,known-hosts (redacted)}"
	if got := a.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestTransportAuth(t *testing.T) {
	key, hostKey := gitserver.NewSSHKey(t, "")
	encKey, _ := gitserver.NewSSHKey(t, "s3cret-phrase")
	known := []byte(knownhosts.Line([]string{"example.com"}, hostKey) + "\n")
	sshURL := "git@example.com:org/repo.git"
	tests := map[string]struct {
		url      string
		auth     Auth
		insecure bool
		want     string // "none", "basic user:pass", "ssh"
		wantErr  error
		wantMsg  string
	}{
		"https anonymous":             {url: "https://h/r", want: "none"},
		"https token gets a username": {url: "https://h/r", auth: Auth{Password: "tok"}, want: "basic git:tok"},
		"https from URL":              {url: "https://u:p@h/r", want: "basic u:p"},
		"https Auth wins":             {url: "https://u:p@h/r", auth: Auth{Username: "a", Password: "b"}, want: "basic a:b"},
		"file ignores Auth":           {url: "/srv/repo", auth: Auth{Password: "x"}, want: "none"},
		"ssh with known_hosts":        {url: sshURL, auth: Auth{SSHPrivateKey: key, KnownHosts: known}, want: "ssh"},
		"ssh insecure opt-in":         {url: sshURL, auth: Auth{SSHPrivateKey: key}, insecure: true, want: "ssh"},
		"ssh encrypted key":           {url: sshURL, auth: Auth{SSHPrivateKey: encKey, SSHKeyPassphrase: "s3cret-phrase", KnownHosts: known}, want: "ssh"},
		"ssh password":                {url: sshURL, auth: Auth{Password: "pw", KnownHosts: known}, want: "ssh"},
		"ssh without known_hosts": {
			url: sshURL, auth: Auth{SSHPrivateKey: key},
			wantErr: errKnownHostsRequired, wantMsg: "ssh requires known_hosts",
		},
		"ssh URL form without known_hosts": {
			url: "ssh://git@example.com/repo", auth: Auth{SSHPrivateKey: key},
			wantErr: errKnownHostsRequired, wantMsg: "--insecure-skip-host-key-check",
		},
		"ssh without key":          {url: sshURL, auth: Auth{KnownHosts: known}, wantMsg: "ssh requires a private key"},
		"ssh bad key":              {url: sshURL, auth: Auth{SSHPrivateKey: []byte("nope"), KnownHosts: known}, wantMsg: "ssh private key"},
		"ssh encrypted, no phrase": {url: sshURL, auth: Auth{SSHPrivateKey: encKey, KnownHosts: known}, wantMsg: "no passphrase"},
		"ssh bad known_hosts":      {url: sshURL, auth: Auth{SSHPrivateKey: key, KnownHosts: []byte("example.com ssh-ed25519 !!!\n")}, wantMsg: "known_hosts"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := parseRemote(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := transportAuth(r, tc.auth, tc.insecure, 0)
			if tc.wantMsg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantMsg)
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error = %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret-phrase") {
					t.Errorf("error reveals the passphrase: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("transportAuth: %v", err)
			}
			var kind string
			switch a := got.(type) {
			case nil:
				kind = "none"
			case *githttp.BasicAuth:
				kind = "basic " + a.Username + ":" + a.Password
			case *sshAuth:
				kind = "ssh"
				cfg, _ := a.ClientConfig()
				if cfg.HostKeyCallback == nil || len(cfg.Auth) != 1 {
					t.Errorf("ssh config lacks a host key check or an auth method: %+v", cfg)
				}
			default:
				kind = fmt.Sprintf("%T", got)
			}
			if kind != tc.want {
				t.Errorf("auth = %s, want %s", kind, tc.want)
			}
		})
	}
}

func TestNewRefusesSSHWithoutKnownHosts(t *testing.T) {
	key, _ := gitserver.NewSSHKey(t, "")
	_, err := New(Options{URL: "ssh://git@127.0.0.1:1/repo.git", Auth: Auth{SSHPrivateKey: key}})
	if !errors.Is(err, errKnownHostsRequired) {
		t.Fatalf("New error = %v, want %v", err, errKnownHostsRequired)
	}
	if !strings.Contains(err.Error(), "ssh://git@127.0.0.1:1/repo.git") {
		t.Errorf("error %q does not name the URL", err)
	}
}
