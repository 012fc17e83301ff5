package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitopsd/gitopsd/reconciler"
)

// The fault-injection cases of issue 16: the daemon on the local cluster
// while a component fails under it. Each case asserts the outcome (the
// cluster equal to git), a recovery time, and what the daemon said.

// apiOutage is how long kube-apiserver stays down in these cases.
const apiOutage = 10 * time.Second

// TestFaultAPIServerKilledMidApply kills kube-apiserver while the daemon
// applies 1,000 ConfigMaps for the first time, and starts it again 10 s
// later: the sync converges within 10 s of the API server being ready
// (not at the next interval, a minute later), and the outage is one
// failure record, one "unreachable" and one "reachable" record.
func TestFaultAPIServerKilledMidApply(t *testing.T) {
	const ns = "fault-api-e2e"
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 1000)
	d := startDaemon(t, "--git-url", srv.URL+"/stack.git", "--git-ref", "main", "--path", "overlays/many", "--interval", "1m")

	// Mid-apply: the first ConfigMaps are there, not all of them.
	eventually(t, 90*time.Second, "the apply to begin", func(ctx context.Context) error {
		if n := countConfigMaps(ctx, t, ns); n == 0 || n >= 1000 {
			return fmt.Errorf("%d of 1,000 ConfigMaps", n)
		}
		return nil
	})
	killed := time.Now()
	if err := env.cluster.Kill("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	restartAfter(t, killed, apiOutage)
	ready := time.Now()

	rec := d.waitFor(t, 30*time.Second, "sync complete after the outage", syncComplete(sha))
	took := recordTime(t, rec).Sub(ready)
	t.Logf("converged %s after kube-apiserver was ready again (outage %s)", took.Round(time.Millisecond), ready.Sub(killed).Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("converged %s after the API server was ready, want within 10s", took.Round(time.Millisecond))
	}
	if n := countConfigMaps(context.Background(), t, ns); n != 1000 {
		t.Errorf("%d ConfigMaps after the sync, want 1,000", n)
	}
	checkOutageRecords(t, d)
}

// TestFaultAPIServerDownAtStart starts the daemon while kube-apiserver is
// down: it says so once, and converges (1,000 ConfigMaps) within 10 s of
// the API server coming up.
func TestFaultAPIServerDownAtStart(t *testing.T) {
	const ns = "fault-api-start-e2e"
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 1000)
	if err := env.cluster.Kill("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--git-url", srv.URL+"/stack.git", "--git-ref", "main", "--path", "overlays/many", "--interval", "1m")
	d.waitFor(t, 60*time.Second, "the outage record", func(r logRecord) bool { return r.str("msg") == "API server unreachable" })
	restartAfter(t, time.Now(), apiOutage)
	ready := time.Now()

	rec := d.waitFor(t, 30*time.Second, "sync complete after the outage", syncComplete(sha))
	took := recordTime(t, rec).Sub(ready)
	t.Logf("converged %s after kube-apiserver came up", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("converged %s after the API server came up, want within 10s", took.Round(time.Millisecond))
	}
	if n := countConfigMaps(context.Background(), t, ns); n != 1000 {
		t.Errorf("%d ConfigMaps after the sync, want 1,000", n)
	}
	checkOutageRecords(t, d)
}

// cloneRepo is a work clone of <server>/stack.git to commit to.
func cloneRepo(t *testing.T, srv *gitServer) *workRepo {
	t.Helper()
	repo := &workRepo{t: t, dir: t.TempDir()}
	repo.git(repo.dir, "clone", "--quiet", filepath.Join(srv.Root, "stack.git"), ".")
	return repo
}

// configMapsRepo makes <server>/stack.git whose overlays/many holds
// Namespace ns and n ConfigMaps in it, and returns its commit.
func configMapsRepo(t *testing.T, srv *gitServer, ns string, n int) string {
	t.Helper()
	repo := seedRepo(t, srv, ns)
	dir := repo.path("overlays/many")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "namespace.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n")
	writeFile(t, filepath.Join(dir, "kustomization.yaml"), "resources:\n- namespace.yaml\n")
	writeManyConfigMaps(t, dir, ns, n, 1)
	return repo.commit(fmt.Sprintf("%d ConfigMaps", n))
}

// restartAfter starts kube-apiserver again once outage has passed since
// killed, and waits until it is ready.
func restartAfter(t *testing.T, killed time.Time, outage time.Duration) {
	t.Helper()
	time.Sleep(time.Until(killed.Add(outage))) // the outage itself, not a wait for a condition
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := env.cluster.Restart(ctx, "kube-apiserver"); err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
}

// checkOutageRecords asserts that an outage of the API server was one
// "API server unreachable" record, one "API server reachable" record with
// its duration, one `sync failed` at ERROR, and no other ERROR or WARN
// record in between (client-go's retries and pending Events included).
func checkOutageRecords(t *testing.T, d *daemon) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var down, up, failed int
	var noise []string
	in := false
	for _, r := range d.records {
		level := r.str("level")
		switch msg := r.str("msg"); {
		case msg == "API server unreachable":
			down++
			in = true
		case msg == "API server reachable":
			up++
			in = false
			if r.str("after") == "" {
				t.Errorf("reachable record without its duration: %v", r)
			}
		case msg == "sync failed" && level == "ERROR":
			failed++
			if r.str("cause") != "api-unreachable" {
				t.Errorf("sync failed during the outage with cause %q, want api-unreachable: %v", r.str("cause"), r)
			}
		case in && (level == "ERROR" || level == "WARN"):
			noise = append(noise, msg+" "+r.str("error")+r.str("err"))
		}
	}
	if down != 1 || up != 1 {
		t.Errorf("%d unreachable and %d reachable records, want 1 each", down, up)
	}
	if failed > 1 {
		t.Errorf("%d sync failed records at ERROR for one outage, want at most 1", failed)
	}
	if len(noise) > 0 {
		t.Errorf("%d ERROR/WARN records during the outage, want none:\n%s", len(noise), strings.Join(noise, "\n"))
	}
}

// countConfigMaps counts the generated ConfigMaps (many-N) in ns.
func countConfigMaps(ctx context.Context, t *testing.T, ns string) int {
	t.Helper()
	list, err := env.cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "many-") {
			n++
		}
	}
	return n
}

// TestFaultGitHangs puts a proxy in front of the git server that, once
// switched, accepts connections and sends nothing, and stalls those it
// has: an out-of-band scale during the outage is healed within 5 s from
// the last good revision (the fetch still hanging), the fetch fails at
// stage fetch within --git-timeout, and a commit pushed after the server
// is back is applied.
func TestFaultGitHangs(t *testing.T) {
	const ns = "fault-git-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	first := repo.git(repo.dir, "rev-parse", "HEAD")
	proxy := newHangProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	const interval, gitTimeout = 3 * time.Second, 10 * time.Second
	d := startDaemon(t, "--git-url", "http://"+proxy.addr+"/stack.git", "--git-ref", "main", "--path", "overlays/dev",
		"--interval", interval.String(), "--git-timeout", gitTimeout.String())
	d.waitFor(t, 90*time.Second, "first sync complete", syncComplete(first))
	waitStatefulSetReady(t, ns, 2)

	proxy.hang(true)
	// The next interval's fetch sends a request and waits until the git
	// timeout.
	eventually(t, 2*interval, "a fetch to hang", func(context.Context) error {
		if proxy.stalled.Load() == 0 {
			return errors.New("no connection stalled yet")
		}
		return nil
	})
	hung := time.Now()
	sts := "StatefulSet/" + ns + "/mysql"
	scaled := time.Now()
	scale(t, ns, 3)
	d.waitFor(t, alertWithin, "object-drift detected", driftRecord(reconciler.MsgDriftDetected, "object-drift", sts))
	rec := d.waitFor(t, 5*time.Second, "last good revision applied while the fetch hangs", func(r logRecord) bool {
		return r.str("msg") == reconciler.MsgLastGoodApplied && r.str("reason") == "fetch running"
	})
	eventually(t, 5*time.Second, "replicas back to git's 2", func(context.Context) error {
		if got := replicasOf(t, ns); got != 2 {
			return fmt.Errorf("replicas %d", got)
		}
		return nil
	})
	t.Logf("healed %s after the scale, with git hanging", time.Since(scaled).Round(time.Millisecond))
	if at := recordTime(t, rec); at.Sub(scaled) > 5*time.Second {
		t.Errorf("healed %s after the scale, want within 5s", at.Sub(scaled).Round(time.Millisecond))
	}

	rec = d.waitFor(t, gitTimeout+5*time.Second, "sync failed at fetch", syncFailed(reconciler.StageFetch, ""))
	t.Logf("hung fetch failed %s after it hung: %s", recordTime(t, rec).Sub(hung).Round(time.Millisecond), rec.str("error"))
	if !strings.Contains(rec.str("error"), "timed out after 10s") {
		t.Errorf("the hung fetch's error does not say it timed out: %s", rec.str("error"))
	}

	proxy.hang(false)
	editFile(t, repo.path("overlays/dev/kustomization.yaml"), func(s string) string { return s + "commonAnnotations:\n  fault: git-back\n" })
	pushed := time.Now()
	sha := repo.commit("after the outage")
	rec = d.waitFor(t, 2*time.Minute, "the commit pushed after the outage", syncComplete(sha))
	t.Logf("commit after the outage applied %s after its push", recordTime(t, rec).Sub(pushed).Round(time.Millisecond))
}

// hangProxy forwards TCP connections to a server until hang(true); then
// it accepts new connections and sends nothing on any, old or new, until
// hang(false) lets their bytes through again.
type hangProxy struct {
	addr    string
	mu      sync.Mutex
	hanging bool
	resume  chan struct{} // closed by hang(false)
	stalled atomic.Int64  // copies that waited on a hang
}

func newHangProxy(t *testing.T, target string) *hangProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{addr: l.Addr().String(), resume: make(chan struct{})}
	close(p.resume)
	var conns sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		p.hang(false)
		conns.Wait()
	})
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { p.serve(c, target) })
		}
	}()
	return p
}

func (p *hangProxy) hang(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && !p.hanging {
		p.resume = make(chan struct{})
	} else if !on && p.hanging {
		close(p.resume)
	}
	p.hanging = on
}

// wait blocks while the proxy hangs.
func (p *hangProxy) wait() {
	p.mu.Lock()
	hanging, resume := p.hanging, p.resume
	p.mu.Unlock()
	if hanging {
		p.stalled.Add(1)
		<-resume
	}
}

func (p *hangProxy) serve(c net.Conn, target string) {
	defer c.Close()
	p.wait()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	copyHanging := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.wait()
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Both ways end together: a closed side closes the other.
		c.Close()
		up.Close()
	}
	done := make(chan struct{})
	go func() { copyHanging(up, c); close(done) }()
	copyHanging(c, up)
	<-done
}

// TestFaultGitServerMisbehaves puts a switchable HTTP proxy in front of the
// git server and the daemon behind Basic-auth credentials: an endless 500
// body, a 200 with an HTML page, a 401 page that echoes the request's
// headers, a garbage ref advertisement and a truncated pack. Each fails at
// stage fetch; the daemon's RSS stays within 50 MiB of its steady state,
// no record is longer than 2 KB, the credentials appear in no record and
// not on /status, and the cluster keeps what it had.
func TestFaultGitServerMisbehaves(t *testing.T) {
	const ns = "fault-git-server-e2e"
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 10)
	user, password := "gitops-"+strings.ToLower(rand.Text()[:10]), "pw/"+rand.Text()[:16]+"+="
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, "username"), user+"\n")
	writeFile(t, filepath.Join(secrets, "password"), password+"\n")

	upstream, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var mode atomic.Value
	mode.Store("")
	forward := httputil.NewSingleHostReverseProxy(upstream)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "endless 500":
			w.WriteHeader(http.StatusInternalServerError)
			chunk := []byte(strings.Repeat("internal error, please retry ", 1000))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		case "200 with HTML":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html><body><h1>Sign in</h1>"+strings.Repeat("<p>welcome</p>", 5000)+"</body></html>")
		case "401 echoing the headers":
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "<html>denied. You sent:\n")
			for k, v := range r.Header {
				fmt.Fprintf(w, "%s: %s\n", k, strings.Join(v, ", "))
			}
			if u, p, ok := r.BasicAuth(); ok {
				fmt.Fprintf(w, "user %s password %s\n", u, p)
			}
		case "garbage refs":
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			buf := make([]byte, 1<<20)
			rand.Read(buf)
			w.Write(buf)
		case "truncated pack":
			if !strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
				forward.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			forward.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			body := rec.Body.Bytes()
			w.Write(body[:len(body)/2])
		default:
			forward.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(proxy.Close)

	d := startDaemon(t, "--git-url", proxy.URL+"/stack.git", "--git-ref", "main", "--path", "overlays/many",
		"--git-secret-dir", secrets, "--interval", "2s", "--git-timeout", "10s")
	d.waitFor(t, 60*time.Second, "first sync complete", syncComplete(sha))
	rss := watchRSS(t, d.cmd.Process.Pid)

	repo := cloneRepo(t, srv)
	for i, m := range []string{"endless 500", "200 with HTML", "401 echoing the headers", "garbage refs", "truncated pack"} {
		// A new commit for each, so that the fetch has a pack to get.
		writeFile(t, repo.path("overlays/many/namespace.yaml"),
			fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels: {case: %q}\n", ns, strconv.Itoa(i)))
		mode.Store(m)
		head := repo.commit(m)
		rec := d.waitFor(t, 30*time.Second, m+": sync failed at fetch", syncFailed(reconciler.StageFetch, ""))
		t.Logf("%s: %s", m, shorten(rec.str("error"), 300))
		if d.has(syncComplete(head)) {
			t.Errorf("%s: the commit behind the faulty server was applied", m)
		}
		mode.Store("")
		d.waitFor(t, 30*time.Second, m+": the commit once the server is back", syncComplete(head))
	}
	rss.check(t, 50<<20)

	_, status := httpGet(t, d.baseURL(t)+"/status")
	spellings := credentialSpellings(user, password)
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.records {
		line, _ := json.Marshal(r)
		if len(line) > 2048 {
			t.Errorf("a record of %d bytes: %s", len(line), shorten(string(line), 300))
		}
		for _, sp := range spellings {
			if strings.Contains(string(line), sp) {
				t.Errorf("a credential (%q) in a record: %s", sp, shorten(string(line), 300))
			}
		}
	}
	for _, sp := range spellings {
		if strings.Contains(string(status), sp) {
			t.Errorf("a credential (%q) on /status", sp)
		}
	}
}

// credentialSpellings are the forms a Basic-auth credential may take in a
// message: each part, the pair, and their base64 and URL encodings.
func credentialSpellings(user, password string) []string {
	var out []string
	for _, v := range []string{user, password, user + ":" + password} {
		out = append(out, v, url.QueryEscape(v), url.PathEscape(v))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			out = append(out, enc.EncodeToString([]byte(v)))
		}
	}
	return out
}

// shorten cuts s to n bytes, for logs of long values.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// TestFaultLeaderPaused runs two daemons with --leader-elect and stops the
// leader (SIGSTOP) for twice the lease duration while the standby takes
// over and applies a new commit; after SIGCONT the old leader makes no
// write: every object of the sync keeps its resourceVersion and the new
// commit's content, and the old leader ends. Five times, the roles
// alternating.
func TestFaultLeaderPaused(t *testing.T) {
	const ns = "fault-leader-e2e"
	const lease = 12 * time.Second // cmd/gitopsd's leaseDuration
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 20)
	repo := cloneRepo(t, srv)
	ctx := t.Context()
	args := []string{"--git-url", srv.URL + "/stack.git", "--git-ref", "main", "--path", "overlays/many", "--interval", "2s",
		"--leader-elect", "--leader-election-namespace", "gitopsd", "--leader-election-id", ns, "--name", ns}
	leader, standby := startPair(t, args, sha, 60*time.Second)

	for cycle := range 5 {
		if err := leader.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stopped := time.Now()
		standby.waitFor(t, 30*time.Second, "the standby takes the Lease", func(r logRecord) bool { return r.str("msg") == "leader elected" })
		var objs strings.Builder
		for i := range 20 {
			fmt.Fprintf(&objs, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-%d\n  namespace: %s\ndata:\n  i: %q\n  cycle: %q\n",
				i, ns, strconv.Itoa(i), strconv.Itoa(cycle))
		}
		writeFile(t, repo.path("overlays/many/many-0.yaml"), objs.String())
		head := repo.commit(fmt.Sprintf("cycle %d", cycle))
		standby.waitFor(t, 30*time.Second, "the new leader applies the commit", syncComplete(head))
		time.Sleep(time.Until(stopped.Add(2 * lease))) // the pause itself: twice the lease
		before := resourceVersions(t, ns)

		if err := leader.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		// The old leader stops its syncs at once and exits; meanwhile
		// nothing it does reaches the cluster.
		eventually(t, 20*time.Second, "the old leader to exit", func(context.Context) error {
			if leader.cmd.ProcessState == nil && processAlive(leader.cmd.Process.Pid) {
				return errors.New("still running")
			}
			return nil
		})
		t.Logf("cycle %d: the old leader exited %s after SIGCONT", cycle, time.Since(resumed).Round(time.Millisecond))
		if leader.has(func(r logRecord) bool {
			return r.str("msg") == "sync complete" && recordTime(t, r).After(resumed)
		}) {
			t.Errorf("cycle %d: the old leader completed a sync after SIGCONT", cycle)
		}
		if after := resourceVersions(t, ns); !maps.Equal(before, after) {
			for k, v := range after {
				if before[k] != v {
					t.Errorf("cycle %d: %s written after the old leader resumed (resourceVersion %s -> %s)", cycle, k, before[k], v)
				}
			}
		}
		cm, err := env.cs.CoreV1().ConfigMaps(ns).Get(ctx, "many-0", metav1.GetOptions{})
		if err != nil || cm.Data["cycle"] != strconv.Itoa(cycle) {
			t.Errorf("cycle %d: many-0 has cycle %q (%v), want the new commit's", cycle, cm.Data["cycle"], err)
		}
		leader, standby = standby, startDaemon(t, args...)
		standby.waitFor(t, 30*time.Second, "the new standby", func(r logRecord) bool { return r.str("msg") == "standby" })
	}
}

// resourceVersions are the resourceVersions of the ConfigMaps in ns and of
// the sync's inventory, by name.
func resourceVersions(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range []string{ns, "gitopsd"} {
		list, err := env.cs.CoreV1().ConfigMaps(n).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range list.Items {
			out[n+"/"+cm.Name] = cm.ResourceVersion
		}
	}
	return out
}
