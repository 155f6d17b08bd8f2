package exampleapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	testIssuer   = "https://partner.example.com"
	testAudience = "untis-partner-app"
)

// gateway stands in for the server's gateway: an ES256 key pair, its JWKS served over HTTP (it
// counts the fetches), and the headers it would set.
type gateway struct {
	t       *testing.T
	kid     string
	key     *ecdsa.PrivateKey
	jwks    *httptest.Server
	fetches atomic.Int32
	paths   sync.Map // the paths the JWKS was fetched at
	mu      sync.Mutex
	keys    []jose.JSONWebKey
}

func newGateway(t *testing.T) *gateway {
	g := &gateway{t: t, kid: "k1", key: newKey(t)}
	g.publish(g.kid, g.key)
	g.jwks = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.fetches.Add(1)
		g.paths.Store(r.URL.Path, true)
		g.mu.Lock()
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: g.keys})
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(g.jwks.Close)
	return g
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publish adds a key's public half to the JWKS.
func (g *gateway) publish(kid string, k *ecdsa.PrivateKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys = append(g.keys, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"})
}

// user is what the gateway knows of a signed-in user.
type user struct {
	tenant, sub, role, given, family, email, school string
	launch, setup                                   map[string]string
}

var jurgen = user{
	tenant: "1001", sub: "t-4711", role: "teacher", given: "Jürgen", family: "Weiß-Ørsted", email: "j.weiss@schule.example",
	school: "Grundschule Süd & Nord", launch: map[string]string{"lesson_id": "L 42", "return_to": "/klasse?x=1&y=ä"},
	setup: map[string]string{"district": "Nord"},
}

// claimsOf are the claims the gateway signs for u.
func claimsOf(u user, now time.Time) claims {
	return claims{
		Claims: jwt.Claims{
			Issuer: testIssuer, Subject: u.tenant + "/" + u.sub, Audience: jwt.Audience{testAudience},
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
			Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
		},
		TenantID: u.tenant, UserID: u.sub, Role: u.role, GivenName: u.given, FamilyName: u.family,
		Email: u.email, SchoolName: u.school, Launch: u.launch, Setup: u.setup,
	}
}

// sign signs c with key under kid, as ES256 (or alg, when given).
func sign(t *testing.T, kid string, key any, c claims, alg jose.SignatureAlgorithm) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// headers are the identity headers the gateway sets for u, with token.
func headers(u user, token string) http.Header {
	enc := url.PathEscape
	form := func(m map[string]string) string {
		v := url.Values{}
		for k, x := range m {
			v.Set(k, x)
		}
		return v.Encode()
	}
	h := http.Header{}
	h.Set(HeaderTenantID, u.tenant)
	h.Set(HeaderUserID, enc(u.sub))
	h.Set(HeaderRole, u.role)
	h.Set(HeaderGivenName, enc(u.given))
	h.Set(HeaderFamilyName, enc(u.family))
	h.Set(HeaderEmail, enc(u.email))
	h.Set(HeaderSchoolName, enc(u.school))
	h.Set(HeaderLaunch, form(u.launch))
	h.Set(HeaderSetup, form(u.setup))
	if token != "" {
		h.Set(HeaderIdentity, token)
	}
	return h
}

// newApp starts the example app against g's JWKS.
func newApp(t *testing.T, g *gateway) (*app, *httptest.Server) {
	a := &app{verifier: newVerifier(g.jwks.URL, testIssuer, testAudience), log: slog.New(slog.DiscardHandler), events: &eventLog{}}
	srv := httptest.NewServer(a.routes())
	t.Cleanup(srv.Close)
	return a, srv
}

func get(t *testing.T, u string, h http.Header) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

var tags = regexp.MustCompile(`<[^>]*>`)

// text is a page's visible text, entities decoded and spaces collapsed.
func text(page string) string {
	return strings.Join(strings.Fields(html.UnescapeString(tags.ReplaceAllString(page, " "))), " ")
}

func TestPageShowsTheVerifiedUserWithUmlauts(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	tok := sign(t, g.kid, g.key, claimsOf(jurgen, time.Now()), jose.ES256)
	code, h, page := get(t, srv.URL+"/klasse?x=1", headers(jurgen, tok))
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("GET / = %d %v", code, h)
	}
	txt := text(page)
	for _, want := range []string{
		"Jürgen Weiß-Ørsted", "Signed in at Grundschule Süd & Nord", "teacher", "j.weiss@schule.example", "school 1001",
		"✓ identity verified", "signed by the gateway's key k1",
		"sub 1001/t-4711", "tenant_id 1001", "user_id t-4711", "given_name Jürgen", "family_name Weiß-Ørsted",
		"school_name Grundschule Süd & Nord", "launch lesson_id = L 42; return_to = /klasse?x=1&y=ä", "setup district = Nord",
		"lesson_id L 42", "return_to /klasse?x=1&y=ä", "district Nord", "Path requested: /klasse",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("page lacks %q:\n%s", want, txt)
		}
	}
	for _, bad := range []string{"not verified", "No identity headers", "say something else"} {
		if strings.Contains(txt, bad) {
			t.Errorf("page says %q", bad)
		}
	}
	// No inline script or style: the page keeps to its own CSP.
	if strings.Contains(page, "<script>") || strings.Contains(page, "style=") || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("inline script or style, or no CSP (%q)", h.Get("Content-Security-Policy"))
	}
	// A second page view uses the cached JWKS.
	get(t, srv.URL+"/", headers(jurgen, tok))
	if n := g.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times for two views", n)
	}
}

func TestPageSaysWhyTheTokenFails(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	now := time.Now()
	expired := claimsOf(jurgen, now.Add(-10*time.Minute))
	wrongAud := claimsOf(jurgen, now)
	wrongAud.Audience = jwt.Audience{"someone-else"}
	wrongIss := claimsOf(jurgen, now)
	wrongIss.Issuer = "https://evil.example"
	noExp := claimsOf(jurgen, now)
	noExp.Expiry = nil
	otherSub := claimsOf(jurgen, now)
	otherSub.Subject = "t-4711"
	valid := sign(t, g.kid, g.key, claimsOf(jurgen, now), jose.ES256)
	parts := strings.Split(valid, ".")
	// The payload of a valid token, with another user's id in it, under the valid signature.
	forgedClaims := claimsOf(jurgen, now)
	forgedClaims.UserID, forgedClaims.Subject = "admin-1", "1001/admin-1"
	forgedPayload := strings.Split(sign(t, g.kid, newKey(t), forgedClaims, jose.ES256), ".")[1]
	hmacKey := []byte("0123456789abcdef0123456789abcdef")

	for _, tc := range []struct {
		name, token, want string
	}{
		{"missing", "", "no X-Untis-Identity header came with the request"},
		{"expired", sign(t, g.kid, g.key, expired, jose.ES256), "the token expired at"},
		{"another audience", sign(t, g.kid, g.key, wrongAud, jose.ES256), `the audience is ["someone-else"], expected "untis-partner-app"`},
		{"another issuer", sign(t, g.kid, g.key, wrongIss, jose.ES256), `the issuer is "https://evil.example"`},
		{"no exp", sign(t, g.kid, g.key, noExp, jose.ES256), "the token has no exp or iat claim"},
		{"sub not tenant/user", sign(t, g.kid, g.key, otherSub, jose.ES256), `sub "t-4711" is not tenant_id/user_id`},
		{"signed by another key under the gateway's kid", sign(t, g.kid, newKey(t), claimsOf(jurgen, now), jose.ES256), "the signature does not verify with the gateway's key k1"},
		{"claims swapped under a valid signature", parts[0] + "." + forgedPayload + "." + parts[2], "the signature does not verify"},
		{"unknown kid", sign(t, "k-evil", newKey(t), claimsOf(jurgen, now), jose.ES256), `the gateway's JWKS has no key "k-evil"`},
		{"HS256", sign(t, g.kid, hmacKey, claimsOf(jurgen, now), jose.HS256), "the token is not a compact ES256 JWS"},
		{"garbage", "not.a.jwt", "the token is not a compact ES256 JWS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, page := get(t, srv.URL+"/", headers(jurgen, tc.token))
			txt := text(page)
			if code != http.StatusOK || !strings.Contains(txt, "✗ identity not verified") || strings.Contains(txt, "✓ identity verified") {
				t.Fatalf("%d:\n%s", code, txt)
			}
			if !strings.Contains(txt, tc.want) {
				t.Errorf("reason lacks %q:\n%s", tc.want, txt)
			}
			if tc.token != "" && !strings.Contains(txt, "Unproven: the headers say Signed in") {
				t.Errorf("the unverified user is not marked as unproven:\n%s", txt)
			}
			// The headers are still shown: the page says what it got, and that it is unproven.
			if !strings.Contains(txt, "Jürgen Weiß-Ørsted") {
				t.Errorf("the headers' name is not shown:\n%s", txt)
			}
		})
	}
}

func TestHeadersThatDisagreeWithTheTokenAreNamed(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	tok := sign(t, g.kid, g.key, claimsOf(jurgen, time.Now()), jose.ES256)
	h := headers(jurgen, tok)
	h.Set(HeaderRole, "administrator")
	h.Add(HeaderUserID, "admin-1") // a second value
	_, _, page := get(t, srv.URL+"/", h)
	txt := text(page)
	for _, want := range []string{"✓ identity verified", "these headers say something else than the token: X-Untis-Role", "X-Untis-User-Id came 2 times"} {
		if !strings.Contains(txt, want) {
			t.Errorf("page lacks %q:\n%s", want, txt)
		}
	}
}

func TestWithoutGatewayThePageSaysSo(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	code, _, page := get(t, srv.URL+"/", nil)
	txt := text(page)
	if code != http.StatusOK || !strings.Contains(txt, "No identity headers") || !strings.Contains(txt, "did not come through the Untis gateway") {
		t.Errorf("%d:\n%s", code, txt)
	}
	if strings.Contains(txt, "verified") || strings.Contains(txt, "Signed in") {
		t.Errorf("an anonymous page claims a user:\n%s", txt)
	}
	if g.fetches.Load() != 0 {
		t.Error("the JWKS was fetched for a request without a token")
	}
	// Headers that are not encoded as documented are reported, not shown half-decoded.
	h := http.Header{}
	h.Set(HeaderTenantID, "1001")
	h.Set(HeaderGivenName, "J%C3") // a truncated UTF-8 sequence
	h.Set(HeaderFamilyName, "%zz")
	h.Set(HeaderLaunch, "a=%ff")
	_, _, page = get(t, srv.URL+"/", h)
	txt = text(page)
	for _, want := range []string{
		"X-Untis-Given-Name is not percent-encoded UTF-8", "X-Untis-Family-Name is not percent-encoded UTF-8",
		"X-Untis-Launch is not form-encoded UTF-8", "no X-Untis-Identity header came with the request",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("page lacks %q:\n%s", want, txt)
		}
	}
}

func TestUnknownKeyIDRefetchesTheJWKSAtMostEvery30s(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	a, srv := newApp(t, g)
	now := time.Now()
	var clockNS atomic.Int64
	clockNS.Store(now.UnixNano())
	a.verifier.now = func() time.Time { return time.Unix(0, clockNS.Load()) }
	verify := func(tok string) string {
		_, _, page := get(t, srv.URL+"/", headers(jurgen, tok))
		return text(page)
	}
	if txt := verify(sign(t, g.kid, g.key, claimsOf(jurgen, now), jose.ES256)); !strings.Contains(txt, "✓ identity verified") {
		t.Fatal(txt)
	}
	// The gateway rotates: a token from the new key makes the app fetch the JWKS again, once.
	k2 := newKey(t)
	g.publish("k2", k2)
	clockNS.Add(int64(31 * time.Second))
	if txt := verify(sign(t, "k2", k2, claimsOf(jurgen, now), jose.ES256)); !strings.Contains(txt, "✓ identity verified") {
		t.Fatalf("after rotation: %s", txt)
	}
	if n := g.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after the rotation, want 2", n)
	}
	// Forged key ids do not make it fetch again within 30 s.
	for range 5 {
		verify(sign(t, rand.Text(), newKey(t), claimsOf(jurgen, now), jose.ES256))
	}
	if n := g.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after forged key ids, want 2", n)
	}
	clockNS.Add(int64(31 * time.Second))
	verify(sign(t, "k3", newKey(t), claimsOf(jurgen, now), jose.ES256))
	if n := g.fetches.Load(); n != 3 {
		t.Errorf("%d fetches 30 s later, want 3", n)
	}
}

func TestPublicPageAndHealth(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	code, _, page := get(t, srv.URL+"/public/", nil)
	if txt := text(page); code != http.StatusOK || !strings.Contains(txt, "Public page") || !strings.Contains(txt, "✓ none as it should be") {
		t.Errorf("/public/ = %d:\n%s", code, txt)
	}
	_, _, page = get(t, srv.URL+"/public/", headers(jurgen, ""))
	if !strings.Contains(text(page), "This request carries identity headers") {
		t.Errorf("/public/ with identity headers:\n%s", text(page))
	}
	if code, _, body := get(t, srv.URL+"/healthz", nil); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	for _, asset := range []string{"/public/assets/app.css", "/public/assets/echo.js"} {
		if code, h, _ := get(t, srv.URL+asset, nil); code != http.StatusOK || h.Get("Cache-Control") == "" {
			t.Errorf("%s = %d %v", asset, code, h)
		}
	}
}

func TestWebSocketEcho(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"

	h := headers(jurgen, "")
	h.Set("Origin", srv.URL)
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, greeting, err := c.Read(ctx)
	if err != nil || !strings.Contains(string(greeting), "Connected as Jürgen Weiß-Ørsted (teacher, school 1001)") {
		t.Fatalf("greeting %q, %v", greeting, err)
	}
	for _, msg := range []string{"hallo Welt", "ünïcödé ✓", strings.Repeat("x", 4000)} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != msg {
			t.Fatalf("echo of %.20q: %v %.20q %v", msg, typ, got, err)
		}
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if typ, got, err := c.Read(ctx); err != nil || typ != websocket.MessageBinary || string(got) != "\x00\x01\x02" {
		t.Fatalf("binary echo: %v %v %v", typ, got, err)
	}
	// A message over the limit closes the socket.
	if err := c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", wsMaxMessage+1))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("oversized message: %v", err)
	}

	// Without identity headers it says so; from another site's page it is refused; behind a
	// gateway that forwards its public host, that host's pages may connect.
	c2, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	if _, greeting, _ := c2.Read(ctx); !strings.Contains(string(greeting), "without identity headers") {
		t.Errorf("anonymous greeting %q", greeting)
	}
	_, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin socket: %v %v", resp, err)
	}
	c3, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{
		"Origin": {"https://partner.example.com"}, "X-Forwarded-Host": {"partner.example.com"}}})
	if err != nil {
		t.Fatalf("socket from the gateway's public origin: %v", err)
	}
	c3.CloseNow()
}

// With only the issuer given, the app expects what the gateway does by default: the audience is
// PUBLIC_URL too (IDENTITY_JWT_AUDIENCE's default) and the keys are at its
// /.well-known/jwks.json. A token for another audience still fails.
func TestNewDefaultsToTheGatewaysDefaults(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	h, err := New(Config{Issuer: g.jwks.URL})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := claimsOf(jurgen, time.Now())
	c.Issuer, c.Audience = g.jwks.URL, jwt.Audience{g.jwks.URL}
	_, _, page := get(t, srv.URL+"/", headers(jurgen, sign(t, g.kid, g.key, c, jose.ES256)))
	if txt := text(page); !strings.Contains(txt, "✓ identity verified") {
		t.Fatalf("a token for the gateway's default audience:\n%s", txt)
	}
	if _, ok := g.paths.Load("/.well-known/jwks.json"); !ok {
		t.Error("the JWKS was not fetched from the issuer's /.well-known/jwks.json")
	}
	c.Audience = jwt.Audience{testAudience}
	_, _, page = get(t, srv.URL+"/", headers(jurgen, sign(t, g.kid, g.key, c, jose.ES256)))
	if txt := text(page); !strings.Contains(txt, "the audience is") {
		t.Errorf("a token for another audience:\n%s", txt)
	}

	for _, bad := range []Config{{}, {Issuer: "http://localhost:8080", JWKSURL: "ftp://x/jwks"}, {Issuer: "::"}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}
