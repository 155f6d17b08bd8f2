package internalapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// Without the right bearer token nothing is answered but 401 with a Bearer challenge: not the
// schools, not the passthrough, not even whether a route exists. The platform is never asked.
func TestWrongOrMissingBearerTokenIs401(t *testing.T) {
	t.Parallel()
	next := apiToken + "-next-after-rotation"
	e := newEnv(t, options{tokens: []string{apiToken, next}})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	clientID, password := mustCreds(t, e.sim, a)
	platformToken := directToken(t, e.simURL, e.sim.Issuer(a), clientID, password)
	e.sim.ResetStats()
	for _, tc := range []struct {
		name   string
		header []string // Authorization values
		wrong  bool     // a token was sent: the challenge says invalid_token
	}{
		{"none", nil, false},
		{"empty", []string{""}, false},
		{"Basic", []string{"Basic dXNlcjpwYXNz"}, false},
		{"Bearer without a token", []string{"Bearer "}, false},
		{"the token without a scheme", []string{apiToken}, false},
		{"a wrong token", []string{"Bearer not-the-token-at-all-0123456789abcdef"}, true},
		{"the token with one more byte", []string{"Bearer " + apiToken + "x"}, true},
		{"the token less its last byte", []string{"Bearer " + apiToken[:len(apiToken)-1]}, true},
		{"the token in other case", []string{"Bearer " + strings.ToUpper(apiToken)}, true},
		{"two Authorization headers", []string{"Bearer " + apiToken, "Bearer " + apiToken}, false},
		{"a platform token", []string{"Bearer " + platformToken}, true},
	} {
		for _, p := range []string{"/v1/schools", "/v1/schools/" + a, schoolPath(a, orPath+"/users"),
			schoolPath(a, externPath), "/v1/no-such-route", "/"} {
			req, _ := http.NewRequest(http.MethodGet, e.internal.URL+p, nil)
			for _, v := range tc.header {
				req.Header.Add("Authorization", v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ans := answer{resp.StatusCode, resp.Header, body}
			ans.wantProblem(t, http.StatusUnauthorized, "unauthorized")
			challenge := resp.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(challenge, "Bearer realm=") || strings.Contains(challenge, "invalid_token") != tc.wrong {
				t.Errorf("%s, %s: WWW-Authenticate %q", tc.name, p, challenge)
			}
			e.assertNoSecret(ans)
		}
	}
	if calls := e.calls(); len(calls) != 0 {
		t.Errorf("unauthenticated requests reached the platform: %+v", calls)
	}
	// Both tokens of a rotation work; the scheme is case-insensitive (RFC 7235).
	for _, h := range []string{"Bearer " + apiToken, "Bearer " + next, "bearer " + apiToken} {
		ans := e.do(e.internal.URL, http.MethodGet, "/v1/schools", nil, http.Header{"Authorization": {h}})
		if ans.status != http.StatusOK {
			t.Errorf("%.12s...: %s", h, ans)
		}
	}
	// The problem types' descriptions need no token.
	doc := e.do(e.internal.URL, http.MethodGet, "/problems/credentials-failing", nil, nil)
	if doc.status != http.StatusOK || !strings.Contains(string(doc.body), "Retry-After") {
		t.Errorf("problem type description: %s", doc)
	}
	e.do(e.internal.URL, http.MethodGet, "/problems/nonsense", nil, nil).wantProblem(t, http.StatusNotFound, "not-found")
}

func mustCreds(t testing.TB, sim *platformsim.Sim, tenantID string) (string, string) {
	t.Helper()
	clientID, _, password, ok := sim.Credentials(tenantID)
	if !ok {
		t.Fatalf("no tenant %s", tenantID)
	}
	return clientID, password
}

// The internal API lives on its own listener only: the public handler, which the world reaches,
// answers none of its routes, with or without the token.
func TestTheInternalAPIIsNotOnThePublicListener(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	e.sim.ResetStats()
	for _, p := range []string{"/v1/schools", "/v1/schools/" + a, schoolPath(a, orPath+"/users"), schoolPath(a, externPath),
		"/problems/unauthorized"} {
		ans := e.do(e.public.URL, http.MethodGet, p, nil, bearer)
		if ans.status != http.StatusNotFound || strings.Contains(string(ans.body), `"schools"`) ||
			strings.Contains(string(ans.body), `"users"`) || strings.Contains(ans.header.Get("Content-Type"), "problem+json") {
			t.Errorf("public %s: %s", p, ans)
		}
		if internal := e.get(p); internal.status == http.StatusNotFound || internal.status >= 500 {
			t.Errorf("internal %s: %s", p, internal)
		}
	}
	// Only the internal calls reached the platform.
	if n := len(e.calls()); n != 2 {
		t.Errorf("%d platform calls, want the 2 of the internal listener", n)
	}
}
