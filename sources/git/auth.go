package git

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// Auth holds the credentials for a remote. The CLI fills it from files or the
// environment (see AuthFromFiles), never from argv where ps would show it.
// String, GoString and LogValue redact every secret, so an Auth can be logged
// or printed with %v and %#v.
type Auth struct {
	// Username and Password are HTTP basic credentials. A token goes in
	// Password; when Username is empty "git" is sent, which GitHub, GitLab
	// and Bitbucket accept with a token.
	Username, Password string

	// SSHPrivateKey is a PEM (or OpenSSH format) private key for ssh URLs,
	// decrypted with SSHKeyPassphrase when it is encrypted.
	SSHPrivateKey    []byte
	SSHKeyPassphrase string

	// KnownHosts is an OpenSSH known_hosts file's content. An ssh URL
	// without it is refused unless Options.InsecureSkipHostKeyCheck is set:
	// an unverified host key lets anyone in the network path serve the
	// manifests the cluster will apply.
	KnownHosts []byte
}

// String describes which credentials are set, never their values.
func (a Auth) String() string {
	var set []string
	if a.Username != "" {
		set = append(set, "username")
	}
	if a.Password != "" {
		set = append(set, "password")
	}
	if len(a.SSHPrivateKey) > 0 {
		set = append(set, "ssh-private-key")
	}
	if a.SSHKeyPassphrase != "" {
		set = append(set, "ssh-key-passphrase")
	}
	if len(a.KnownHosts) > 0 {
		set = append(set, "known-hosts")
	}
	if len(set) == 0 {
		return "git.Auth{}"
	}
	return "git.Auth{" + strings.Join(set, ",") + " (redacted)}"
}

// GoString keeps %#v from printing the fields.
func (a Auth) GoString() string { return a.String() }

// LogValue reports which credentials are set, never their values.
func (a Auth) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Bool("username", a.Username != ""),
		slog.Bool("password", a.Password != ""),
		slog.Bool("sshPrivateKey", len(a.SSHPrivateKey) > 0),
		slog.Bool("sshKeyPassphrase", a.SSHKeyPassphrase != ""),
		slog.Bool("knownHosts", len(a.KnownHosts) > 0),
	)
}

// secrets lists the values that must never reach an error or a log line.
func (a Auth) secrets() []string {
	var s []string
	for _, v := range []string{a.Password, a.SSHKeyPassphrase} {
		if v != "" {
			s = append(s, v)
		}
	}
	return s
}

// maxAuthFile bounds what AuthFromFiles reads: a credential is small, and a
// mistaken mount of something large should fail, not fill memory.
const maxAuthFile = 1 << 20

// AuthFromFiles reads credentials from a directory laid out like a mounted
// Flux git Secret: files "username", "password", "identity" (an SSH private
// key) and "known_hosts". Missing files are left empty. As in Flux, when
// "identity" is present "password" is the key's passphrase rather than an
// HTTP password. One trailing newline is trimmed from username and password,
// since secrets made with echo carry one.
func AuthFromFiles(dir string) (Auth, error) {
	read := func(name string) ([]byte, error) {
		path := filepath.Join(dir, name)
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("auth file %s: %w", path, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxAuthFile+1))
		if err != nil {
			return nil, fmt.Errorf("auth file %s: %w", path, err)
		}
		if len(b) > maxAuthFile {
			return nil, fmt.Errorf("auth file %s: larger than %d bytes", path, maxAuthFile)
		}
		return b, nil
	}
	var a Auth
	var files [4][]byte
	for i, name := range []string{"username", "password", "identity", "known_hosts"} {
		b, err := read(name)
		if err != nil {
			return Auth{}, err
		}
		files[i] = b
	}
	trim := func(b []byte) string { return strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r") }
	a.Username = trim(files[0])
	a.SSHPrivateKey, a.KnownHosts = files[2], files[3]
	if len(a.SSHPrivateKey) > 0 {
		a.SSHKeyPassphrase = trim(files[1])
	} else {
		a.Password = trim(files[1])
	}
	return a, nil
}

// errKnownHostsRequired is returned by New for an ssh URL with neither
// known_hosts nor the explicit opt-out.
var errKnownHostsRequired = errors.New("ssh requires known_hosts; set Auth.KnownHosts (a known_hosts file in the auth directory) or --insecure-skip-host-key-check")

// transportAuth builds the go-git credentials for r. It parses keys and
// known_hosts up front so that a bad secret fails in New, before any
// connection. URL credentials are used only where Auth has none.
func transportAuth(r remote, a Auth, insecure bool, timeout time.Duration) (transport.AuthMethod, error) {
	switch r.scheme {
	case "http", "https":
		user, pass := a.Username, a.Password
		if user == "" && pass == "" {
			user, pass = r.user, r.password
		}
		if user == "" && pass == "" {
			return nil, nil
		}
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pass}, nil
	case "ssh":
		return newSSHAuth(r, a, insecure, timeout)
	}
	return nil, nil
}

func newSSHAuth(r remote, a Auth, insecure bool, timeout time.Duration) (*sshAuth, error) {
	s := &sshAuth{user: r.user, timeout: timeout}
	switch {
	case len(a.SSHPrivateKey) > 0:
		signer, err := parseSSHKey(a.SSHPrivateKey, a.SSHKeyPassphrase)
		if err != nil {
			return nil, err
		}
		s.methods = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	case a.Password != "" || r.password != "":
		pass := a.Password
		if pass == "" {
			pass = r.password
		}
		s.methods = []ssh.AuthMethod{ssh.Password(pass)}
	default:
		return nil, errors.New("ssh requires a private key (Auth.SSHPrivateKey, the identity file in the auth directory)")
	}
	switch {
	case len(a.KnownHosts) > 0:
		cb, algos, err := knownHostsCallback(a.KnownHosts, r.hostPort)
		if err != nil {
			return nil, err
		}
		s.hostKey, s.algos = cb, algos
	case insecure:
		s.hostKey = ssh.InsecureIgnoreHostKey()
	default:
		return nil, errKnownHostsRequired
	}
	return s, nil
}

func parseSSHKey(pem []byte, passphrase string) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == "" {
			return nil, errors.New("ssh private key is encrypted and no passphrase is set")
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(passphrase))
	}
	if err != nil {
		return nil, fmt.Errorf("ssh private key: %w", err)
	}
	return signer, nil
}

// knownHostsCallback verifies host keys against content. go-git's helper
// reads files only, so content goes through a temp file removed at once. The
// host key algorithms are narrowed to those known for hostPort, or a server
// offering another key type would fail with a mismatch.
func knownHostsCallback(content []byte, hostPort string) (ssh.HostKeyCallback, []string, error) {
	f, err := os.CreateTemp("", "gitopsd-known-hosts-*")
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := io.Copy(f, bytes.NewReader(content))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", werr)
	}
	db, err := gitssh.NewKnownHostsDb(f.Name())
	if err != nil {
		return nil, nil, fmt.Errorf("known_hosts: %w", err)
	}
	return db.HostKeyCallback(), db.HostKeyAlgorithms(hostPort), nil
}

// sshAuth is go-git's ssh.AuthMethod with a dial timeout: go-git dials with
// context.Background, so ClientConfig.Timeout is what bounds the TCP connect.
type sshAuth struct {
	user    string
	methods []ssh.AuthMethod
	hostKey ssh.HostKeyCallback
	algos   []string
	timeout time.Duration
}

func (a *sshAuth) Name() string   { return "ssh" }
func (a *sshAuth) String() string { return "ssh user " + a.user }

func (a *sshAuth) ClientConfig() (*ssh.ClientConfig, error) {
	return &ssh.ClientConfig{
		User:              a.user,
		Auth:              a.methods,
		HostKeyCallback:   a.hostKey,
		HostKeyAlgorithms: a.algos,
		Timeout:           a.timeout,
	}, nil
}
