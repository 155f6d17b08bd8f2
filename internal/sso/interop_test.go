package sso

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/discovery"
	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

// opProxy stands between the server and the simulator, as the platform's own front would: it
// passes everything on, and lets a test take a school's discovery down, rewrite its discovery
// document, and see the token requests.
type opProxy struct {
	srv *httptest.Server

	mu      sync.Mutex
	down    map[string]bool
	rewrite map[string]func(doc map[string]any)
	tokens  []tokenRequest
}

// tokenRequest is what a token request carried: its path, whether it used HTTP Basic, and its
// form body.
type tokenRequest struct {
	path  string
	basic bool
	form  url.Values
}

func newOPProxy(t *testing.T, simURL string) *opProxy {
	target, _ := url.Parse(simURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	p := &opProxy{down: map[string]bool{}, rewrite: map[string]func(map[string]any){}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tid, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/WebUntis/api/sso/v3/"), "/")
		if !ok || !strings.HasPrefix(r.URL.Path, "/WebUntis/api/sso/v3/") {
			rp.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		down, rewrite := p.down[tid], p.rewrite[tid]
		p.mu.Unlock()
		switch {
		case rest == ".well-known/openid-configuration" && down:
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		case rest == ".well-known/openid-configuration" && rewrite != nil:
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			var doc map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				http.Error(w, "bad upstream", http.StatusBadGateway)
				return
			}
			rewrite(doc)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(doc)
			return
		case r.Method == http.MethodPost && strings.HasSuffix(rest, "token"):
			body, _ := io.ReadAll(r.Body)
			form, _ := url.ParseQuery(string(body))
			_, _, basic := r.BasicAuth()
			p.mu.Lock()
			p.tokens = append(p.tokens, tokenRequest{path: "/" + rest, basic: basic, form: form})
			p.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *opProxy) setDown(tid string, down bool) {
	p.mu.Lock()
	p.down[tid] = down
	p.mu.Unlock()
}

func (p *opProxy) setRewrite(tid string, f func(map[string]any)) {
	p.mu.Lock()
	p.rewrite[tid] = f
	p.mu.Unlock()
}

func (p *opProxy) lastToken(t *testing.T) tokenRequest {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.tokens) == 0 {
		t.Fatal("no token request was made")
	}
	return p.tokens[len(p.tokens)-1]
}

// ssoEnv is a sign-in service against the simulator (behind opProxy, whose URL is
// UNTIS_API_URL) and a real database.
type ssoEnv struct {
	t        *testing.T
	sim      *platformsim.Sim
	proxy    *opProxy
	store    *store.Store
	platform *platform.Clients
	svc      *Service
	reg      *metrics.Registry
	logs     *logtest.Buffer
	browser  *http.Client
}

const partnerBase = "http://partner.test"

func newSSOEnv(t *testing.T) *ssoEnv {
	t.Helper()
	sim, simSrv := simtest.NewServer(t, platformsim.Config{PartnerURL: partnerBase})
	e := &ssoEnv{t: t, sim: sim, proxy: newOPProxy(t, simSrv.URL), reg: metrics.NewRegistry()}
	sim.SetBaseURL(e.proxy.srv.URL) // issuers and endpoints name the platform's front
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	e.store, err = store.Open(context.Background(), pgtest.NewDatabase(t), kr, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.store.Close)
	var log *slog.Logger
	log, e.logs = logtest.New()
	api, _ := url.Parse(e.proxy.srv.URL)
	e.platform, err = platform.New(platform.Config{BaseURL: api, Store: e.store, Logger: log, Metrics: e.reg, Now: sim.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(Config{
		APIURL: api, RedirectURL: partnerBase + "/launch", Store: e.store, Platform: e.platform,
		Logger: log, Metrics: e.reg, Now: sim.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

// school adds a school to the simulator and stores it as activated, with the simulator's
// credentials, or with secret in place of its OIDC secret when given.
func (e *ssoEnv) school(t *testing.T, id string, o platformsim.InteropOptions, secretOverride string) string {
	t.Helper()
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: id, Name: "School " + id}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.SetInterop(id, o); err != nil {
		t.Fatal(err)
	}
	clientID, sec, pw, _ := e.sim.Credentials(id)
	if secretOverride != "" {
		sec = secretOverride
	}
	ctx := context.Background()
	if err := e.store.UpsertTenant(ctx, id, store.StateActive, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.AddCredentials(ctx, id, store.Credentials{ClientID: clientID, Secret: sec, Password: pw, Source: "webhook"}); err != nil {
		t.Fatal(err)
	}
	return id
}

// signIn runs a whole sign-in of the school's first teacher: Begin, the platform's authorize
// step, Complete. It returns the authorize URL Begin sent the browser to.
func (e *ssoEnv) signIn(t *testing.T, tid string) (string, Identity, error) {
	t.Helper()
	ctx := context.Background()
	st, err := e.svc.Begin(ctx, Launch{TenantID: tid, ReturnTo: "/"})
	if err != nil {
		return "", Identity{}, err
	}
	u, _ := e.sim.UserByRole(tid, platformsim.RoleTeacher)
	if err := e.sim.SetSignedInUser(tid, u.SourcedID); err != nil {
		t.Fatal(err)
	}
	resp, err := e.browser.Get(st.AuthorizeURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || !strings.HasPrefix(loc.String(), partnerBase+"/launch?") {
		t.Fatalf("authorize at %s answered %d to %q", st.AuthorizeURL, resp.StatusCode, resp.Header.Get("Location"))
	}
	id, err := e.svc.Complete(ctx, st.FlowID, loc.Query())
	return st.AuthorizeURL, id, err
}

func (e *ssoEnv) tenant(t *testing.T, tid string) store.Tenant {
	t.Helper()
	tn, err := e.store.Tenant(context.Background(), tid)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

func (e *ssoEnv) metricsText() string {
	var b strings.Builder
	if _, err := e.reg.WriteTo(&b); err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

// TestSignInAtDiscoveredEndpoints: the authorize and token endpoints, and the client
// authentication at the token endpoint, are the ones the school's discovery names. The
// simulator enforces them: documented paths are 404 for a school whose endpoints moved, and
// client_secret_post is invalid_client where only client_secret_basic is listed (Basic where
// only client_secret_post is). The school's server-to-server token comes from the same
// discovered token endpoint, with the same one discovery fetch: HTTP Basic, as Untis documents
// for that grant, unless the discovery lists only client_secret_post.
func TestSignInAtDiscoveredEndpoints(t *testing.T) {
	t.Parallel()
	e := newSSOEnv(t)
	for i, tc := range []struct {
		name             string
		o                platformsim.InteropOptions
		authPath, tokPth string
		basic            bool
	}{
		{"documented", platformsim.InteropOptions{}, "/authorize", "/token", false},
		{"other paths", platformsim.InteropOptions{AlternativeEndpoints: true}, "/auth", "/oauth/token", false},
		{"basic only", platformsim.InteropOptions{BasicAuthOnly: true}, "/authorize", "/token", true},
		{"other paths and basic only", platformsim.InteropOptions{AlternativeEndpoints: true, BasicAuthOnly: true}, "/auth", "/oauth/token", true},
		{"post only", platformsim.InteropOptions{PostAuthOnly: true}, "/authorize", "/token", false},
		{"other paths and post only", platformsim.InteropOptions{AlternativeEndpoints: true, PostAuthOnly: true}, "/auth", "/oauth/token", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tid := e.school(t, string(rune('1'+i))+"101", tc.o, "")
			authURL, id, err := e.signIn(t, tid)
			if err != nil {
				t.Fatalf("sign-in: %v", err)
			}
			u, _ := url.Parse(authURL)
			if want := "/WebUntis/api/sso/v3/" + tid + tc.authPath; u.Path != want {
				t.Errorf("authorize at %s, want %s", u.Path, want)
			}
			if id.User.TenantID != tid || id.User.Sub == "" {
				t.Errorf("identity %+v", id.User)
			}
			tr := e.proxy.lastToken(t)
			if tr.path != tc.tokPth {
				t.Errorf("token request at %s, want %s", tr.path, tc.tokPth)
			}
			// One way of client authentication, never both.
			_, secretInBody := tr.form["client_secret"]
			if tr.basic != tc.basic || secretInBody == tc.basic {
				t.Errorf("token request: Basic %v, client_secret in body %v; want Basic %v only", tr.basic, secretInBody, tc.basic)
			}
			if tc.basic && tr.form.Has("client_id") {
				t.Error("client_secret_basic request also names client_id in the body")
			}

			if _, err := platform.Collect(e.platform.For(tid).Schools(context.Background(), platform.ListOptions{})); err != nil {
				t.Fatalf("server-to-server call: %v", err)
			}
			cc := e.proxy.lastToken(t)
			if cc.form.Get("grant_type") != "client_credentials" || cc.path != tc.tokPth {
				t.Errorf("client-credentials token at %s (grant %q), want %s", cc.path, cc.form.Get("grant_type"), tc.tokPth)
			}
			wantBasic := !tc.o.PostAuthOnly
			if _, inBody := cc.form["client_secret"]; cc.basic != wantBasic || inBody == wantBasic {
				t.Errorf("client-credentials token: Basic %v, client_secret in body %v; want Basic %v only", cc.basic, inBody, wantBasic)
			}
			if n := e.sim.Stats().DiscoveryFetches[tid]; n != 1 {
				t.Errorf("%d discovery fetches for a sign-in and a server-to-server token, want 1", n)
			}
			if tn := e.tenant(t, tid); tn.CredentialsFailingSince != nil {
				t.Errorf("credentials marked failing: %s", tn.CredentialsFailureReason)
			}
		})
	}
}

// TestDiscoveryFallbackAndRefusals: endpoints the discovery does not name are the documented
// ones; an unreachable discovery still lets a sign-in start at the documented authorize
// endpoint; endpoints off UNTIS_API_URL, or no client authentication we can do, refuse the
// school's sign-in before any flow starts, with their own reason.
func TestDiscoveryFallbackAndRefusals(t *testing.T) {
	t.Parallel()
	e := newSSOEnv(t)
	ctx := context.Background()
	flows := func(tid string) int {
		var n int
		if err := e.store.Pool().QueryRow(ctx, `SELECT count(*) FROM auth_flows WHERE tenant_id = $1`, tid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("fields missing", func(t *testing.T) {
		tid := e.school(t, "2201", platformsim.InteropOptions{}, "")
		e.proxy.setRewrite(tid, func(doc map[string]any) {
			delete(doc, "authorization_endpoint")
			delete(doc, "token_endpoint")
			delete(doc, "token_endpoint_auth_methods_supported")
		})
		authURL, _, err := e.signIn(t, tid)
		if err != nil {
			t.Fatalf("sign-in: %v", err)
		}
		if !strings.HasSuffix(authURL[:strings.Index(authURL, "?")], "/"+tid+"/authorize") {
			t.Errorf("authorize at %s", authURL)
		}
		if tr := e.proxy.lastToken(t); !strings.HasSuffix(tr.path, "/token") || tr.basic || !tr.form.Has("client_secret") {
			t.Errorf("token request %+v, want client_secret_post at /token", tr)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		tid := e.school(t, "2202", platformsim.InteropOptions{}, "")
		e.proxy.setDown(tid, true)
		st, err := e.svc.Begin(ctx, Launch{TenantID: tid, ReturnTo: "/"})
		if err != nil {
			t.Fatalf("Begin while discovery is down: %v", err)
		}
		if u, _ := url.Parse(st.AuthorizeURL); u.Path != "/WebUntis/api/sso/v3/"+tid+"/authorize" {
			t.Errorf("authorize at %s", u.Path)
		}
		// Back up: the next sign-in (after the few seconds a failure is remembered) works.
		e.proxy.setDown(tid, false)
		e.sim.Advance(discovery.RetryAfter + time.Second)
		if _, _, err := e.signIn(t, tid); err != nil {
			t.Fatalf("sign-in once discovery is back: %v", err)
		}
	})

	for i, tc := range []struct {
		name   string
		edit   func(doc map[string]any)
		reason string
	}{
		{"authorization_endpoint elsewhere", func(d map[string]any) { d["authorization_endpoint"] = "https://evil.example/auth" }, "discovery_untrusted"},
		{"token_endpoint elsewhere", func(d map[string]any) { d["token_endpoint"] = "https://evil.example/token" }, "discovery_untrusted"},
		{"jwks_uri elsewhere", func(d map[string]any) { d["jwks_uri"] = "https://evil.example/jwks" }, "discovery_untrusted"},
		{"token_endpoint with user info", func(d map[string]any) {
			u, _ := url.Parse(d["token_endpoint"].(string))
			u.User = url.User("evil.example")
			d["token_endpoint"] = u.String()
		}, "discovery_untrusted"},
		{"token_endpoint on another scheme", func(d map[string]any) {
			d["token_endpoint"] = strings.Replace(d["token_endpoint"].(string), "http://", "https://", 1)
		}, "discovery_untrusted"},
		{"relative token_endpoint", func(d map[string]any) { d["token_endpoint"] = "/oauth/token" }, "discovery_untrusted"},
		{"private_key_jwt only", func(d map[string]any) { d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt"} }, "token_auth_unsupported"},
		{"wrong issuer", func(d map[string]any) { d["issuer"] = "https://evil.example" }, "discovery_failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tid := e.school(t, string(rune('a'+i))+"2203", platformsim.InteropOptions{}, "")
			e.proxy.setRewrite(tid, tc.edit)
			_, err := e.svc.Begin(ctx, Launch{TenantID: tid, ReturnTo: "/"})
			var se *Error
			if !errors.As(err, &se) || se.Reason != tc.reason || se.TenantID != tid {
				t.Fatalf("Begin: %v, want reason %s", err, tc.reason)
			}
			wantKind := KindMisconfigured
			if tc.reason == "discovery_failed" {
				wantKind = KindUnavailable
			}
			if se.Kind != wantKind {
				t.Errorf("kind %v, want %v", se.Kind, wantKind)
			}
			if n := flows(tid); n != 0 {
				t.Errorf("%d flows stored for a refused sign-in", n)
			}
		})
	}

	t.Run("both methods listed", func(t *testing.T) {
		tid := e.school(t, "2204", platformsim.InteropOptions{}, "")
		e.proxy.setRewrite(tid, func(d map[string]any) {
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt", "client_secret_basic", "client_secret_post"}
		})
		if _, _, err := e.signIn(t, tid); err != nil {
			t.Fatal(err)
		}
		if tr := e.proxy.lastToken(t); tr.basic || !tr.form.Has("client_secret") {
			t.Errorf("token request %+v, want client_secret_post (the documented way) when listed", tr)
		}
	})
}

// TestSharedDiscoveryLifetime: the school's discovery, shared by sign-ins and server-to-server
// tokens, is trusted for an hour, and fetched again at once after a credential or state change
// (tenant_changed: the sign-in's Invalidate, or the platform client's).
func TestSharedDiscoveryLifetime(t *testing.T) {
	t.Parallel()
	e := newSSOEnv(t)
	tid := e.school(t, "5501", platformsim.InteropOptions{AlternativeEndpoints: true}, "")
	fetches := func() int { return e.sim.Stats().DiscoveryFetches[tid] }
	step := func(what string, want int) {
		t.Helper()
		if _, _, err := e.signIn(t, tid); err != nil {
			t.Fatalf("%s: sign-in: %v", what, err)
		}
		if n := fetches(); n != want {
			t.Errorf("%s: %d discovery fetches, want %d", what, n, want)
		}
	}
	step("first sign-in", 1)
	e.sim.Advance(time.Hour - time.Minute)
	step("within the hour", 1)
	e.sim.Advance(time.Minute)
	step("after the hour", 2)
	e.svc.Invalidate(tid)
	step("after the sign-in's Invalidate", 3)
	e.platform.Invalidate(tid)
	step("after the platform client's Invalidate", 4)
	e.svc.ChangeHandler().Resync()
	step("after a resync", 5)
	// The server-to-server token after all that still needs no fetch of its own.
	if _, err := platform.Collect(e.platform.For(tid).Schools(context.Background(), platform.ListOptions{})); err != nil {
		t.Fatal(err)
	}
	if n := fetches(); n != 5 {
		t.Errorf("the server-to-server token fetched the discovery again: %d", n)
	}
}

// TestOIDCSecretRefused: a token endpoint that refuses the client at a code exchange is a
// configuration problem: its own reason, the school's credentials marked failing for
// operators (the failing-schools gauge counts it), a server-to-server success does not clear
// that mark, and a sign-in whose code exchange succeeds does.
func TestOIDCSecretRefused(t *testing.T) {
	t.Parallel()
	e := newSSOEnv(t)
	ctx := context.Background()
	const wrongSecret = "an-outdated-oidc-secret-0123456789"
	tid := e.school(t, "3301", platformsim.InteropOptions{}, wrongSecret)

	_, _, err := e.signIn(t, tid)
	var se *Error
	if !errors.As(err, &se) || se.Reason != "client_rejected" || se.Kind != KindMisconfigured {
		t.Fatalf("sign-in with a wrong OIDC secret: %v, want client_rejected", err)
	}
	tn := e.tenant(t, tid)
	if tn.CredentialsFailingSince == nil || !strings.HasPrefix(tn.CredentialsFailureReason, "the OIDC secret was refused") ||
		!strings.Contains(tn.CredentialsFailureReason, "401 invalid_client") {
		t.Fatalf("failing mark %v %q", tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	if m := e.metricsText(); !strings.Contains(m, "\nplatform_tenants_credentials_failing 1\n") ||
		!strings.Contains(m, `sso_logins_total{outcome="client_rejected"} 1`) {
		t.Errorf("metrics:\n%s", m)
	}
	// The password is fine: server-to-server calls work, and they do not clear the mark of a
	// secret they do not prove.
	if _, err := platform.Collect(e.platform.For(tid).Schools(ctx, platform.ListOptions{})); err != nil {
		t.Fatalf("OneRoster with the password: %v", err)
	}
	if tn := e.tenant(t, tid); tn.CredentialsFailingSince == nil {
		t.Error("a client-credentials success cleared the OIDC secret mark")
	}
	e.logs.AssertNoSecrets(t, wrongSecret)

	// A second school: the platform refuses the client once (unauthorized_client), then
	// accepts it. The success clears the mark; a replayed code (invalid_grant) is still
	// code_rejected and marks nothing.
	tid2 := e.school(t, "3302", platformsim.InteropOptions{}, "")
	if err := e.sim.FailNextTokenRequests(tid2, 1, http.StatusBadRequest, "unauthorized_client"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.signIn(t, tid2); !errors.As(err, &se) || se.Reason != "client_rejected" {
		t.Fatalf("unauthorized_client: %v", err)
	}
	if tn := e.tenant(t, tid2); tn.CredentialsFailingSince == nil {
		t.Fatal("unauthorized_client did not mark the credentials")
	}
	if _, _, err := e.signIn(t, tid2); err != nil {
		t.Fatalf("sign-in after the platform accepts the client again: %v", err)
	}
	if tn := e.tenant(t, tid2); tn.CredentialsFailingSince != nil || tn.CredentialsFailureReason != "" {
		t.Errorf("a successful code exchange left the mark: %v %q", tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	if err := e.sim.FailNextTokenRequests(tid2, 1, http.StatusBadRequest, "invalid_grant"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.signIn(t, tid2); !errors.As(err, &se) || se.Reason != "code_rejected" {
		t.Fatalf("invalid_grant: %v, want code_rejected", err)
	}
	if tn := e.tenant(t, tid2); tn.CredentialsFailingSince != nil {
		t.Error("a refused code marked the credentials failing")
	}

	// A successful sign-in does not clear a mark of the password (it does not prove it).
	if _, err := e.store.MarkCredentialsFailing(ctx, tid2, 1, "a freshly fetched token was refused with 401", e.sim.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.signIn(t, tid2); err != nil {
		t.Fatal(err)
	}
	if tn := e.tenant(t, tid2); tn.CredentialsFailingSince == nil {
		t.Error("a sign-in cleared the mark of a refused password")
	}
}

// TestKeyRotationAndRemoval runs against the simulator: the platform rotates its signing key
// right after our JWKS fetch, and the next sign-in works at once; once the platform removed the
// old key, it stops verifying when the JWKS's max-age has passed and the background refresh
// fetched it.
func TestKeyRotationAndRemoval(t *testing.T) {
	t.Parallel()
	e := newSSOEnv(t)
	ctx := context.Background()
	tid := e.school(t, "4401", platformsim.InteropOptions{}, "")
	jwksFetches := func() int { return e.sim.Stats().JWKSFetches["/WebUntis/api/sso/v3/"+tid+"/jwks"] }
	if _, _, err := e.signIn(t, tid); err != nil {
		t.Fatal(err)
	}
	// An id_token of the first key, obtained directly from the platform.
	oldToken := e.rawIDToken(tid)

	if _, err := e.sim.RotateSigningKey(true); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(time.Second)
	if _, _, err := e.signIn(t, tid); err != nil {
		t.Fatalf("sign-in right after the rotation: %v", err)
	}
	if n := jwksFetches(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (one for the rotation)", n)
	}
	iss, err := e.svc.issuerFor(ctx, tid)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.keys.verify(ctx, oldToken); err != nil {
		t.Fatalf("old key while published: %v", err)
	}
	e.sim.RemoveOldSigningKeys()
	// Until the JWKS's max-age (the simulator's 5 minutes) has passed, the held keys are used.
	e.sim.Advance(platformsim.JWKSMaxAge - DefaultJWKSRefreshCheck - 2*time.Second)
	if n := e.svc.refreshKeySets(ctx); n != 0 {
		t.Fatalf("refreshed %d key sets before their max-age", n)
	}
	if _, err := iss.keys.verify(ctx, oldToken); err != nil {
		t.Fatalf("old key before the refresh: %v", err)
	}
	e.sim.Advance(2 * time.Second)
	if n := e.svc.refreshKeySets(ctx); n != 1 {
		t.Fatalf("refreshed %d key sets, want 1", n)
	}
	if n := jwksFetches(); n != 3 {
		t.Errorf("%d JWKS fetches, want 3", n)
	}
	if _, err := iss.keys.verify(ctx, oldToken); !errors.Is(err, errUnknownKey) {
		t.Fatalf("removed key after the refresh: %v, want errUnknownKey", err)
	}
	// Sign-ins with the current key go on.
	if _, _, err := e.signIn(t, tid); err != nil {
		t.Fatal(err)
	}
}

// rawIDToken signs the school's teacher in at the platform directly (not through the service)
// and returns the id_token the platform issued.
func (e *ssoEnv) rawIDToken(tid string) string {
	e.t.Helper()
	clientID, sec, _, _ := e.sim.Credentials(tid)
	c := &oauth2.Config{
		ClientID: clientID, ClientSecret: sec, RedirectURL: partnerBase + "/launch",
		Endpoint: oauth2.Endpoint{AuthURL: e.sim.AuthorizationEndpoint(tid), TokenURL: e.sim.TokenEndpoint(tid), AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{"openid"},
	}
	verifier := oauth2.GenerateVerifier()
	resp, err := e.browser.Get(c.AuthCodeURL("state", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "nonce")))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok, err := c.Exchange(context.Background(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatal(err)
	}
	raw, _ := tok.Extra("id_token").(string)
	return raw
}
