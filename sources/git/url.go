package git

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// remote is a parsed Options.URL with its credentials split off, so that the
// URL handed to go-git, written to the cache's git config and printed in
// errors never carries a secret.
type remote struct {
	url      string // credential-free URL handed to go-git and printed
	scheme   string // http, https, ssh, git or file
	user     string // ssh login, or HTTP basic username taken from the URL
	password string // HTTP basic password (or token) taken from the URL
	hostPort string // host:port, for known_hosts lookups (ssh only)
}

// scpLike matches git's "[user@]host:path" form. Like git, a "/" before the
// first ":" makes it a local path instead (checked in parseRemote).
var scpLike = regexp.MustCompile(`^(?:([^@]+)@)?([^:/\s]+):(.+)$`)

// parseRemote splits raw into a credential-free URL and its credentials.
// Errors never quote raw, which may hold a password.
func parseRemote(raw string) (remote, error) {
	switch {
	case raw == "":
		return remote{}, errors.New("git URL is empty")
	case strings.Contains(raw, "://"):
		return parseSchemeURL(raw)
	case isSCPLike(raw):
		return parseSCP(raw), nil
	default:
		abs, err := filepath.Abs(raw)
		if err != nil {
			return remote{}, fmt.Errorf("local repository path: %w", err)
		}
		return remote{url: abs, scheme: "file"}, nil
	}
}

func isSCPLike(raw string) bool {
	before, _, _ := strings.Cut(raw, ":")
	return scpLike.MatchString(raw) && !strings.Contains(before, "/")
}

func parseSCP(raw string) remote {
	m := scpLike.FindStringSubmatch(raw)
	user, password, _ := strings.Cut(m[1], ":")
	r := remote{scheme: "ssh", user: user, password: password, hostPort: net.JoinHostPort(m[2], "22")}
	if r.user == "" {
		r.user = "git"
	}
	r.url = r.user + "@" + m[2] + ":" + m[3]
	return r
}

func parseSchemeURL(raw string) (remote, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL; keep only the reason.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return remote{}, fmt.Errorf("parse git URL: %w", err)
	}
	r := remote{scheme: u.Scheme}
	if u.User != nil {
		r.user = u.User.Username()
		r.password, _ = u.User.Password()
	}
	switch u.Scheme {
	case "http", "https", "git", "file":
		u.User = nil
	case "ssh":
		if r.user == "" {
			r.user = "git"
		}
		u.User = url.User(r.user)
		port := u.Port()
		if port == "" {
			port = "22"
		}
		if _, err := strconv.Atoi(port); err != nil {
			return remote{}, fmt.Errorf("parse git URL: invalid port %q", port)
		}
		r.hostPort = net.JoinHostPort(u.Hostname(), port)
	default:
		return remote{}, fmt.Errorf("git URL scheme %q is not supported (use https, http, ssh, git, file or a local path)", u.Scheme)
	}
	if u.Host == "" && u.Scheme != "file" {
		return remote{}, fmt.Errorf("git URL %s has no host", u.Redacted())
	}
	r.url = u.String()
	return r, nil
}

// secrets lists the strings that must never appear in an error or log line:
// the URL's password and, for http(s), its username with it (see
// basicSecrets), or alone (a token used as username, as GitHub and GitLab
// accept).
func (r remote) secrets() []string {
	switch {
	case r.scheme == "http" || r.scheme == "https":
		return basicSecrets(r.user, r.password)
	case r.password != "":
		return []string{r.password}
	}
	return nil
}

// basicSecrets lists the spellings of HTTP basic credentials to scrub: the
// password, the "user:password" pair a server echoes decoded (and whose
// base64 is the Authorization header), and the username unless it is the
// conventional "git" or too short to tell from other words.
func basicSecrets(user, password string) []string {
	var s []string
	if password != "" {
		s = append(s, password, user+":"+password)
	}
	if (password == "" || len(user) >= 3) && user != "git" && user != "" {
		s = append(s, user)
	}
	return s
}
