package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFaultLossyAPIPath puts a proxy between the daemon and kube-apiserver
// that delays every byte by 100 ms each way (200 ms round trips) and resets
// the connection at 1 in 200 of the chunks it forwards (all of the daemon's
// requests share one HTTP/2 connection, so each reset fails every request
// in flight; "5% of the connections" would be no reset at all): a commit of 100 changes (90 ConfigMaps
// changed, 10 removed) converges, and exactly the removed ones are pruned.
func TestFaultLossyAPIPath(t *testing.T) {
	const ns = "fault-lossy-e2e"
	srv := newGitServer(t)
	sha := configMapsRepo(t, srv, ns, 100)
	api, err := url.Parse(env.config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newLossyProxy(t, api.Host, 100*time.Millisecond, 0.005)
	kubeconfig, err := os.ReadFile(env.cluster.Kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	lossy := filepath.Join(t.TempDir(), "kubeconfig")
	writeFile(t, lossy, strings.ReplaceAll(string(kubeconfig), api.Host, proxy.addr))
	d := startDaemon(t, "--kubeconfig", lossy, "--git-url", srv.URL+"/stack.git", "--git-ref", "main",
		"--path", "overlays/many", "--interval", "5s")
	d.waitFor(t, 3*time.Minute, "first sync complete", syncComplete(sha))

	repo := cloneRepo(t, srv)
	var objs strings.Builder
	for i := range 90 {
		fmt.Fprintf(&objs, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-%d\n  namespace: %s\ndata:\n  i: %q\n  changed: \"yes\"\n", i, ns, strconv.Itoa(i))
	}
	writeFile(t, repo.path("overlays/many/many-0.yaml"), objs.String())
	pushed := time.Now()
	head := repo.commit("90 changed, 10 removed")
	rec := d.waitFor(t, 3*time.Minute, "the commit of 100 changes", syncComplete(head))
	t.Logf("100 changes converged %s after the push through the lossy path (configured %v, pruned %v); %d connections, %d reset",
		recordTime(t, rec).Sub(pushed).Round(time.Millisecond), rec["configured"], rec["pruned"], proxy.conns(), proxy.resets())

	list, err := env.cs.CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "many-") {
			got[cm.Name] = true
			if cm.Data["changed"] != "yes" {
				t.Errorf("%s not changed", cm.Name)
			}
		}
	}
	for i := range 100 {
		name := "many-" + strconv.Itoa(i)
		if want := i < 90; got[name] != want {
			t.Errorf("%s present %v, want %v", name, got[name], want)
		}
	}
}

// lossyProxy forwards TCP connections with a delay each way, and resets a
// connection at a share of the chunks it forwards.
type lossyProxyState struct {
	mu             sync.Mutex
	nconns, nreset int
}

type lossyProxy struct {
	addr string
	st   *lossyProxyState
}

func (p lossyProxy) conns() int  { p.st.mu.Lock(); defer p.st.mu.Unlock(); return p.st.nconns }
func (p lossyProxy) resets() int { p.st.mu.Lock(); defer p.st.mu.Unlock(); return p.st.nreset }

func newLossyProxy(t *testing.T, target string, delay time.Duration, resetShare float64) lossyProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := lossyProxy{addr: l.Addr().String(), st: &lossyProxyState{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c, target, delay, resetShare) })
		}
	}()
	return p
}

func (p lossyProxy) serve(c net.Conn, target string, delay time.Duration, resetShare float64) {
	defer c.Close()
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	p.st.mu.Lock()
	p.st.nconns++
	p.st.mu.Unlock()
	// Each chunk forwarded (either way) resets the connection with
	// probability resetShare: every request or watch on it fails mid-way.
	var once sync.Once
	reset := func() bool {
		if rand.Float64() < resetShare {
			once.Do(func() {
				p.st.mu.Lock()
				p.st.nreset++
				p.st.mu.Unlock()
				for _, conn := range []net.Conn{c, up} {
					if tc, ok := conn.(*net.TCPConn); ok {
						tc.SetLinger(0) // RST, not FIN
					}
					conn.Close()
				}
			})
			return true
		}
		return false
	}
	pipe := func(dst, src net.Conn) {
		type chunk struct {
			data []byte
			at   time.Time
		}
		q := make(chan chunk, 4096)
		go func() {
			defer close(q)
			for {
				buf := make([]byte, 32<<10)
				n, err := src.Read(buf)
				if n > 0 {
					q <- chunk{buf[:n], time.Now().Add(delay)}
				}
				if err != nil {
					return
				}
			}
		}()
		for ch := range q {
			time.Sleep(time.Until(ch.at)) // the link's latency
			if reset() {
				return
			}
			if _, err := dst.Write(ch.data); err != nil {
				break
			}
		}
		c.Close()
		up.Close()
	}
	done := make(chan struct{})
	go func() { pipe(up, c); close(done) }()
	pipe(c, up)
	<-done
}
