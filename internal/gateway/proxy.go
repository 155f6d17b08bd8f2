// Package gateway puts a partner's app, in any language, behind the server's Untis sign-in: a
// reverse proxy to UPSTREAM_URL that lets a request through only with a live session of an
// active school (or on one of the app's public paths), strips every identity header a client
// sends, and adds the server's own (X-Untis-*, with the signed X-Untis-Identity assertion). The
// same identity answers forward-auth requests of an ingress (nginx auth_request, Traefik
// ForwardAuth, Caddy forward_auth).
//
// The package decides nothing about sessions or pages: internal/httpserver loads the session,
// answers a request that may not pass with its own pages, and calls Proxy.Serve for the rest.
package gateway

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Failure is why a proxied request got no answer from the app.
type Failure int

// The failures, each with its status.
const (
	// FailUnreachable: the app could not be reached or broke the connection (502).
	FailUnreachable Failure = iota
	// FailTimeout: the app did not answer within UPSTREAM_TIMEOUT (504).
	FailTimeout
	// FailTooLarge: the request body is over GATEWAY_MAX_BODY (413).
	FailTooLarge
	// FailClientGone: the client went away before the app answered (nobody reads the answer).
	FailClientGone
)

// Status is the HTTP status of a failure.
func (f Failure) Status() int {
	switch f {
	case FailTimeout:
		return http.StatusGatewayTimeout
	case FailTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadGateway
}

func (f Failure) String() string {
	switch f {
	case FailTimeout:
		return "upstream_timeout"
	case FailTooLarge:
		return "body_too_large"
	case FailClientGone:
		return "client_gone"
	}
	return "upstream_unreachable"
}

// Defaults of ProxyConfig.
const (
	DefaultMaxBody         = 32 << 20
	DefaultUpstreamTimeout = 30 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
)

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Upstream is the app (UPSTREAM_URL); a path in it is prefixed to every request's.
	Upstream *url.URL
	// PublicURL is PUBLIC_URL: the app sees its host as Host and X-Forwarded-Host, its scheme
	// as X-Forwarded-Proto, whatever Host the request came with.
	PublicURL *url.URL
	// Public are the app's paths that need no session.
	Public PathRules
	// MaxBody bounds request bodies (0: no bound).
	MaxBody int64
	// UpstreamTimeout bounds the wait for the app's response headers, counted once the request
	// is sent (0: no bound).
	UpstreamTimeout time.Duration
	// IdleTimeout is the longest a proxied exchange may go without a byte moving, either way:
	// an upload, a download or a stream that stalls this long is cut (0: never). It replaces
	// the server's read and write timeouts for proxied requests, so that long uploads,
	// downloads and event streams are not cut while they move. WebSockets are exempt.
	IdleTimeout time.Duration
	// Trusted are TRUSTED_PROXIES: X-Forwarded-For is passed on only through them.
	Trusted []netip.Prefix
	// RequestID returns the request's id, passed to the app as X-Request-Id.
	RequestID func(context.Context) string
	// Fail answers a request the app could not answer (the server's 502, 504 and 413 pages).
	// Nothing has been written to w yet.
	Fail   func(w http.ResponseWriter, r *http.Request, f Failure)
	Logger *slog.Logger
}

// Proxy is the reverse proxy to the app. Safe for concurrent use.
type Proxy struct {
	cfg        ProxyConfig
	log        *slog.Logger
	rp         *httputil.ReverseProxy
	publicHost string
	proto      string
}

// NewProxy builds the proxy.
func NewProxy(cfg ProxyConfig) (*Proxy, error) {
	if cfg.Upstream == nil || cfg.PublicURL == nil {
		return nil, errors.New("gateway: Upstream and PublicURL are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Fail == nil {
		cfg.Fail = func(w http.ResponseWriter, _ *http.Request, f Failure) {
			http.Error(w, http.StatusText(f.Status()), f.Status())
		}
	}
	if cfg.RequestID == nil {
		cfg.RequestID = func(context.Context) string { return "" }
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger, publicHost: cfg.PublicURL.Host, proto: cfg.PublicURL.Scheme}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      newTransport(cfg.UpstreamTimeout, cfg.IdleTimeout),
		ModifyResponse: modifyResponse,
		ErrorHandler:   p.failed,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		BufferPool:     bufferPool{},
	}
	return p, nil
}

// Public reports whether the request is for one of the app's public paths.
func (p *Proxy) Public(r *http.Request) bool { return p.cfg.Public.Match(r) }

type exchangeKey struct{}

// exchange is one proxied request's state.
type exchange struct {
	id   *Identity
	body *bodyReader
	dl   *deadlines
}

// Serve proxies r to the app, with id's identity headers, or with none (a public path) when id
// is nil.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, id *Identity) {
	if p.cfg.MaxBody > 0 && r.ContentLength > p.cfg.MaxBody {
		p.fail(w, r, FailTooLarge, errors.New("declared body length over the limit"))
		return
	}
	ex := &exchange{id: id, dl: newDeadlines(w, p.cfg.IdleTimeout, p.cfg.UpstreamTimeout)}
	ex.dl.start()
	if r.Body != nil && r.Body != http.NoBody {
		body := r.Body
		if p.cfg.MaxBody > 0 {
			body = http.MaxBytesReader(w, body, p.cfg.MaxBody)
		}
		ex.body = &bodyReader{ReadCloser: body, dl: ex.dl}
		r.Body = ex.body
	}
	r = r.WithContext(context.WithValue(r.Context(), exchangeKey{}, ex))
	p.rp.ServeHTTP(&deadlineWriter{ResponseWriter: w, dl: ex.dl}, r)
}

// rewrite builds the request the app receives.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.cfg.Upstream)
	pr.Out.Host = p.publicHost
	h := pr.Out.Header
	if up := h.Get("Upgrade"); up != "" && !strings.EqualFold(up, "websocket") {
		// Only a WebSocket switches protocols. Any other upgrade (h2c above all) would open a
		// tunnel to the app in which every further request bypasses the gateway: no session
		// check, identity headers of the client's choosing. The request goes as a plain one;
		// an app that switches anyway gets an error (ReverseProxy checks the 101 against the
		// request's Upgrade), not a tunnel.
		h.Del("Upgrade")
		h.Del("Connection")
	}
	stripInbound(h)
	stripForwarding(h)
	stripOurCookies(h)
	stripTrailers(pr.Out)
	h.Set("X-Forwarded-For", forwardedFor(pr.In, p.cfg.Trusted))
	h.Set("X-Forwarded-Host", p.publicHost)
	h.Set("X-Forwarded-Proto", p.proto)
	if id := p.cfg.RequestID(pr.In.Context()); id != "" {
		h.Set("X-Request-Id", id)
	} else {
		h.Del("X-Request-Id")
	}
	if ex, _ := pr.In.Context().Value(exchangeKey{}).(*exchange); ex != nil && ex.id != nil {
		ex.id.Set(h)
	}
}

// modifyResponse keeps the app from setting or clearing the server's cookies, and keeps the
// server's request id on the answer.
func modifyResponse(res *http.Response) error {
	dropOurSetCookies(res.Header)
	res.Header.Del("X-Request-Id")
	return nil
}

// failed is the reverse proxy's error handler: the request got no answer from the app.
func (p *Proxy) failed(w http.ResponseWriter, r *http.Request, err error) {
	f := FailUnreachable
	var (
		ne        net.Error
		tooLarge  *http.MaxBytesError
		ex, _     = r.Context().Value(exchangeKey{}).(*exchange)
		bodyError error
	)
	if ex != nil && ex.body != nil {
		bodyError = ex.body.failure()
	}
	switch {
	case errors.As(bodyError, &tooLarge) || errors.As(err, &tooLarge):
		f = FailTooLarge
	case r.Context().Err() != nil || bodyError != nil:
		// The client stopped sending its body or went away.
		f = FailClientGone
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		f = FailTimeout
	}
	p.fail(w, r, f, err)
}

func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, f Failure, err error) {
	level := slog.LevelError
	if f == FailTooLarge || f == FailClientGone {
		level = slog.LevelInfo
	}
	// The error names the app's address and what failed; never a header value or the query.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	p.log.LogAttrs(r.Context(), level, "proxied request failed",
		slog.String("request_id", p.cfg.RequestID(r.Context())), slog.String("reason", f.String()),
		slog.String("err", errString(err)))
	if f == FailTooLarge {
		// The rest of the body is not read: the connection cannot be reused.
		w.Header().Set("Connection", "close")
	}
	p.cfg.Fail(w, r, f)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// bodyReader is the request body on its way to the app: reading it moves the connection's
// deadlines, and its first error is kept to tell a client's fault from the app's.
type bodyReader struct {
	io.ReadCloser
	dl   *deadlines
	mu   sync.Mutex
	err  error
	done atomic.Bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		if !b.done.Swap(true) {
			b.dl.bodyDone()
		}
	case err != nil:
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	case n > 0:
		b.dl.moved(true)
	}
	return n, err
}

func (b *bodyReader) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// deadlineWriter moves the connection's deadlines as the app's answer is written to the client,
// and clears them when the connection is handed over to a WebSocket.
type deadlineWriter struct {
	http.ResponseWriter
	dl *deadlines
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.dl.moved(false)
	return w.ResponseWriter.Write(b)
}

// Hijack hands the connection to a protocol switch (a WebSocket): from then on the server's
// timeouts do not apply; the connection lasts until one side closes it.
func (w *deadlineWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		_ = conn.SetDeadline(time.Time{})
	}
	return conn, brw, err
}

// Unwrap lets http.ResponseController reach the writer underneath (Flush).
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferPool reuses the proxy's copy buffers, so a busy gateway does not allocate 32 KiB per
// request. The pool holds array pointers: a slice converts back to its array without the
// allocation that boxing a slice header for sync.Pool would cost on every Put.
type bufferPool struct{}

const bufferSize = 32 << 10

var buffers = sync.Pool{New: func() any { return new([bufferSize]byte) }}

func (bufferPool) Get() []byte { return buffers.Get().(*[bufferSize]byte)[:] }

func (bufferPool) Put(b []byte) {
	if cap(b) >= bufferSize {
		buffers.Put((*[bufferSize]byte)(b[:bufferSize]))
	}
}
