package httpserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/setup"
)

// upstream is the partner's app in the gateway tests: an httptest server that records every
// request it receives, with a few paths that behave like real apps (downloads, uploads, event
// streams, a WebSocket echo, a slow answer, cookies).
type upstream struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	Method, Path, RequestURI, Host string
	Header                         http.Header
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.hits.Add(1)
	u.mu.Lock()
	u.seen = append(u.seen, seenRequest{Method: r.Method, Path: r.URL.Path, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()})
	u.mu.Unlock()
	q := r.URL.Query()
	switch r.URL.Path {
	case "/ws":
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), msg...)); err != nil {
				return
			}
		}
	case "/download":
		n, _ := strconv.ParseInt(q.Get("size"), 10, 64)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = byte(i)
		}
		for n > 0 {
			k := min(n, int64(len(chunk)))
			if _, err := w.Write(chunk[:k]); err != nil {
				return
			}
			n -= k
		}
	case "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n)
	case "/events":
		// An event stream: one event every interval, count times.
		count, _ := strconv.Atoi(q.Get("count"))
		interval, _ := time.ParseDuration(q.Get("every"))
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := range count {
			fmt.Fprintf(w, "data: %d\n\n", i)
			_ = rc.Flush()
			select {
			case <-time.After(interval):
			case <-r.Context().Done():
				return
			}
		}
	case "/slow":
		select {
		case <-time.After(20 * time.Second):
		case <-r.Context().Done():
		}
	case "/stall":
		// Headers and a first part, then nothing.
		w.Header().Set("Content-Length", "1000")
		_, _ = w.Write([]byte(strings.Repeat("x", 100)))
		_ = http.NewResponseController(w).Flush()
		select {
		case <-time.After(20 * time.Second):
		case <-r.Context().Done():
		}
	case "/cookies":
		w.Header().Add("Set-Cookie", "app2=fine; Path=/")
		w.Header().Add("Set-Cookie", "__Host-untis-session=planted; Path=/; Secure; HttpOnly")
		w.Header().Add("Set-Cookie", "__Host-untis-flow-x=; Max-Age=0; Path=/; Secure")
		fmt.Fprint(w, "cookies set")
	default:
		w.Header().Set("X-App", "yes")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "app page %s", r.URL.Path)
	}
}

// last returns the last request the app received.
func (u *upstream) last(t testing.TB) seenRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the app received no request")
	}
	return u.seen[len(u.seen)-1]
}

// lastFor returns the last request the app received for path.
func (u *upstream) lastFor(t testing.TB, path string) seenRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.seen) - 1; i >= 0; i-- {
		if u.seen[i].Path == path {
			return u.seen[i]
		}
	}
	t.Fatalf("the app received no request for %s", path)
	return seenRequest{}
}

// gatewayEnv is a signinEnv whose replicas run in gateway mode in front of an upstream.
type gatewayEnv struct {
	*signinEnv
	up    *upstream
	clock *testClock // the assertion signer's and the identity cache's clock

	mu         sync.Mutex
	signers    map[*instance]*assertion.Signer
	identities map[*instance]*gateway.Identities
}

type gatewayOptions struct {
	public, landing string
	maxBody         int64
	upstreamTimeout time.Duration
	idle            time.Duration
	// upstreamURL replaces the recording upstream (an address where nothing answers).
	upstreamURL string
	// forwardAuthOnly runs the replicas without UPSTREAM_URL (the built-in app with forward-auth).
	forwardAuthOnly bool
	// serverTimeout, when set, is every replica's ReadTimeout and WriteTimeout (production: 15s
	// and 30s), to prove proxied exchanges outlive them.
	serverTimeout time.Duration
	setupFields   setup.Fields
	// brand names the app on the server's own pages (APP_NAME, APP_ACCENT_COLOR, ...).
	brand httpserver.Branding
	// embed runs the replicas in embed mode (EMBED_MODE=true).
	embed bool
	// sessionCacheTTL is SESSION_CACHE_TTL (zero: off).
	sessionCacheTTL time.Duration
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newGatewayEnv(t testing.TB, o gatewayOptions) *gatewayEnv {
	t.Helper()
	g := &gatewayEnv{
		up: newUpstream(t), clock: &testClock{now: time.Now()},
		signers: map[*instance]*assertion.Signer{}, identities: map[*instance]*gateway.Identities{},
	}
	upURL := g.up.srv.URL
	if o.upstreamURL != "" {
		upURL = o.upstreamURL
	}
	rules, err := gateway.ParsePathRules(o.public)
	if err != nil {
		t.Fatal(err)
	}
	landing, err := gateway.ParseLanding(o.landing)
	if err != nil {
		t.Fatal(err)
	}
	if o.maxBody == 0 {
		o.maxBody = gateway.DefaultMaxBody
	}
	if o.upstreamTimeout == 0 {
		o.upstreamTimeout = gateway.DefaultUpstreamTimeout
	}
	if o.idle == 0 {
		o.idle = gateway.DefaultIdleTimeout
	}
	opts := signinOptions{setupFields: o.setupFields, embed: o.embed, sessionCacheTTL: o.sessionCacheTTL}
	opts.deps = func(in *instance, publicURL string, d *httpserver.Deps) {
		signer, err := assertion.New(context.Background(), assertion.Config{
			Store: in.store, Issuer: publicURL, Audience: publicURL, Now: g.clock.Now, Refresh: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := gateway.NewIdentities(gateway.IdentitiesConfig{Signer: signer, Setup: in.store, Now: g.clock.Now})
		g.mu.Lock()
		g.signers[in], g.identities[in] = signer, ids
		g.mu.Unlock()
		d.Identities, d.JWKS, d.Landing, d.Brand = ids, signer, landing, o.brand
		if !o.forwardAuthOnly {
			up, _ := url.Parse(upURL)
			pub, _ := url.Parse(publicURL)
			d.Proxy = &gateway.ProxyConfig{
				Upstream: up, PublicURL: pub, Public: rules, MaxBody: o.maxBody,
				UpstreamTimeout: o.upstreamTimeout, IdleTimeout: o.idle,
			}
		}
	}
	if o.serverTimeout > 0 {
		opts.httpServer = func(s *http.Server) {
			s.ReadTimeout, s.WriteTimeout = o.serverTimeout, o.serverTimeout
		}
	}
	g.signinEnv = newSigninEnv(t, opts)
	return g
}

func (g *gatewayEnv) signer(in *instance) *assertion.Signer {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.signers[in]
}

// signIn signs a user in through an entry point's launch (extra launch parameters in kv) and
// returns the browser and the last answer (the app's page the sign-in landed on).
func (g *gatewayEnv) signIn(tid, userID string, kv ...string) (*browser, answer) {
	g.t.Helper()
	b := g.browser()
	b.signInAs(tid, userID)
	return b, b.launch(launchQuery(tid, kv...))
}

// decoded returns the identity headers a request carried, percent-decoded.
func decoded(t testing.TB, h http.Header) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range gateway.IdentityHeaders {
		vs := h.Values(name)
		if len(vs) != 1 {
			t.Errorf("%s arrived %d times: %q", name, len(vs), vs)
			continue
		}
		v := vs[0]
		if name != gateway.HeaderLaunch && name != gateway.HeaderSetup && name != gateway.HeaderIdentity {
			d, err := url.PathUnescape(v)
			if err != nil {
				t.Errorf("%s = %q does not decode: %v", name, v, err)
			}
			v = d
		}
		out[name] = v
	}
	return out
}

// untisHeaders lists every header name of h that looks like ours in any spelling.
func untisHeaders(h http.Header) []string {
	var out []string
	for k := range h {
		if strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-untis") {
			out = append(out, k)
		}
	}
	return out
}

// verifyAssertion checks an X-Untis-Identity token the way an app does with go-jose: against the
// JWKS the server publishes at /.well-known/jwks.json, for the expected issuer and audience, at
// the given time.
func verifyAssertion(t testing.TB, base, token string, at time.Time, aud string) (assertion.Claims, error) {
	t.Helper()
	resp, err := http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d %v", resp.StatusCode, err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return assertion.Claims{}, err
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return assertion.Claims{}, errors.New("kid not in the JWKS")
	}
	var c assertion.Claims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		return assertion.Claims{}, err
	}
	return c, c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: base, AnyAudience: jwt.Audience{aud}, Time: at}, 0)
}
