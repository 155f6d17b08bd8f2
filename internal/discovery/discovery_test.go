package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/metrics"
)

// clock is a clock the test moves.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// platform serves discovery documents: status (200 unless set), the document edited by edit,
// after hold (when set) is closed.
type platform struct {
	srv      *httptest.Server
	requests atomic.Int64
	status   atomic.Int64
	edit     atomic.Pointer[func(map[string]any)]
	hold     atomic.Pointer[chan struct{}]
}

func newPlatform(t *testing.T) *platform {
	p := &platform{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if h := p.hold.Load(); h != nil {
			<-*h
		}
		tid, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/WebUntis/api/sso/v3/"), "/.well-known/openid-configuration")
		if !ok {
			http.NotFound(w, r)
			return
		}
		if s := p.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		iss := p.srv.URL + "/WebUntis/api/sso/v3/" + tid
		doc := map[string]any{
			"issuer": iss, "jwks_uri": iss + "/jwks", "authorization_endpoint": iss + "/authorize",
			"token_endpoint": iss + "/token", "token_endpoint_auth_methods_supported": []string{"client_secret_post", "client_secret_basic"},
		}
		if e := p.edit.Load(); e != nil {
			(*e)(doc)
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *platform) setEdit(f func(map[string]any)) { p.edit.Store(&f) }

func newCache(t *testing.T, p *platform, reg *metrics.Registry) (*Cache, *clock) {
	t.Helper()
	api, _ := url.Parse(p.srv.URL)
	clk := &clock{now: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
	c, err := New(Config{APIURL: api, HTTPClient: p.srv.Client(), Now: clk.Now, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

// TestCacheLifetime: a document is fetched once and trusted for the TTL; a failure is
// remembered for RetryAfter only; Invalidate and InvalidateAll forget at once; Fetch never
// reads or fills the cache.
func TestCacheLifetime(t *testing.T) {
	t.Parallel()
	p := newPlatform(t)
	reg := metrics.NewRegistry()
	c, clk := newCache(t, p, reg)
	ctx := context.Background()
	get := func(what string, wantRequests int64) (*Document, error) {
		t.Helper()
		d, err := c.Get(ctx, "1001")
		if n := p.requests.Load(); n != wantRequests {
			t.Fatalf("%s: %d requests, want %d", what, n, wantRequests)
		}
		return d, err
	}
	d1, err := get("first", 1)
	if err != nil || d1.TokenEndpoint != p.srv.URL+"/WebUntis/api/sso/v3/1001/token" || d1.JWKSURL == "" {
		t.Fatalf("first: %+v %v", d1, err)
	}
	clk.Advance(DefaultTTL - time.Second)
	if d, _ := get("within the TTL", 1); d != d1 {
		t.Error("a cached document was not the same document")
	}
	clk.Advance(time.Second)
	p.status.Store(http.StatusServiceUnavailable)
	if _, err := get("after the TTL, platform down", 2); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("down: %v, want ErrUnreachable", err)
	}
	p.status.Store(0)
	clk.Advance(RetryAfter - time.Second)
	if _, err := get("failure remembered", 2); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("within RetryAfter: %v", err)
	}
	clk.Advance(time.Second)
	if _, err := get("after RetryAfter", 3); err != nil {
		t.Fatal(err)
	}
	c.Invalidate("1001")
	get("after Invalidate", 4)
	c.InvalidateAll()
	get("after InvalidateAll", 5)
	for range 2 {
		if _, err := c.Fetch(ctx, "1001"); err != nil {
			t.Fatal(err)
		}
	}
	get("after two uncached fetches", 7)
	var b strings.Builder
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if m := b.String(); !strings.Contains(m, `sso_discovery_fetches_total{outcome="ok"} 6`) ||
		!strings.Contains(m, `sso_discovery_fetches_total{outcome="error"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
}

// TestConcurrentCallersShareOneFetch: callers arriving while a fetch runs wait for it; one that
// gives up gets its context's error and does not fail the fetch for the others.
func TestConcurrentCallersShareOneFetch(t *testing.T) {
	t.Parallel()
	p := newPlatform(t)
	c, _ := newCache(t, p, nil)
	hold := make(chan struct{})
	p.hold.Store(&hold)
	impatient, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := c.Get(impatient, "1001")
		first <- err
	}()
	for p.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	var wg sync.WaitGroup
	docs := make(chan *Document, 20)
	for range 20 {
		wg.Go(func() {
			d, err := c.Get(context.Background(), "1001")
			if err != nil {
				t.Error(err)
			}
			docs <- d
		})
	}
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller who gave up: %v", err)
	}
	close(hold)
	wg.Wait()
	close(docs)
	var d0 *Document
	for d := range docs {
		if d == nil || (d0 != nil && d != d0) {
			t.Fatal("callers got different documents")
		}
		d0 = d
	}
	if n := p.requests.Load(); n != 1 {
		t.Errorf("%d requests for 21 callers, want 1", n)
	}
}

// TestDocumentChecks: what a document may name, and what each failure is.
func TestDocumentChecks(t *testing.T) {
	t.Parallel()
	p := newPlatform(t)
	c, _ := newCache(t, p, nil)
	base := p.srv.URL + "/WebUntis/api/sso/v3/1001"
	for _, tc := range []struct {
		name    string
		edit    func(d map[string]any)
		want    error // nil: accepted
		token   string
		methods []string
	}{
		{"as documented", nil, nil, base + "/token", []string{ClientSecretPost, ClientSecretBasic}},
		{"other paths", func(d map[string]any) { d["token_endpoint"] = base + "/oauth/token" }, nil, base + "/oauth/token", []string{ClientSecretPost, ClientSecretBasic}},
		{"no token_endpoint, no methods", func(d map[string]any) {
			delete(d, "token_endpoint")
			delete(d, "token_endpoint_auth_methods_supported")
		}, nil, base + "/token", nil},
		{"unusable methods dropped, duplicates once", func(d map[string]any) {
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt", "client_secret_basic", "client_secret_basic"}
		}, nil, base + "/token", []string{ClientSecretBasic}},
		{"token endpoint elsewhere", func(d map[string]any) { d["token_endpoint"] = "https://evil.example/token" }, ErrUntrusted, "", nil},
		{"jwks elsewhere", func(d map[string]any) { d["jwks_uri"] = "http://evil.example/jwks" }, ErrUntrusted, "", nil},
		{"authorize with a fragment", func(d map[string]any) { d["authorization_endpoint"] = base + "/auth#x" }, ErrUntrusted, "", nil},
		{"only private_key_jwt", func(d map[string]any) { d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt"} }, ErrAuthMethodUnsupported, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.edit != nil {
				p.setEdit(tc.edit)
			} else {
				p.setEdit(func(map[string]any) {})
			}
			d, err := c.Fetch(context.Background(), "1001")
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.TokenEndpoint != tc.token || strings.Join(d.AuthMethods, ",") != strings.Join(tc.methods, ",") {
				t.Errorf("token endpoint %s, methods %v", d.TokenEndpoint, d.AuthMethods)
			}
		})
	}
	for _, tc := range []struct {
		name string
		edit func(d map[string]any)
	}{
		{"another issuer", func(d map[string]any) { d["issuer"] = "https://evil.example" }},
		{"no jwks_uri", func(d map[string]any) { delete(d, "jwks_uri") }},
		{"over 64 KiB", func(d map[string]any) { d["padding"] = strings.Repeat("x", MaxBytes) }},
	} {
		p.setEdit(tc.edit)
		if _, err := c.Fetch(context.Background(), "1001"); err == nil || errors.Is(err, ErrUnreachable) {
			t.Errorf("%s: %v, want a broken document (no fallback)", tc.name, err)
		}
	}
	before := p.requests.Load()
	for _, tid := range []string{"../1001", "1001/x", "", strings.Repeat("1", 65)} {
		if _, err := c.Get(context.Background(), tid); err == nil {
			t.Errorf("tenant id %q accepted", tid)
		}
	}
	if p.requests.Load() != before {
		t.Error("a malformed tenant id reached the platform")
	}
}

// TestClientAuth: the caller's preference when the document lists it or nothing, the other one
// when it lists only that.
func TestClientAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		listed          []string
		preferPost      string
		preferBasicGets string
	}{
		{nil, ClientSecretPost, ClientSecretBasic},
		{[]string{ClientSecretPost, ClientSecretBasic}, ClientSecretPost, ClientSecretBasic},
		{[]string{ClientSecretBasic}, ClientSecretBasic, ClientSecretBasic},
		{[]string{ClientSecretPost}, ClientSecretPost, ClientSecretPost},
	} {
		d := &Document{AuthMethods: tc.listed}
		if got := d.ClientAuth(ClientSecretPost); got != tc.preferPost {
			t.Errorf("%v, preferring post: %s", tc.listed, got)
		}
		if got := d.ClientAuth(ClientSecretBasic); got != tc.preferBasicGets {
			t.Errorf("%v, preferring basic: %s", tc.listed, got)
		}
	}
}
