package httpserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/store"
)

// waitFor polls cond until it holds or a generous deadline passes (slow 2-core CI machines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newLogger() (*slog.Logger, *logtest.Buffer) { return logtest.New() }

func get(t *testing.T, client *http.Client, u string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func openStore(t *testing.T, databaseURL string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, databaseURL, nil, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer srv.Close()
	resp, body := get(t, nil, srv.URL+"/healthz", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `"ok"`) {
		t.Errorf("/healthz body %q", body)
	}
}

func TestReadyzWithoutStore(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer srv.Close()
	if resp, body := get(t, nil, srv.URL+"/readyz", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without a store = %d %s, want 503", resp.StatusCode, body)
	}
}

// tcpProxy stands between the store and PostgreSQL, so a test can "stop the database" without
// touching the cluster that other tests share.
type tcpProxy struct {
	target string
	addr   string // fixed after the first listen, so the store's URL stays valid

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.start(t)
	t.Cleanup(func() {
		p.stop()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	waitFor(t, "the proxy port to be free again", func() bool {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	})
	p.mu.Lock()
	p.ln = ln
	p.addr = ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.pipe(c)
			}()
		}
	}()
}

func (p *tcpProxy) pipe(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // stopped meanwhile
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.conns[client] = struct{}{}
	p.conns[server] = struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(server, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, server); done <- struct{}{} }()
	<-done
	client.Close()
	server.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// stop closes the listener and every proxied connection: to the store, the database is gone.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

func TestReadyzFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	proxied := *u
	proxied.Host = proxy.addr
	st := openStore(t, proxied.String())

	logger, logs := newLogger()
	s := httpserver.New(httpserver.Deps{Store: st, Logger: logger})
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	readyz := func() int {
		resp, _ := get(t, nil, srv.URL+"/readyz", nil)
		return resp.StatusCode
	}

	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz with a reachable database = %d, want 200", code)
	}

	proxy.stop()
	waitFor(t, "/readyz to answer 503 with the database stopped", func() bool { return readyz() == http.StatusServiceUnavailable })
	// Once down, it stays down (no lucky pooled connection).
	for range 3 {
		if code := readyz(); code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with the database stopped = %d, want 503", code)
		}
	}
	// /healthz is liveness only: the process is fine.
	if resp, _ := get(t, nil, srv.URL+"/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz with the database stopped = %d, want 200", resp.StatusCode)
	}
	// The 503 and its log line do not leak the connection string's password.
	if pw, ok := u.User.Password(); ok {
		logs.AssertNoSecrets(t, pw)
	}
	_, body := get(t, nil, srv.URL+"/readyz", nil)
	if strings.Contains(body, u.Host) || strings.Contains(body, proxy.addr) || strings.Contains(body, u.User.Username()) {
		t.Errorf("/readyz body names the database: %s", body)
	}

	proxy.start(t)
	waitFor(t, "/readyz to answer 200 once the database is back", func() bool { return readyz() == http.StatusOK })

	s.BeginShutdown()
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after BeginShutdown = %d, want 503", code)
	}
	if resp, _ := get(t, nil, srv.URL+"/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz after BeginShutdown = %d, want 200", resp.StatusCode)
	}
}

func TestRequestLogHasNoSecrets(t *testing.T) {
	t.Parallel()
	logger, logs := newLogger()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{Logger: logger}).Handler())
	defer srv.Close()

	secrets := []string{"SECRETCODE", "SECRETSTATE", "SECRETCOOKIE", "SECRETTOKEN", "SECRETPATHPART"}
	header := http.Header{
		"Cookie":        {"__Host-session=SECRETCOOKIE"},
		"Authorization": {"Bearer SECRETTOKEN"},
	}
	tests := []struct {
		path      string
		wantRoute string
		wantCode  int
	}{
		{"/?code=SECRETCODE&state=SECRETSTATE", "/", http.StatusOK},
		{"/launch-nowhere/SECRETPATHPART?code=SECRETCODE&state=SECRETSTATE", "unmatched", http.StatusNotFound},
		{"/healthz?code=SECRETCODE", "/healthz", http.StatusOK},
		{"/static/app.css?state=SECRETSTATE", "/static/*", http.StatusOK},
	}
	for _, tt := range tests {
		resp, body := get(t, nil, srv.URL+tt.path, header)
		if resp.StatusCode != tt.wantCode {
			t.Fatalf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.wantCode)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) && !strings.HasPrefix(tt.path, "/static/") {
				t.Errorf("GET %s: page echoes %s", tt.path, s)
			}
		}
		id := resp.Header.Get("X-Request-Id")
		var line map[string]any
		for _, r := range logs.Records(t) {
			if r["msg"] == "request" && r["request_id"] == id {
				line = r
			}
		}
		if line == nil {
			t.Fatalf("GET %s: no request log line with request_id %q in %s", tt.path, id, logs)
		}
		if line["route"] != tt.wantRoute {
			t.Errorf("GET %s: logged route %v, want %s", tt.path, line["route"], tt.wantRoute)
		}
		if line["status"] != float64(tt.wantCode) {
			t.Errorf("GET %s: logged status %v, want %d", tt.path, line["status"], tt.wantCode)
		}
		if line["method"] != http.MethodGet {
			t.Errorf("GET %s: logged method %v", tt.path, line["method"])
		}
		if _, ok := line["duration"].(float64); !ok {
			t.Errorf("GET %s: no duration in %v", tt.path, line)
		}
		if line["client_ip"] != "127.0.0.1" {
			t.Errorf("GET %s: client_ip %v, want 127.0.0.1", tt.path, line["client_ip"])
		}
	}
	logs.AssertNoSecrets(t, secrets...)
}

// An upstream X-Request-Id is kept only when it is well-formed and comes from a trusted proxy:
// anyone else could choose the id that error pages quote and the logs are searched by.
func TestRequestID(t *testing.T) {
	t.Parallel()
	logger, logs := newLogger()
	h := httpserver.New(httpserver.Deps{Logger: logger, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}).Handler()
	generated := regexp.MustCompile(`^[0-9a-f]{24}$`)
	const (
		proxy     = "10.1.2.3:5555"
		proxyV6   = "[::ffff:10.1.2.3]:5555" // the same proxy, seen on a dual-stack socket
		untrusted = "192.0.2.1:1234"
	)
	tests := []struct {
		name     string
		peer     string
		incoming string
		echoed   bool
	}{
		{"well-formed from a trusted proxy", proxy, "req-123_abc.DEF", true},
		{"uuid from a trusted proxy", proxy, "3f1c2a9e-0b7d-4c55-9a31-2d1e7f0c4b8a", true},
		{"64 chars from a trusted proxy", proxy, strings.Repeat("a", 64), true},
		{"from a trusted proxy, IPv4-mapped", proxyV6, "req-mapped-1", true},
		{"well-formed from an untrusted peer", untrusted, "forged-by-client-1", false},
		{"uuid from an untrusted peer", untrusted, "forged-by-client-3f1c2a9e-0b7d-4c55-9a31", false},
		{"untrusted peer claiming a trusted X-Forwarded-For", untrusted, "forged-by-client-2", false},
		{"none", proxy, "", false},
		{"newline (log injection)", proxy, "abc\n{\"msg\":\"forged\"}", false},
		{"CRLF", proxy, "abc\r\nSet-Cookie: x=1", false},
		{"too long", proxy, strings.Repeat("a", 65), false},
		{"spaces", proxy, "a b", false},
		{"html", proxy, "<script>alert(1)</script>", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "/nowhere", nil)
			req.RemoteAddr = tt.peer
			req.Header.Set("X-Forwarded-For", "10.9.9.9")
			if tt.incoming != "" {
				req.Header.Set("X-Request-Id", tt.incoming)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Header().Get("X-Request-Id")
			if tt.echoed {
				if got != tt.incoming {
					t.Errorf("X-Request-Id = %q, want the incoming %q echoed", got, tt.incoming)
				}
			} else if !generated.MatchString(got) {
				t.Errorf("X-Request-Id = %q, want a fresh generated id instead of %q", got, tt.incoming)
			}
			// The error page quotes the id for support.
			if !strings.Contains(rec.Body.String(), got) {
				t.Errorf("404 page does not quote the request id %q", got)
			}
		})
	}
	t.Cleanup(func() {
		out := logs.String()
		for _, bad := range []string{"forged", "Set-Cookie", "<script>"} {
			if strings.Contains(out, bad) {
				t.Errorf("log contains the client-chosen id part %q:\n%s", bad, out)
			}
		}
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	tests := []struct {
		name      string
		store     *store.Store
		wantPool  bool
		extraReqs []string
	}{
		{"with store", st, true, nil},
		{"without store", nil, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(httpserver.New(httpserver.Deps{Store: tt.store, Metrics: metrics.NewRegistry()}).Handler())
			defer srv.Close()
			for _, p := range []string{"/static/app.css", "/static/app.css", "/healthz", "/no/such/page", "/another-missing?x=1", "/"} {
				get(t, nil, srv.URL+p, nil)
			}
			resp, body := get(t, nil, srv.URL+"/metrics", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/metrics = %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want Prometheus text", ct)
			}
			want := []string{
				"# TYPE http_requests_total counter",
				`http_requests_total{route="/static/*",method="GET",code="200"} 2`,
				`http_requests_total{route="/healthz",method="GET",code="200"} 1`,
				`http_requests_total{route="unmatched",method="GET",code="404"} 2`,
				`http_requests_total{route="/",method="GET",code="200"} 1`,
				"# TYPE http_request_duration_seconds histogram",
				"go_goroutines ",
				"go_memstats_alloc_bytes ",
			}
			if tt.wantPool {
				want = append(want, `db_pool_connections{state="idle"}`, "db_pool_max_connections 4", "db_pool_acquire_total ")
			}
			for _, w := range want {
				if !strings.Contains(body, w) {
					t.Errorf("/metrics lacks %q", w)
				}
			}
			// Latency by route too (whatever other labels it carries).
			if !regexp.MustCompile(`(?m)^http_request_duration_seconds_bucket\{route="/static/\*",method="GET",[^}]*le="\+Inf"\} 2$`).MatchString(body) {
				t.Error("/metrics lacks the /static/* latency histogram")
			}
			if !tt.wantPool && strings.Contains(body, "db_pool_") {
				t.Error("/metrics has db_pool metrics without a store")
			}
			// Raw paths never become labels.
			for _, raw := range []string{"/static/app.css", "/no/such/page", "another-missing"} {
				if strings.Contains(body, `"`+raw+`"`) || strings.Contains(body, raw+`"`) {
					t.Errorf("/metrics has the raw path %q as a label", raw)
				}
			}
			if t.Failed() {
				t.Log(body)
			}
		})
	}
}

// Labels stay bounded whatever a client sends: invented methods must not mint new series.
func TestMetricsLabelsAreBounded(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer srv.Close()
	for i := range 20 {
		for _, p := range []string{"/", "/healthz", fmt.Sprintf("/random/%d", i)} {
			req, err := http.NewRequest(fmt.Sprintf("INVENTED%d", i), srv.URL+p, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
	}
	_, body := get(t, nil, srv.URL+"/metrics", nil)
	if strings.Contains(body, "INVENTED") || strings.Contains(body, "/random/") {
		t.Errorf("client-chosen values became metric labels:\n%s", body)
	}
	if n := strings.Count(body, "http_requests_total{"); n > 10 {
		t.Errorf("%d http_requests_total series after junk requests, want a handful", n)
	}
}

// cspDirective returns the value of one directive of a Content-Security-Policy, and how many
// times the directive appears.
func cspDirective(csp, name string) (string, int) {
	var val string
	n := 0
	for _, d := range strings.Split(csp, ";") {
		fields := strings.Fields(d)
		if len(fields) > 0 && fields[0] == name {
			val = strings.Join(fields[1:], " ")
			n++
		}
	}
	return val, n
}

func TestPagesAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	type mode struct{ embed, https bool }
	var (
		plain      = mode{}
		https      = mode{https: true}
		embed      = mode{embed: true}
		embedHTTPS = mode{embed: true, https: true}
	)
	origins := []string{"https://*.webuntis.com", "http://127.0.0.1:7777"}
	const (
		nobody   = "'none'"
		platform = "'self' https://*.webuntis.com http://127.0.0.1:7777"
	)
	tests := []struct {
		name          string
		mode          mode
		method        string
		path          string
		wantCode      int
		wantInBody    string
		wantAncestors string // frame-ancestors
	}{
		{"home", plain, http.MethodGet, "/", http.StatusOK, "Open this app from Untis", nobody},
		{"static", plain, http.MethodGet, "/static/app.css", http.StatusOK, "", nobody},
		{"unknown path", plain, http.MethodGet, "/does/not/exist", http.StatusNotFound, "Page not found", nobody},
		{"unknown static file", plain, http.MethodGet, "/static/nope.css", http.StatusNotFound, "", nobody},
		{"wrong method", plain, http.MethodDelete, "/", http.StatusMethodNotAllowed, "Not allowed", nobody},
		{"home, https", https, http.MethodGet, "/", http.StatusOK, "Open this app from Untis", nobody},
		{"unknown path, https", https, http.MethodGet, "/does/not/exist", http.StatusNotFound, "Page not found", nobody},
		{"home, embed mode", embed, http.MethodGet, "/", http.StatusOK, "Open this app from Untis", platform},
		{"unknown path, embed mode", embed, http.MethodGet, "/does/not/exist", http.StatusNotFound, "Page not found", platform},
		{"wrong method, embed mode", embed, http.MethodDelete, "/", http.StatusMethodNotAllowed, "Not allowed", platform},
		{"static, embed mode", embed, http.MethodGet, "/static/app.css", http.StatusOK, "", platform},
		{"home, embed mode, https", embedHTTPS, http.MethodGet, "/", http.StatusOK, "Open this app from Untis", platform},
	}
	servers := map[mode]*httptest.Server{}
	for _, m := range []mode{plain, https, embed, embedHTTPS} {
		// The platform origins are configured in every mode: outside embed mode they must not
		// open the app to framing.
		srv := httptest.NewServer(httpserver.New(httpserver.Deps{EmbedMode: m.embed, HTTPS: m.https, PlatformOrigins: origins}).Handler())
		t.Cleanup(srv.Close)
		servers[m] = srv
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, servers[tt.mode].URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body := string(b)
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.wantCode)
			}
			if tt.wantInBody != "" {
				if !strings.Contains(body, tt.wantInBody) {
					t.Errorf("body lacks %q: %s", tt.wantInBody, body)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
					t.Errorf("Content-Type %q, want HTML", ct)
				}
			}
			for _, leak := range []string{"goroutine", ".go:", "panic", "runtime."} {
				if strings.Contains(body, leak) {
					t.Errorf("page contains %q: %s", leak, body)
				}
			}
			h := resp.Header
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			if got := h.Get("Referrer-Policy"); got != "no-referrer" {
				t.Errorf("Referrer-Policy = %q", got)
			}
			csp := h.Get("Content-Security-Policy")
			if v, n := cspDirective(csp, "default-src"); n != 1 || v != "'self'" {
				t.Errorf("Content-Security-Policy default-src = %q (%d times): %q", v, n, csp)
			}
			if v, n := cspDirective(csp, "frame-ancestors"); n != 1 || v != tt.wantAncestors {
				t.Errorf("Content-Security-Policy frame-ancestors = %q (%d times), want %q: %q", v, n, tt.wantAncestors, csp)
			}
			// X-Frame-Options cannot name several origins: embed mode relies on the CSP alone.
			if got := h.Get("X-Frame-Options"); !tt.mode.embed && got != "DENY" {
				t.Errorf("X-Frame-Options = %q, want DENY", got)
			} else if tt.mode.embed && got != "" {
				t.Errorf("X-Frame-Options = %q in embed mode, want none", got)
			}
			// HSTS only when PUBLIC_URL is https: on plain http it would be ignored, or pin a
			// developer's localhost to https.
			if got := h.Get("Strict-Transport-Security"); tt.mode.https && !strings.HasPrefix(got, "max-age=") {
				t.Errorf("Strict-Transport-Security = %q, want max-age=...", got)
			} else if !tt.mode.https && got != "" {
				t.Errorf("Strict-Transport-Security = %q without https, want none", got)
			}
			if h.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
		})
	}

	// Embed mode without configured platform origins still lets only the app frame itself.
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{EmbedMode: true}).Handler())
	defer srv.Close()
	resp, _ := get(t, nil, srv.URL+"/", nil)
	if v, _ := cspDirective(resp.Header.Get("Content-Security-Policy"), "frame-ancestors"); v != "'self'" {
		t.Errorf("embed mode without origins: frame-ancestors = %q, want 'self'", v)
	}
}

func TestNewHTTPServerTimeouts(t *testing.T) {
	t.Parallel()
	srv := httpserver.NewHTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout,
		"ReadTimeout":       srv.ReadTimeout,
		"WriteTimeout":      srv.WriteTimeout,
		"IdleTimeout":       srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s is not set", name)
		}
	}
	if srv.MaxHeaderBytes <= 0 || srv.ErrorLog == nil {
		t.Errorf("MaxHeaderBytes %d, ErrorLog %v", srv.MaxHeaderBytes, srv.ErrorLog)
	}
}

// Serve drains: a request in flight when the context is cancelled still completes, new
// connections are refused, and Serve returns nil.
func TestServeDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	var startOnce sync.Once
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		startOnce.Do(func() { close(started) })
		select {
		case <-release:
		case <-time.After(30 * time.Second): // safety net; the test releases it
		}
		_, _ = io.WriteString(w, "finished")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var beginCalls atomic.Int32
	begun := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		served <- httpserver.Serve(ctx, httpserver.NewHTTPServer(h, slog.New(slog.DiscardHandler)), ln, httpserver.ShutdownPlan{
			Begin: func() {
				if beginCalls.Add(1) == 1 {
					close(begun)
				}
			},
			Timeout: 30 * time.Second,
		})
	}()

	type result struct {
		code int
		body string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		inflight <- result{resp.StatusCode, string(b), err}
	}()

	select {
	case <-started:
	case r := <-inflight:
		t.Fatalf("request finished before it started: %+v", r)
	case <-time.After(30 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	cancel()
	select {
	case <-begun:
	case <-time.After(30 * time.Second):
		t.Fatal("ShutdownPlan.Begin was not called")
	}
	// New connections are refused once draining has begun (no delay), while the old request is
	// in flight.
	waitFor(t, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	close(release)

	select {
	case r := <-inflight:
		if r.err != nil || r.code != http.StatusOK || r.body != "finished" {
			t.Errorf("in-flight request: %d %q %v, want 200 finished", r.code, r.body, r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the in-flight request never completed")
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return")
	}
	if n := beginCalls.Load(); n != 1 {
		t.Errorf("Begin called %d times, want 1", n)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after Serve returned")
	}
}

// With a shutdown delay, readiness turns off first while the server keeps taking new
// connections, so a load balancer has time to notice; only then does the listener close.
func TestServeShutdownDelay(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	// What happens during the delay is only checkable while the delay lasts. A machine too
	// slow to make three local requests within it gets a longer delay, not a failure.
	for _, delay := range []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second} {
		if shutdownDelayScenario(t, st, delay) {
			return
		}
		t.Logf("the %v delay ran out before the checks were done; trying a longer one", delay)
	}
	t.Fatal("could not check the shutdown delay even with a 30s delay")
}

// shutdownDelayScenario reports false when the delay ran out before the checks were done.
func shutdownDelayScenario(t *testing.T, st *store.Store, delay time.Duration) bool {
	t.Helper()
	logger, _ := newLogger()
	s := httpserver.New(httpserver.Deps{Store: st, Logger: logger})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := make(chan time.Time, 1)
	served := make(chan error, 1)
	go func() {
		served <- httpserver.Serve(ctx, httpserver.NewHTTPServer(s.Handler(), logger), ln, httpserver.ShutdownPlan{
			Begin: func() {
				s.BeginShutdown()
				began <- time.Now()
			},
			Delay:   delay,
			Timeout: 30 * time.Second,
		})
	}()
	// A fresh connection per request: the point is that the listener still takes new ones.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	fetch := func(path string) (int, string, error) {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	if code, body, err := fetch("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before shutdown = %d %q %v, want 200", code, body, err)
	}

	cancel()
	var begin time.Time
	select {
	case begin = <-began:
	case err := <-served:
		t.Fatalf("Serve returned %v before calling Begin", err)
	case <-time.After(30 * time.Second):
		t.Fatal("ShutdownPlan.Begin was not called")
	}
	checks := []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/readyz", http.StatusServiceUnavailable, "shutting down"},
		{"/healthz", http.StatusOK, "ok"},
		{"/", http.StatusOK, "Open this app from Untis"},
	}
	for _, c := range checks {
		code, body, err := fetch(c.path)
		if err != nil || code != c.wantCode || !strings.Contains(body, c.wantBody) {
			if time.Since(begin) >= delay {
				<-served
				return false
			}
			t.Fatalf("GET %s during the shutdown delay = %d %q %v; want %d with %q", c.path, code, body, err, c.wantCode, c.wantBody)
		}
	}

	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve returned %v, want nil", err)
		}
		// A lower bound only: the listener must not close before the delay is over.
		if waited := time.Since(begin); waited < delay {
			t.Errorf("Serve returned %v after Begin, before the %v delay was over", waited, delay)
		}
	case <-time.After(delay + 60*time.Second):
		t.Fatal("Serve did not return after the delay")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after Serve returned")
	}
	return true
}

// A drain that outlasts its timeout returns ErrDrainTimeout, and the stuck connection is closed.
func TestServeDrainTimeout(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	var once sync.Once
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		<-release // never released while the test looks
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() {
		// The handler never finishes, so any timeout runs out; a short one keeps the test fast.
		served <- httpserver.Serve(ctx, httpserver.NewHTTPServer(h, slog.New(slog.DiscardHandler)), ln, httpserver.ShutdownPlan{Timeout: 50 * time.Millisecond})
	}()
	client := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/stuck")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		client <- err
	}()
	select {
	case <-started:
	case err := <-client:
		t.Fatalf("the request ended before reaching the handler: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the request never reached the handler")
	}
	cancel()
	select {
	case err := <-served:
		if !errors.Is(err, httpserver.ErrDrainTimeout) {
			t.Errorf("Serve = %v, want ErrDrainTimeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its drain timeout")
	}
	select {
	case err := <-client:
		if err == nil {
			t.Error("the stuck request completed; want its connection closed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck connection was not closed")
	}
}

// A listener that fails is reported, not mistaken for a clean stop.
func TestServeListenerError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	err = httpserver.Serve(context.Background(), httpserver.NewHTTPServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler)), ln, httpserver.ShutdownPlan{Timeout: time.Second})
	if err == nil || errors.Is(err, httpserver.ErrDrainTimeout) {
		t.Fatalf("Serve on a closed listener = %v, want a listener error", err)
	}
}
