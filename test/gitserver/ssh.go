package gitserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSH is an in-process SSH server that runs the real git-upload-pack and
// git-receive-pack for the repositories under Root, for the one client key
// it was made with. A repository path that leaves Root, by ".." or through a
// symlink, is refused. Its methods may be called concurrently.
type SSH struct {
	// Addr is the host:port the server listens on, on the loopback.
	Addr string
	// HostKey is the server's host key, generated for this server alone.
	HostKey ssh.PublicKey
	// Root is the directory whose repositories are served.
	Root string

	realRoot string // Root with symlinks resolved, for the confinement check
	gitBin   string
	gitEnv   []string
	cfg      *ssh.ServerConfig
	ctx      context.Context // cancelled when the test ends: stops running git

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// NewSSH serves the repositories under root over SSH to clients holding the
// private half of clientKey, until the test ends.
func NewSSH(t testing.TB, root string, clientKey ssh.PublicKey) *SSH {
	t.Helper()
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatalf("gitserver: root: %v", err)
	}
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
	ctx, cancel := context.WithCancel(context.Background())
	s := &SSH{
		Addr: ln.Addr().String(), HostKey: hostSigner.PublicKey(), Root: root,
		realRoot: realRoot, gitBin: gitBinary(t), cfg: cfg, ctx: ctx,
		gitEnv: append(os.Environ(), "HOME="+t.TempDir(), "GIT_CONFIG_NOSYSTEM=1"),
		conns:  map[net.Conn]struct{}{},
	}
	t.Cleanup(func() {
		cancel()
		ln.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Go(func() { s.accept(ln) })
	return s
}

// KnownHostsLine is the known_hosts line that trusts this server's host key
// at Addr.
func (s *SSH) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// RepoURL is the ssh:// URL of the repository at Root/name.
func (s *SSH) RepoURL(name string) string {
	return "ssh://git@" + s.Addr + filepath.ToSlash(filepath.Join(s.Root, name))
}

// NewSSHKey returns a new ed25519 private key in OpenSSH PEM form, encrypted
// when passphrase is set, and its public key: a client key for NewSSH, or a
// host key that is not the server's.
func NewSSHKey(t testing.TB, passphrase string) ([]byte, ssh.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block), sshPub
}

func (s *SSH) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			s.serveConn(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
		})
	}
}

func (s *SSH) serveConn(conn net.Conn) {
	defer conn.Close()
	sconn, chans, reqs, err := ssh.NewServerConn(conn, s.cfg)
	if err != nil {
		return
	}
	defer sconn.Close()
	go ssh.DiscardRequests(reqs)
	var sessions sync.WaitGroup
	defer sessions.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		sessions.Go(func() { s.serveSession(ch, chReqs) })
	}
}

// serveSession runs one "git-upload-pack '<path>'" or
// "git-receive-pack '<path>'" exec request and reports its exit status.
func (s *SSH) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			req.Reply(req.Type == "env", nil) // env is accepted and ignored
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			return
		}
		service, arg, _ := strings.Cut(payload.Command, " ")
		dir, err := s.repoPath(arg)
		if (service != "git-upload-pack" && service != "git-receive-pack") || err != nil {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		go ssh.DiscardRequests(reqs)
		status := s.run(ch, strings.TrimPrefix(service, "git-"), dir)
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

// repoPath resolves the repository argument of an exec request, quoted as
// git quotes it ('path'), to a directory under the root. A relative path is
// taken from the root, as from a login's home directory.
func (s *SSH) repoPath(arg string) (string, error) {
	p, ok := strings.CutPrefix(arg, "'")
	if ok {
		p, ok = strings.CutSuffix(p, "'")
	}
	if !ok || strings.Contains(p, "'") {
		return "", fmt.Errorf("repository %s: want one single-quoted path", arg)
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.Root, p)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", p, err)
	}
	if rel, err := filepath.Rel(s.realRoot, real); err != nil || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("repository %s: outside %s", p, s.Root)
	}
	return real, nil
}

// run runs git <service> <dir> on the channel and returns its exit status.
func (s *SSH) run(ch ssh.Channel, service, dir string) uint32 {
	cmd := exec.CommandContext(s.ctx, s.gitBin, service, dir)
	cmd.Env = s.gitEnv
	// Not cmd.Stdin = ch: Wait would then wait for the client to close its
	// side, which a fetching client does only after reading the output.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	var exit *exec.ExitError
	switch err := cmd.Run(); {
	case err == nil:
		return 0
	case errors.As(err, &exit) && exit.ExitCode() > 0:
		return uint32(exit.ExitCode())
	default:
		return 1
	}
}
