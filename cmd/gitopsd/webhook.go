package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"

	"golang.org/x/time/rate"
)

// maxHookBody bounds a webhook request; GitHub caps payloads at 25 MB but
// a push event is a few KiB.
const maxHookBody = 1 << 20

// hooks receives GitHub and GitLab push events and triggers the syncs of
// the pushed repository. GitHub requests must carry an HMAC-SHA256 of the
// body (X-Hub-Signature-256), GitLab ones the token (X-Gitlab-Token), both
// made with the secret of --webhook-secret-file; anything else is 401 and
// triggers nothing.
type hooks struct {
	secret  []byte
	syncs   func() []syncView
	limiter *rate.Limiter
	logger  *slog.Logger
}

func newHooks(secretFile string, syncs func() []syncView, logger *slog.Logger) (*hooks, error) {
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	secret = []byte(strings.TrimSpace(string(secret)))
	if len(secret) == 0 {
		return nil, fmt.Errorf("--webhook-secret-file %s is empty", secretFile)
	}
	return &hooks{secret: secret, syncs: syncs, limiter: rate.NewLimiter(5, 20), logger: logger}, nil
}

func (h *hooks) register(mux *http.ServeMux) {
	mux.HandleFunc("POST /hooks/github", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, github) })
	mux.HandleFunc("POST /hooks/gitlab", func(w http.ResponseWriter, r *http.Request) { h.serve(w, r, gitlab) })
}

type provider struct {
	name string
	// verify checks the request's signature or token against the secret.
	verify func(secret, body []byte, r *http.Request) bool
	// push says whether the request is a push event.
	push func(r *http.Request) bool
	// urls lists the repository's URLs in a push payload.
	urls func(body []byte) ([]string, error)
}

var github = provider{
	name: "github",
	verify: func(secret, body []byte, r *http.Request) bool {
		sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
		got, err := hex.DecodeString(sig)
		if !ok || err != nil {
			return false
		}
		mac := hmac.New(sha256.New, secret)
		mac.Write(body)
		return hmac.Equal(got, mac.Sum(nil))
	},
	push: func(r *http.Request) bool { return r.Header.Get("X-GitHub-Event") == "push" },
	urls: func(body []byte) ([]string, error) {
		var p struct {
			Repository struct {
				CloneURL string `json:"clone_url"`
				SSHURL   string `json:"ssh_url"`
				GitURL   string `json:"git_url"`
				HTMLURL  string `json:"html_url"`
			} `json:"repository"`
		}
		err := json.Unmarshal(body, &p)
		return []string{p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.GitURL, p.Repository.HTMLURL}, err
	},
}

var gitlab = provider{
	name: "gitlab",
	verify: func(secret, _ []byte, r *http.Request) bool {
		return subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Gitlab-Token")), secret) == 1
	},
	push: func(r *http.Request) bool {
		e := r.Header.Get("X-Gitlab-Event")
		return e == "Push Hook" || e == "Tag Push Hook"
	},
	urls: func(body []byte) ([]string, error) {
		var p struct {
			Project struct {
				HTTPURL string `json:"git_http_url"`
				SSHURL  string `json:"git_ssh_url"`
				WebURL  string `json:"web_url"`
			} `json:"project"`
		}
		err := json.Unmarshal(body, &p)
		return []string{p.Project.HTTPURL, p.Project.SSHURL, p.Project.WebURL}, err
	},
}

func (h *hooks) serve(w http.ResponseWriter, r *http.Request, p provider) {
	if !h.limiter.Allow() {
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHookBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		http.Error(w, "payload too large", http.StatusRequestEntityTooLarge)
		return
	} else if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if !p.verify(h.secret, body, r) {
		h.logger.Warn("webhook refused", "provider", p.name, "remote", r.RemoteAddr, "reason", "bad signature or token")
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if !p.push(r) {
		w.WriteHeader(http.StatusNoContent) // ping and other events: accepted, nothing to do
		return
	}
	urls, err := p.urls(body)
	if err != nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	var triggered []string
	for _, s := range h.syncs() {
		if s.gitURL != "" && matchesRepo(s.gitURL, urls) {
			s.loop.Trigger()
			triggered = append(triggered, s.name)
		}
	}
	h.logger.Info("webhook", "provider", p.name, "triggered", strings.Join(triggered, ","))
	w.WriteHeader(http.StatusAccepted)
	_, _ = fmt.Fprintf(w, "triggered %d syncs\n", len(triggered))
}

// matchesRepo says whether a sync's git URL names one of the pushed
// repository's URLs: host and path compared, scheme, user, port and a
// trailing .git ignored.
func matchesRepo(gitURL string, urls []string) bool {
	want := repoKey(gitURL)
	for _, u := range urls {
		if u != "" && repoKey(u) == want {
			return true
		}
	}
	return false
}

func repoKey(raw string) string {
	raw = strings.TrimSpace(raw)
	// scp-like git@host:owner/repo
	if !strings.Contains(raw, "://") {
		if at := strings.Index(raw, "@"); at >= 0 {
			raw = raw[at+1:]
		}
		raw = "ssh://" + strings.Replace(raw, ":", "/", 1)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	path := strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git")
	return strings.ToLower(u.Hostname()) + "/" + path
}
