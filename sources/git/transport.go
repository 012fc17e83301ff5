package git

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/file"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"golang.org/x/net/proxy"
)

// go-git has no per-remote hook into its transports, so this file wraps
// them where it can, once, for every Source (see init):
//
//   - http(s): budgetRoundTripper counts every response body against
//     MaxFetchSize and cuts an error page (any non-2xx) to a short excerpt;
//     requests carry the operation's context, which bounds the dial, the
//     headers and every read of a body in progress.
//   - file: go-git runs git-upload-pack as a child and, when it stops
//     reading the pack early (a cache write failed, say on a full disk),
//     waits for the child to exit, which never happens while the rest of
//     the pack sits unread in the pipe. killOnClose kills it instead.
//   - ssh: go-git dials with a timeout but does the ssh handshake with
//     none, so a server that accepts and says nothing hangs it forever.
//     Connections are made through deadlineDialer, which sets the
//     operation's deadline on the connection.

// fetchBudget marks the http requests of one network operation of this
// package. It bounds the bytes of their responses (limit, MaxFetchSize) and
// of a ref advertisement (refs, MaxRefsSize), 0 meaning unlimited, and
// carries the Source's redactor for error pages.
type fetchBudget struct {
	limit, refs int64
	redact      *redactor
	n           atomic.Int64
}

type budgetKey struct{}

// withBudget marks ctx as one of s's network operations.
func (s *Source) withBudget(ctx context.Context) context.Context {
	return context.WithValue(ctx, budgetKey{}, &fetchBudget{limit: s.limits.fetchSize, refs: s.limits.refsSize, redact: s.redact})
}

// budgetRoundTripper acts on requests whose context carries a fetchBudget;
// others pass through untouched. An error page is replaced by its excerpt
// (errorBody); other bodies are counted.
type budgetRoundTripper struct{ base http.RoundTripper }

func (t budgetRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	b, _ := req.Context().Value(budgetKey{}).(*fetchBudget)
	if err != nil || b == nil {
		return res, err
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		errorBody(res, b.redact)
		return res, nil
	}
	what, refs := "pack", int64(0)
	if strings.HasSuffix(req.URL.Path, "/info/refs") {
		what, refs = "ref advertisement", b.refs
	}
	for _, l := range []struct {
		b      *fetchBudget
		option string
	}{{b, "MaxFetchSize"}, {&fetchBudget{limit: refs}, "MaxRefsSize"}} {
		if l.b.limit == 0 {
			continue
		}
		if over(l.b.limit, l.b.n.Load()+res.ContentLength) { // fail early when it says so
			res.Body.Close()
			return nil, &limitError{what: what, limit: l.b.limit, unit: "byte", option: l.option}
		}
		res.Body = &budgetBody{ReadCloser: res.Body, b: l.b, what: what, option: l.option}
	}
	return res, nil
}

// errorBody replaces res's body by an excerpt of its first maxErrorBody
// bytes (errorExcerpt): go-git reads an error page whole into its error, and
// a server may send one without end, or echo the request's credentials in
// it. The excerpt is scrubbed by r before it is cut, so no cut leaves part
// of a credential. A read that fails or times out keeps what came before.
func errorBody(res *http.Response, r *redactor) {
	b, _ := io.ReadAll(io.LimitReader(res.Body, maxErrorBody))
	res.Body.Close()
	excerpt := errorExcerpt(b, r)
	res.Body = io.NopCloser(strings.NewReader(excerpt))
	res.ContentLength = int64(len(excerpt))
	res.Header.Del("Content-Length")
}

type budgetBody struct {
	io.ReadCloser
	b      *fetchBudget
	what   string
	option string // the Options field of b's limit
}

func (r *budgetBody) Read(p []byte) (int, error) {
	room := r.b.limit - r.b.n.Load()
	if room < 0 {
		return 0, &limitError{what: r.what, limit: r.b.limit, unit: "byte", option: r.option}
	}
	if int64(len(p)) > room+1 {
		p = p[:room+1] // read one byte past the limit at most
	}
	n, err := r.ReadCloser.Read(p)
	if r.b.n.Add(int64(n)) > r.b.limit {
		return 0, &limitError{what: r.what, limit: r.b.limit, unit: "byte", option: r.option}
	}
	return n, err
}

// budgetTransport is go-git's http(s) transport with budgetRoundTripper
// under it. Endpoints with their own TLS or proxy settings go to the
// transport it replaced, since go-git configures those only on a bare
// *http.Transport; this package sets none.
type budgetTransport struct {
	plain, counted transport.Transport
}

func (t budgetTransport) pick(ep *transport.Endpoint) transport.Transport {
	if len(ep.ClientCert) > 0 || len(ep.ClientKey) > 0 || len(ep.CaBundle) > 0 || ep.InsecureSkipTLS || ep.Proxy.URL != "" {
		return t.plain
	}
	return t.counted
}

func (t budgetTransport) NewUploadPackSession(ep *transport.Endpoint, a transport.AuthMethod) (transport.UploadPackSession, error) {
	return t.pick(ep).NewUploadPackSession(ep, a)
}

func (t budgetTransport) NewReceivePackSession(ep *transport.Endpoint, a transport.AuthMethod) (transport.ReceivePackSession, error) {
	return t.pick(ep).NewReceivePackSession(ep, a)
}

// fileTransport is go-git's file transport whose fetches end their
// git-upload-pack child when they stop reading its pack early.
type fileTransport struct{ transport.Transport }

func (t fileTransport) NewUploadPackSession(ep *transport.Endpoint, a transport.AuthMethod) (transport.UploadPackSession, error) {
	s, err := t.Transport.NewUploadPackSession(ep, a)
	if err != nil {
		return nil, err
	}
	return killingSession{s}, nil
}

type killingSession struct{ transport.UploadPackSession }

// UploadPack hands go-git the pack through killOnClose. Its context is a
// child of ctx that only killOnClose cancels: go-git reads the child's
// output through that context and kills the child when a read fails.
func (s killingSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	res, err := s.UploadPackSession.UploadPack(ctx, req)
	if err != nil || res == nil {
		cancel()
		return res, err
	}
	out := packp.NewUploadPackResponseWithPackfile(req, &killOnClose{r: res, cancel: cancel})
	out.ShallowUpdate, out.ServerResponse = res.ShallowUpdate, res.ServerResponse
	return out, nil
}

// killOnClose is a pack stream that, closed before its end, cancels the
// reads' context and reads once more, so that go-git kills the child before
// its Close waits for it. Reads that fail or time out have killed it
// already.
type killOnClose struct {
	r      io.ReadCloser
	cancel context.CancelFunc
	ended  bool
}

func (k *killOnClose) Read(p []byte) (int, error) {
	n, err := k.r.Read(p)
	if err != nil {
		k.ended = true
	}
	return n, err
}

func (k *killOnClose) Close() error {
	k.cancel()
	var buf [32 << 10]byte
	for !k.ended { // go-git's reader returns what the pipe holds or the cancellation, at random
		k.Read(buf[:])
	}
	return k.r.Close()
}

// deadlineScheme names deadlineDialer to golang.org/x/net/proxy, through
// which go-git's ssh transport dials when an endpoint has a proxy URL.
const deadlineScheme = "gitopsd-deadline"

// sshDeadline is the proxy setting that makes an ssh operation's connection
// expire at ctx's deadline; none when ctx has no deadline.
func sshDeadline(ctx context.Context, r remote) transport.ProxyOptions {
	d, ok := ctx.Deadline()
	if !ok || r.scheme != "ssh" {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: deadlineScheme + "://deadline/?unixnano=" + strconv.FormatInt(d.UnixNano(), 10)}
}

// deadlineDialer dials directly and sets its deadline on the connection,
// which bounds the handshake and every read and write after it.
type deadlineDialer struct{ deadline time.Time }

func newDeadlineDialer(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
	n, err := strconv.ParseInt(u.Query().Get("unixnano"), 10, 64)
	if err != nil {
		return nil, errors.New("bad deadline")
	}
	return deadlineDialer{deadline: time.Unix(0, n)}, nil
}

func (d deadlineDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

func (d deadlineDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithDeadline(ctx, d.deadline)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(d.deadline); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// go-git picks a transport by URL scheme from a global map, and FetchOptions
// carries no client, so the wrappers can only be installed globally. They
// are installed here, before any goroutine can read the map (go-git does
// not lock it), and only over go-git's defaults: a program that installed
// its own keeps it. Requests and sessions of other users of go-git in the
// process behave exactly as before (the file wrapper only acts once go-git
// abandons a pack, when it would otherwise hang).
func init() {
	counted := budgetTransport{
		plain:   githttp.DefaultClient,
		counted: githttp.NewClient(&http.Client{Transport: budgetRoundTripper{base: http.DefaultTransport}}),
	}
	for _, scheme := range []string{"http", "https"} {
		if client.Protocols[scheme] == githttp.DefaultClient {
			client.InstallProtocol(scheme, counted)
		}
	}
	if client.Protocols["file"] == file.DefaultClient {
		client.InstallProtocol("file", fileTransport{file.DefaultClient})
	}
	proxy.RegisterDialerType(deadlineScheme, newDeadlineDialer)
}
