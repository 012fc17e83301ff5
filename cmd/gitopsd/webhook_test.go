package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/reconciler"
)

func TestRepoKey(t *testing.T) {
	same := []string{"https://github.com/Acme/stack.git", "https://github.com/Acme/stack", "git@github.com:Acme/stack.git",
		"ssh://git@github.com:22/Acme/stack.git", "git://github.com/Acme/stack.git", "https://token@GitHub.com/Acme/stack/"}
	for _, u := range same {
		if !matchesRepo("https://github.com/Acme/stack.git", []string{u}) {
			t.Errorf("%s does not match", u)
		}
	}
	for _, u := range []string{"https://github.com/Acme/stack2.git", "https://gitlab.com/Acme/stack.git", "https://github.com/Other/stack"} {
		if matchesRepo("https://github.com/Acme/stack.git", []string{u}) {
			t.Errorf("%s matches", u)
		}
	}
}

func TestHooks(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loop := reconciler.NewLoop(nil, reconciler.LoopOptions{})
	views := func() []syncView {
		return []syncView{{name: "stack", gitURL: "https://github.com/acme/stack.git", loop: loop}}
	}
	h, err := newHooks(secretFile, views, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.register(mux)
	sign := func(body string) string {
		mac := hmac.New(sha256.New, []byte("s3cret"))
		mac.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(mac.Sum(nil))
	}
	githubPush := `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/acme/stack.git"}}`
	gitlabPush := `{"project":{"git_http_url":"https://github.com/acme/stack.git"}}`
	tests := map[string]struct {
		path, body string
		headers    map[string]string
		code       int
		triggers   bool
	}{
		"github signed push":   {"/hooks/github", githubPush, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(githubPush)}, http.StatusAccepted, true},
		"github bad sig":       {"/hooks/github", githubPush, map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("other")}, http.StatusUnauthorized, false},
		"github unsigned":      {"/hooks/github", githubPush, map[string]string{"X-GitHub-Event": "push"}, http.StatusUnauthorized, false},
		"github ping":          {"/hooks/github", `{}`, map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(`{}`)}, http.StatusNoContent, false},
		"gitlab token":         {"/hooks/gitlab", gitlabPush, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "s3cret"}, http.StatusAccepted, true},
		"gitlab wrong token":   {"/hooks/gitlab", gitlabPush, map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}, http.StatusUnauthorized, false},
		"another repository":   {"/hooks/github", strings.Replace(githubPush, "stack.git", "other.git", 1), map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(strings.Replace(githubPush, "stack.git", "other.git", 1))}, http.StatusAccepted, false},
		"too large":            {"/hooks/github", strings.Repeat("x", maxHookBody+1), map[string]string{"X-GitHub-Event": "push"}, http.StatusRequestEntityTooLarge, false},
		"GET is not a webhook": {"/hooks/github", "", nil, http.StatusMethodNotAllowed, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			method := http.MethodPost
			if tc.body == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, tc.path, strings.NewReader(tc.body))
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			if rec.Code != tc.code {
				t.Errorf("code %d, want %d (%s)", rec.Code, tc.code, rec.Body)
			}
			if got := loop.Triggered(); got != tc.triggers {
				t.Errorf("triggered %v, want %v", got, tc.triggers)
			}
		})
	}
}
