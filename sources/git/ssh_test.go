package git

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshServer is an in-process SSH server that runs the real git upload-pack
// for repositories under root, for clients holding clientKey.
type sshServer struct {
	addr    string
	hostKey ssh.PublicKey
}

func newSSHServer(t *testing.T, root string, clientKey ssh.PublicKey) *sshServer {
	t.Helper()
	gitBin := requireGit(t)
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(k.Marshal(), clientKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown client key")
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveSSH(conn, cfg, gitBin, root) })
		}
	})
	return &sshServer{addr: ln.Addr().String(), hostKey: hostSigner.PublicKey()}
}

func serveSSH(conn net.Conn, cfg *ssh.ServerConfig, gitBin, root string) {
	defer conn.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		serveSession(ch, chReqs, gitBin, root)
	}
}

// serveSession runs "git-upload-pack '<path>'" for one exec request.
func serveSession(ch ssh.Channel, reqs <-chan *ssh.Request, gitBin, root string) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(req.Type == "env", nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			return
		}
		name, arg, _ := strings.Cut(payload.Command, " ")
		path := strings.Trim(arg, "'")
		if name != "git-upload-pack" || !strings.HasPrefix(path, root) {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		cmd := exec.Command(gitBin, "upload-pack", path)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return
		}
		go func() {
			io.Copy(stdin, ch)
			stdin.Close()
		}()
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
		}
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

func TestFetchOverSSH(t *testing.T) {
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	h := up.commitFile("app.yaml", "over ssh\n")
	clientKey, clientPub := newSSHKey(t, "")
	otherKey, _ := newSSHKey(t, "")
	srv := newSSHServer(t, root, clientPub)
	_, wrongHostKey := newSSHKey(t, "")
	url := "ssh://git@" + srv.addr + up.dir

	tests := map[string]struct {
		auth     Auth
		insecure bool
		wantErr  string
	}{
		"known host": {
			auth: Auth{SSHPrivateKey: clientKey, KnownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey))},
		},
		"insecure opt-in without known_hosts": {
			auth: Auth{SSHPrivateKey: clientKey}, insecure: true,
		},
		"host key changed": {
			auth:    Auth{SSHPrivateKey: clientKey, KnownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, wrongHostKey))},
			wantErr: "knownhosts: key mismatch",
		},
		"host unknown": {
			auth:    Auth{SSHPrivateKey: clientKey, KnownHosts: []byte(knownhosts.Line([]string{"elsewhere.example.com"}, srv.hostKey))},
			wantErr: "knownhosts: key is unknown",
		},
		"client key not authorized": {
			auth:    Auth{SSHPrivateKey: otherKey, KnownHosts: []byte(knownhosts.Line([]string{knownhosts.Normalize(srv.addr)}, srv.hostKey))},
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
