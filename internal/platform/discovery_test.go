package platform_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/discovery"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
)

// TestTokensAtTheDiscoveredEndpoint runs against the simulator behaving like other OpenID
// Providers: a school whose token endpoint moved (the documented /token answers 404 there),
// one that accepts only client_secret_basic, and one that accepts only client_secret_post. The
// school's server-to-server calls work at each, its credentials are never marked failing, and
// the school's discovery is fetched once for all its tokens.
func TestTokensAtTheDiscoveredEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	for _, tc := range []struct {
		id string
		o  platformsim.InteropOptions
	}{
		{"2601", platformsim.InteropOptions{AlternativeEndpoints: true}},
		{"2602", platformsim.InteropOptions{BasicAuthOnly: true}},
		{"2603", platformsim.InteropOptions{PostAuthOnly: true}},
		{"2604", platformsim.InteropOptions{AlternativeEndpoints: true, PostAuthOnly: true}},
	} {
		t.Run(tc.id, func(t *testing.T) {
			tid := e.school(platformsim.TenantSpec{ID: tc.id})
			if err := e.sim.SetInterop(tid, tc.o); err != nil {
				t.Fatal(err)
			}
			u := e.user(tid, platformsim.RoleTeacher)
			if _, err := e.clients.For(tid).User(e.ctx(), u.SourcedID); err != nil {
				t.Fatalf("OneRoster call: %v", err)
			}
			// A second token, once the first has expired: the discovery is still cached.
			e.sim.Advance(4 * time.Minute)
			if _, err := e.clients.For(tid).User(e.ctx(), u.SourcedID); err != nil {
				t.Fatalf("OneRoster call with the next token: %v", err)
			}
			if n := e.tokenRequests(tid); n != 2 {
				t.Errorf("%d client-credentials tokens issued, want 2", n)
			}
			if n := e.sim.Stats().DiscoveryFetches[tid]; n != 1 {
				t.Errorf("%d discovery fetches for two tokens, want 1", n)
			}
			if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
				t.Errorf("credentials marked failing: %s", tn.CredentialsFailureReason)
			}
			// Proving pasted credentials (manual activation) uses the discovered endpoint too.
			clientID, sec, pw, _ := e.sim.Credentials(tid)
			if err := e.clients.ProveCredentials(e.ctx(), tid, clientID, sec, pw); err != nil {
				t.Errorf("ProveCredentials: %v", err)
			}
			var swapped *platform.SwappedError
			if err := e.clients.ProveCredentials(e.ctx(), tid, clientID, pw, sec); !errors.As(err, &swapped) {
				t.Errorf("ProveCredentials with secret and password swapped: %v", err)
			}
		})
	}
}

// TestTokenEndpointFromDiscovery pins down what goes where, against a fake platform whose
// discovery document each case edits: the token endpoint it names (or the documented one), HTTP
// Basic unless it lists only client_secret_post, never both; nothing at all is sent when it
// names a token endpoint off UNTIS_API_URL or no client authentication we can do.
func TestTokenEndpointFromDiscovery(t *testing.T) {
	t.Parallel()
	st := edgeStore(t)
	for _, tc := range []struct {
		name     string
		edit     func(doc map[string]any)
		path     string // the token request's path below the issuer; "" for no request
		post     bool
		failKind error
	}{
		{"documented", nil, "/token", false, nil},
		{"other path", func(d map[string]any) { d["token_endpoint"] = d["issuer"].(string) + "/oauth/token" }, "/oauth/token", false, nil},
		{"no token_endpoint", func(d map[string]any) { delete(d, "token_endpoint") }, "/token", false, nil},
		{"unreachable", func(d map[string]any) { d["status"] = http.StatusServiceUnavailable }, "/token", false, nil},
		{"no auth methods", func(d map[string]any) { delete(d, "token_endpoint_auth_methods_supported") }, "/token", false, nil},
		{"basic only", func(d map[string]any) {
			d["token_endpoint_auth_methods_supported"] = []string{"client_secret_basic"}
		}, "/token", false, nil},
		{"post only", func(d map[string]any) {
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt", "client_secret_post"}
		}, "/token", true, nil},
		{"post only, other path", func(d map[string]any) {
			d["token_endpoint"] = d["issuer"].(string) + "/oauth2/v1/token"
			d["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
		}, "/oauth2/v1/token", true, nil},
		{"token endpoint elsewhere", func(d map[string]any) { d["token_endpoint"] = "https://evil.example/token" }, "", false, discovery.ErrUntrusted},
		{"token endpoint with user info", func(d map[string]any) {
			d["token_endpoint"] = strings.Replace(d["token_endpoint"].(string), "http://", "http://evil.example@", 1)
		}, "", false, discovery.ErrUntrusted},
		{"relative token endpoint", func(d map[string]any) { d["token_endpoint"] = "/oauth/token" }, "", false, discovery.ErrUntrusted},
		{"private_key_jwt only", func(d map[string]any) {
			d["token_endpoint_auth_methods_supported"] = []string{"private_key_jwt"}
		}, "", false, discovery.ErrAuthMethodUnsupported},
		{"another issuer", func(d map[string]any) { d["issuer"] = "https://evil.example" }, "", false, platform.ErrUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tid := edgeTID()
			f := &edgeFake{}
			if tc.edit != nil {
				f.discovery = func(_ string, doc map[string]any) { tc.edit(doc) }
			}
			w := newEdgeWorld(t, st, f, platform.Config{}, tid)
			_, err := w.clients.For(tid).User(edgeCtx(t), "u")
			reqs := f.tokenReqs()
			if tc.path == "" {
				if !errors.Is(err, tc.failKind) || !errors.Is(err, platform.ErrUnavailable) {
					t.Fatalf("err = %v, want %v (ErrUnavailable)", err, tc.failKind)
				}
				if len(reqs) != 0 || len(f.apiReqs()) != 0 {
					t.Fatalf("%d token and %d API requests sent despite the discovery", len(reqs), len(f.apiReqs()))
				}
				// Not the credentials' fault: no failing mark.
				if tn := w.tenant(tid); tn.CredentialsFailingSince != nil {
					t.Errorf("credentials marked failing: %s", tn.CredentialsFailureReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(reqs) != 1 {
				t.Fatalf("%d token requests, want 1", len(reqs))
			}
			r := reqs[0]
			if want := edgeSSOPrefix + tid + tc.path; r.tenantPath != want {
				t.Errorf("token request at %s, want %s", r.tenantPath, want)
			}
			if r.basic == tc.post || r.inBody != tc.post {
				t.Errorf("HTTP Basic %v, credentials in the body %v; want only %s", r.basic, r.inBody, map[bool]string{true: "the body", false: "Basic"}[tc.post])
			}
			if r.clientID != "cid" || r.password != "pw-"+tid {
				t.Errorf("authenticated as %q/%q", r.clientID, r.password)
			}
		})
	}
}

// TestPostAuthMakesOneRequest: the second, unencoded try exists for HTTP Basic only (where it is
// not documented whether the platform form-decodes); in the body, form encoding is the only
// reading, so a refused password with '+' and '/' is refused once. With Basic it is tried twice.
func TestPostAuthMakesOneRequest(t *testing.T) {
	t.Parallel()
	st := edgeStore(t)
	for _, post := range []bool{false, true} {
		tid := edgeTID()
		f := &edgeFake{token: func(w http.ResponseWriter, _ *http.Request, _ int) {
			edgeWrite(w, http.StatusUnauthorized, `{"error":"invalid_client"}`)
		}}
		if post {
			f.discovery = func(_ string, d map[string]any) {
				d["token_endpoint_auth_methods_supported"] = []string{"client_secret_post"}
			}
		}
		w := newEdgeWorld(t, st, f, platform.Config{}, tid)
		w.setCreds(tid, "a+b/c=")
		if _, err := w.clients.For(tid).User(edgeCtx(t), "u"); !errors.Is(err, platform.ErrCredentialsRejected) {
			t.Fatalf("post %v: %v", post, err)
		}
		reqs := f.tokenReqs()
		want := 2
		if post {
			want = 1
		}
		if len(reqs) != want {
			t.Errorf("post %v: %d token requests, want %d", post, len(reqs), want)
		}
		for i, r := range reqs {
			// The fake form-decodes what it gets, as RFC 6749 says: the first request of either
			// kind carries the password, Basic's second the same bytes unencoded.
			if (i == 0 && r.password != "a+b/c=") || r.basic == post || r.inBody != post {
				t.Errorf("post %v: request %d %+v", post, i, r)
			}
		}
	}
}

// TestDiscoveryFollowsCredentialChanges: a school's discovery is cached with its token (one
// fetch for many tokens) and fetched again once its credentials change (Invalidate), so a
// platform that moved the school's endpoints with new credentials is followed at once.
func TestDiscoveryFollowsCredentialChanges(t *testing.T) {
	t.Parallel()
	tid := edgeTID()
	path := "/token"
	f := &edgeFake{}
	f.discovery = func(_ string, d map[string]any) { d["token_endpoint"] = d["issuer"].(string) + path }
	w := newEdgeWorld(t, edgeStore(t), f, platform.Config{}, tid)
	call := func() {
		t.Helper()
		if _, err := w.clients.For(tid).User(edgeCtx(t), "u"); err != nil {
			t.Fatal(err)
		}
	}
	call()
	w.clock.Advance(10 * time.Minute) // the token expired; the discovery (1 h) did not
	call()
	if n, d := len(f.tokenReqs()), f.discoveries(); n != 2 || d != 1 {
		t.Fatalf("%d tokens, %d discovery fetches; want 2 and 1", n, d)
	}
	path = "/v2/token" // only read by the next discovery fetch, after Invalidate
	w.setCreds(tid, "pw-new")
	call()
	reqs := f.tokenReqs()
	if last := reqs[len(reqs)-1]; last.tenantPath != edgeSSOPrefix+tid+"/v2/token" || last.password != "pw-new" || f.discoveries() != 2 {
		t.Errorf("after new credentials: token request %+v, %d discovery fetches", last, f.discoveries())
	}
}

// TestProveCredentialsDoesNotCacheDiscovery: proving pasted credentials reads the typed tenant's
// discovery for the proof alone (anyone may type any tenant id on the activation page), so it
// leaves nothing behind: a later token of that school reads the discovery again.
func TestProveCredentialsDoesNotCacheDiscovery(t *testing.T) {
	t.Parallel()
	tid := edgeTID()
	f := &edgeFake{}
	f.discovery = func(_ string, d map[string]any) { d["token_endpoint"] = d["issuer"].(string) + "/oauth/token" }
	w := newEdgeWorld(t, edgeStore(t), f, platform.Config{}, tid)
	for range 2 {
		if err := w.clients.ProveCredentials(edgeCtx(t), tid, "cid", "sec", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.clients.For(tid).User(edgeCtx(t), "u"); err != nil {
		t.Fatal(err)
	}
	reqs := f.tokenReqs()
	if f.discoveries() != 3 || len(reqs) != 3 {
		t.Fatalf("%d discovery fetches, %d token requests; want 3 and 3", f.discoveries(), len(reqs))
	}
	for _, r := range reqs {
		if !strings.HasSuffix(r.tenantPath, "/oauth/token") {
			t.Errorf("token request at %s", r.tenantPath)
		}
	}
	// A tenant id that is no path segment never reaches the network.
	if err := w.clients.ProveCredentials(context.Background(), "../x", "cid", "s", "p"); !errors.Is(err, platform.ErrBadRequest) {
		t.Errorf("ProveCredentials with a bad tenant id: %v", err)
	}
	if f.discoveries() != 3 {
		t.Error("a bad tenant id reached the platform")
	}
}
