package git

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/test/gitserver"
)

// Credentials of the fault tests: distinctive, and with characters that
// URL-escaping changes, so every spelling can be looked for.
const (
	faultUser     = "deploy-bot-7f3a"
	faultPassword = "s3cr3t/p4ss+XyZ=q"
)

// credentialSpellings are the ways faultUser and faultPassword could show
// up in an error, listed independently of the redactor under test.
func credentialSpellings() []string {
	pair := faultUser + ":" + faultPassword
	var out []string
	for _, v := range []string{pair, faultPassword, faultUser} {
		out = append(out, v, url.QueryEscape(v), url.PathEscape(v),
			base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v)),
			base64.URLEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)))
	}
	return out
}

// fault is how a misbehaving git server answers the requests whose path
// ends with path; good proxies to a real git http-backend.
type fault struct {
	path  string
	serve func(w http.ResponseWriter, r *http.Request, good http.Handler)
}

// faultServer serves a repository over HTTP, through a fault while one is
// set. Handlers that stall wait for the client to go or the test to end.
type faultServer struct {
	*httptest.Server
	up      *testRepo
	fault   atomic.Pointer[fault]
	release chan struct{}
}

func newFaultServer(t *testing.T) *faultServer {
	t.Helper()
	root := t.TempDir()
	up := newTestRepo(t, root, "repo.git", "main")
	up.commitFile("app.yaml", "v: 1\n")
	backend := gitserver.NewHTTP(t, root)
	target, _ := url.Parse(backend.URL)
	good := httputil.NewSingleHostReverseProxy(target)
	s := &faultServer{up: up, release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := s.fault.Load(); f != nil && strings.HasSuffix(r.URL.Path, f.path) {
			f.serve(w, r, good)
			return
		}
		good.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	t.Cleanup(func() { close(s.release) }) // runs first: unblocks stalled handlers
	return s
}

// stall waits until the client goes away or the test ends.
func (s *faultServer) stall(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-s.release:
	}
}

func pktLine(s string) string { return fmt.Sprintf("%04x%s", 4+len(s), s) }

// goodResponse is what the real server answers to r.
func goodResponse(good http.Handler, r *http.Request) (http.Header, []byte) {
	rec := httptest.NewRecorder()
	good.ServeHTTP(rec, r)
	return rec.Header(), rec.Body.Bytes()
}

// packPkt is the offset and length of the pkt-line payload that starts
// the pack in an upload-pack response (side-band: "\x01PACK...").
func packPkt(b []byte) (int, int) {
	for i := 0; i+4 <= len(b); {
		n, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
		if err != nil {
			return -1, 0
		}
		if n >= 4 && bytes.HasPrefix(b[i+4:], []byte("\x01PACK")) {
			return i + 4, int(n) - 4
		}
		i += max(int(n), 4)
	}
	return -1, 0
}

// writeForever writes chunk until the client goes away.
func writeForever(w http.ResponseWriter, r *http.Request, chunk []byte) {
	for r.Context().Err() == nil {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

func echoHeaders(w io.Writer, r *http.Request) {
	user, pass, _ := r.BasicAuth()
	for name, vs := range r.Header {
		for _, v := range vs {
			fmt.Fprintf(w, "%s: %s\n", name, v)
		}
	}
	fmt.Fprintf(w, "you sent %s:%s\nAuthorization: Bearer %s\n{\"token\": %q, \"user\": %q}\n%s\n",
		user, pass, pass, pass, user, url.QueryEscape(pass))
}

func faultCases(s *faultServer) map[string]fault {
	const advert = "application/x-git-upload-pack-advertisement"
	return map[string]fault{
		"endless 500 body": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.WriteHeader(http.StatusInternalServerError)
			writeForever(w, r, bytes.Repeat([]byte("<p>Internal error, retry later</p>\n"), 1000))
		}},
		"200 with HTML": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<!DOCTYPE html><html><body><form>Sign in</form>")
			echoHeaders(w, r)
			io.WriteString(w, strings.Repeat("<div>padding</div>\n", 50_000))
		}},
		"401 echoing request headers": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			echoHeaders(w, r)
		}},
		"403 echoing request headers, endless": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.WriteHeader(http.StatusForbidden)
			var b bytes.Buffer
			echoHeaders(&b, r)
			writeForever(w, r, b.Bytes())
		}},
		"200 pkt-lines echoing credentials": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("Content-Type", advert)
			var b bytes.Buffer
			echoHeaders(&b, r)
			io.WriteString(w, pktLine("# service=git-upload-pack\n")+"0000"+pktLine(strings.ReplaceAll(b.String(), "\n", " ")))
		}},
		"huge ref advertisement": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("Content-Type", advert)
			io.WriteString(w, pktLine("# service=git-upload-pack\n")+"0000")
			io.WriteString(w, pktLine(strings.Repeat("a", 40)+" HEAD\x00side-band-64k ofs-delta\n"))
			line := []byte(pktLine(strings.Repeat("b", 40) + " refs/tags/t000000000000\n"))
			chunk := bytes.Repeat(line, 1000)
			for i := 0; r.Context().Err() == nil; i++ { // distinct names, without garbage of the server's own
				for j := range 1000 {
					strconv.AppendInt(chunk[j*len(line)+len(line)-13:j*len(line)+len(line)-13], int64(1e11+i*1000+j), 10)
				}
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}},
		"TCP accepted, nothing sent": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			s.stall(r)
		}},
		"headers then stalled body": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("Content-Type", advert)
			io.WriteString(w, pktLine("# service=git-upload-pack\n"))
			w.(http.Flusher).Flush()
			s.stall(r)
		}},
		"trickling body": {"/info/refs", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.Header().Set("Content-Type", advert)
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			body := pktLine("# service=git-upload-pack\n") + "0000" + pktLine(strings.Repeat("a", 40)+" HEAD\x00side-band-64k\n")
			for i := 0; ; i++ {
				if _, err := io.WriteString(w, body[i%len(body):i%len(body)+1]); err != nil {
					return
				}
				w.(http.Flusher).Flush()
				select {
				case <-tick.C:
				case <-r.Context().Done():
					return
				case <-s.release:
					return
				}
			}
		}},
		"truncated pack": {"/git-upload-pack", func(w http.ResponseWriter, r *http.Request, good http.Handler) {
			h, b := goodResponse(good, r)
			off, n := packPkt(b)
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			w.Write(b[:off+n/2])
		}},
		"garbage pack": {"/git-upload-pack", func(w http.ResponseWriter, r *http.Request, good http.Handler) {
			h, b := goodResponse(good, r)
			off, n := packPkt(b)
			rng := rand.New(rand.NewPCG(1, 2))
			for i := off + 13; i < off+n; i++ { // after band, "PACK", version, count
				b[i] = byte(rng.Uint32())
			}
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			w.Write(b)
		}},
		"endless 500 on the pack": {"/git-upload-pack", func(w http.ResponseWriter, r *http.Request, _ http.Handler) {
			w.WriteHeader(http.StatusInternalServerError)
			writeForever(w, r, bytes.Repeat([]byte("error "), 10_000))
		}},
		"pack stalled halfway": {"/git-upload-pack", func(w http.ResponseWriter, r *http.Request, good http.Handler) {
			h, b := goodResponse(good, r)
			off, n := packPkt(b)
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			w.Write(b[:off+n/2])
			w.(http.Flusher).Flush()
			s.stall(r)
		}},
	}
}

// TestFetchSurvivesMisbehavingServers serves each class of broken or
// hostile git server and checks that Fetch fails in time, with a short
// error free of credentials, having allocated a bounded amount, and that
// the same Source fetches normally once the server behaves.
func TestFetchSurvivesMisbehavingServers(t *testing.T) {
	const timeout = 2 * time.Second
	const slack = 2 * time.Second
	const maxAlloc = 50 << 20
	srv := newFaultServer(t)
	for name, f := range faultCases(srv) {
		t.Run(name, func(t *testing.T) {
			src, err := New(Options{URL: srv.URL + "/repo.git", CacheDir: t.TempDir(), Timeout: timeout,
				Auth: Auth{Username: faultUser, Password: faultPassword}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := src.Fetch(t.Context()); err != nil { // a cache to keep
				t.Fatalf("first Fetch: %v", err)
			}
			srv.up.commitFile("app.yaml", "v: "+name+"\n")
			srv.fault.Store(&f)
			start := time.Now()
			err, allocs := fetchAllocs(t, src)
			elapsed := time.Since(start)
			srv.fault.Store(nil)
			t.Logf("error after %v, %d KiB allocated: %v", elapsed.Round(time.Millisecond), allocs>>10, err)

			if err == nil {
				t.Fatal("Fetch succeeded")
			}
			if elapsed > timeout+slack {
				t.Errorf("Fetch took %v to fail, want under %v", elapsed, timeout+slack)
			}
			if msg := err.Error(); len(msg) > 2<<10 {
				t.Errorf("error is %d bytes long, want at most 2 KiB", len(msg))
			}
			for _, secret := range credentialSpellings() {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error reveals %q: %s", secret, err)
				}
			}
			if !strings.Contains(err.Error(), srv.URL+"/repo.git") {
				t.Errorf("error %q does not name the URL", err)
			}
			limit := uint64(maxAlloc)
			if name == "huge ref advertisement" { // go-git decodes it whole: up to MaxRefsSize, garbage included
				limit = 12 * DefaultMaxRefsSize
			}
			if allocs > limit {
				t.Errorf("Fetch allocated %d MiB, want under %d MiB", allocs>>20, limit>>20)
			}
			if left := packLeftovers(t, src); len(left) > 0 {
				t.Errorf("partial packs left in the cache: %v", left)
			}
			h := srv.up.commitFile("app.yaml", "v: good after "+name+"\n")
			snap, err := src.Fetch(t.Context())
			if err != nil {
				t.Fatalf("Fetch once the server behaves: %v", err)
			}
			if want := revision("main", h); snap.Revision != want {
				t.Errorf("revision %q, want %q", snap.Revision, want)
			}
		})
	}
}

// packLeftovers lists what cleanPackTemps would remove from src's cache.
func packLeftovers(t *testing.T, src *Source) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(src.repoDir(), "objects", "pack"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	var left []string
	for _, e := range entries {
		n := e.Name()
		base := strings.TrimSuffix(n, filepath.Ext(n))
		switch {
		case strings.HasPrefix(n, "tmp_"),
			strings.HasSuffix(n, ".idx") && !have[base+".pack"],
			strings.HasSuffix(n, ".pack") && !have[base+".idx"]:
			left = append(left, n)
		}
	}
	return left
}

func TestErrorExcerpt(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"html":                  {"<html><body>\n<h1>Service  Unavailable</h1>\r\n</body></html>", "Service Unavailable"},
		"control and non-ASCII": {"bad\x00\x1b[31mthing\u00e9\n", "bad [31mthing"},
		"authorization header":  {"Authorization: Basic ZGVwbG95OnB3", "Authorization: <redacted>"},
		"bearer":                {"got bearer abcdef123456 from you", "got bearer <redacted> from you"},
		"json token":            {`{"access_token": "xyz"}`, `{"access_token=<redacted>"}`},
		"base64 run":            {"id QWxhZGRpbjpvcGVuIHNlc2FtZQ== end", "id <redacted> end"},
		"words kept":            {"repository-not-found-for-this-account", "repository-not-found-for-this-account"},
		"long":                  {strings.Repeat("ab ", 200), strings.Repeat("ab ", 66) + "ab... (truncated)"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := errorExcerpt([]byte(tc.in), newRedactor()); got != tc.want {
				t.Errorf("errorExcerpt(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestRedactorScrubsEverySpelling(t *testing.T) {
	r := newRedactor(basicSecrets(faultUser, faultPassword)...)
	for _, secret := range credentialSpellings() {
		got := r.scrub("before " + secret + " after")
		if got != "before "+redacted+" after" {
			t.Errorf("scrub(%q) = %q", secret, got)
		}
	}
	if got := r.scrub(strings.Repeat("x", 5000)); len(got) > maxErrorText+20 {
		t.Errorf("scrub kept %d bytes", len(got))
	}
}
