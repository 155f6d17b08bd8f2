package platformsim_test

// Tests for what the real platform refuses: scopes, the limits of a
// user's token, revocation of id_tokens, strict OneRoster paths and
// bounded statistics.

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
)

// loginWithScope runs the code flow for userID asking for scope and
// returns the token response.
func (e *env) loginWithScope(tenantID, userID string, scope ...string) *oauth2.Token {
	e.t.Helper()
	if err := e.sim.SetSignedInUser(tenantID, userID); err != nil {
		e.t.Fatal(err)
	}
	conf := e.oauthConfig(tenantID)
	conf.Scopes = scope
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()
	loc := e.redirectTo(e.get(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))))
	code := loc.Query().Get("code")
	if code == "" {
		e.t.Fatalf("no code in %s", loc)
	}
	tok, err := conf.Exchange(e.ctx(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return tok
}

// wantStatusInfo checks a OneRoster error answer.
func wantStatusInfo(t *testing.T, name string, resp *http.Response, status int, codeMinor string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d", name, resp.StatusCode, status)
		return
	}
	var body struct {
		StatusInfoSet []struct {
			CodeMajor string `json:"imsx_codeMajor"`
			CodeMinor string `json:"imsx_codeMinor"`
		} `json:"statusInfoSet"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.StatusInfoSet) != 1 {
		t.Errorf("%s: body is no statusInfoSet (%v)", name, err)
		return
	}
	if si := body.StatusInfoSet[0]; si.CodeMajor != "failure" || si.CodeMinor != codeMinor {
		t.Errorf("%s: statusInfo %+v, want codeMinor %s", name, si, codeMinor)
	}
}

func TestCodeFlowScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: "3001", Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tenant string
		ask          []string
		granted      string
		api          int
	}{
		{"both", "1001", []string{"openid", "roster-core.readonly"}, "openid roster-core.readonly", http.StatusOK},
		{"openid only", "1001", []string{"openid"}, "openid", http.StatusForbidden},
		{"not allowed scope dropped", "1001", []string{"openid", "untis-profile", "roster-core.readonly", "openid"},
			"openid roster-core.readonly", http.StatusOK},
		{"app without OneRoster permission", "3001", []string{"openid", "roster-core.readonly"}, "openid", http.StatusForbidden},
	} {
		teacher := mustUser(t, e.sim, tc.tenant, platformsim.RoleTeacher)
		tok := e.loginWithScope(tc.tenant, teacher.SourcedID, tc.ask...)
		if got := tok.Extra("scope"); got != tc.granted {
			t.Errorf("%s: token scope %v, want %q", tc.name, got, tc.granted)
		}
		for kind, bearer := range map[string]string{"access token": tok.AccessToken, "id_token": tok.Extra("id_token").(string)} {
			resp := e.oneRoster("/users/"+teacher.SourcedID, bearer, nil)
			if tc.api == http.StatusOK {
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s, %s: %d, want 200", tc.name, kind, resp.StatusCode)
				}
				continue
			}
			wantStatusInfo(t, tc.name+", "+kind, resp, tc.api, "forbidden")
			if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, "insufficient_scope") {
				t.Errorf("%s, %s: WWW-Authenticate %q", tc.name, kind, h)
			}
		}
	}
}

func TestClientCredentialsScopes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: "3001", Scopes: []string{"openid"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, tenant string
		form         string // the request body
		status       int
		granted      string // scope in the answer, or the OAuth error
		api          int
	}{
		{"no scope: the app's permissions", "1001", "grant_type=client_credentials", 200, "roster-core.readonly", 200},
		{"roster scope", "1001", "grant_type=client_credentials&scope=roster-core.readonly", 200, "roster-core.readonly", 200},
		{"openid too", "1001", "grant_type=client_credentials&scope=openid+roster-core.readonly", 200, "openid roster-core.readonly", 200},
		{"openid only", "1001", "grant_type=client_credentials&scope=openid", 200, "openid", 403},
		{"scope the app lacks", "1001", "grant_type=client_credentials&scope=roster-core.readonly+timetable", 400, "invalid_scope", 0},
		{"no permissions, no scope", "3001", "grant_type=client_credentials", 200, "", 403},
		{"no permissions, roster scope", "3001", "grant_type=client_credentials&scope=roster-core.readonly", 400, "invalid_scope", 0},
	} {
		clientID, _, password, _ := e.sim.Credentials(tc.tenant)
		hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		hdr.Set("Authorization", "Basic "+basic(clientID, password))
		resp := e.do(http.MethodPost, e.sim.Issuer(tc.tenant)+"/token", "", strings.NewReader(tc.form), hdr)
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.status != http.StatusOK {
			if body["error"] != tc.granted {
				t.Errorf("%s: error %v, want %s", tc.name, body["error"], tc.granted)
			}
			continue
		}
		if got, _ := body["scope"].(string); got != tc.granted {
			t.Errorf("%s: scope %q, want %q", tc.name, got, tc.granted)
		}
		user := mustUser(t, e.sim, tc.tenant, platformsim.RoleStudent)
		api := e.oneRoster("/users", body["access_token"].(string), nil)
		if tc.api == http.StatusOK {
			if api.StatusCode != http.StatusOK {
				t.Errorf("%s: /users %d", tc.name, api.StatusCode)
			}
			if r := e.oneRoster("/users/"+user.SourcedID, body["access_token"].(string), nil); r.StatusCode != http.StatusOK {
				t.Errorf("%s: /users/{id} %d", tc.name, r.StatusCode)
			}
			continue
		}
		wantStatusInfo(t, tc.name, api, tc.api, "forbidden")
	}
}

func basic(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestUserTokenLimitedByRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: "3001", Teachers: 2, Students: 3, Admins: 1, Parents: 1, Aides: 1, Classes: 2}); err != nil {
		t.Fatal(err)
	}
	const tid = "3001"
	other := mustUser(t, e.sim, tid, platformsim.RoleStudent)
	class := e.sim.Classes(tid)[0].SourcedID
	school, _ := e.sim.School(tid)
	everything := []string{
		"/users", "/users/" + other.SourcedID, "/students", "/students/" + other.SourcedID, "/teachers",
		"/classes", "/classes/" + class, "/classes/" + class + "/students", "/enrollments",
		"/orgs", "/orgs/" + school.SourcedID, "/schools/" + school.SourcedID + "/students",
	}
	for _, role := range []string{platformsim.RoleStudent, platformsim.RoleParent, platformsim.RoleTeacher,
		platformsim.RoleAdministrator, platformsim.RoleAide} {
		var me platformsim.User
		for _, u := range e.sim.Users(tid) {
			if u.Role == role && u.SourcedID != other.SourcedID {
				me = u
				break
			}
		}
		if me.SourcedID == "" {
			t.Fatalf("no second %s", role)
		}
		_, tok := e.login(tid, me.SourcedID)
		staff := role != platformsim.RoleStudent && role != platformsim.RoleParent
		for kind, bearer := range map[string]string{"access token": tok.AccessToken, "id_token": tok.Extra("id_token").(string)} {
			// Every role reads itself: the partner's SSO flow relies on it.
			var got struct{ User platformsim.User }
			if resp := e.oneRoster("/users/"+me.SourcedID, bearer, &got); resp.StatusCode != http.StatusOK || got.User.SourcedID != me.SourcedID {
				t.Errorf("%s %s: users/{sub}: %d %q", role, kind, resp.StatusCode, got.User.SourcedID)
			}
			if role == platformsim.RoleStudent {
				if resp := e.oneRoster("/students/"+me.SourcedID, bearer, nil); resp.StatusCode != http.StatusOK {
					t.Errorf("%s %s: students/{sub}: %d", role, kind, resp.StatusCode)
				}
			}
			for _, path := range everything {
				resp := e.oneRoster(path, bearer, nil)
				name := fmt.Sprintf("%s %s %s", role, kind, path)
				if staff {
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s: %d, want 200", name, resp.StatusCode)
					}
					continue
				}
				wantStatusInfo(t, name, resp, http.StatusForbidden, "forbidden")
			}
		}
	}
	// A server token reads everything.
	server := e.serverToken(tid)
	for _, path := range everything {
		if resp := e.oneRoster(path, server, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("server token %s: %d", path, resp.StatusCode)
		}
	}
}

func TestIDTokenBearerRevocation(t *testing.T) {
	t.Parallel()
	// The webhooks fail (closed port); the platform's state changes anyway.
	e := newEnv(t, platformsim.Config{PartnerURL: "http://127.0.0.1:1"})
	user := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	path := "/users/" + user.SourcedID
	idToken := func() string {
		_, tok := e.login("1001", user.SourcedID)
		return tok.Extra("id_token").(string)
	}
	check := func(name, bearer string, want int) {
		t.Helper()
		if resp := e.oneRoster(path, bearer, nil); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", name, resp.StatusCode, want)
		}
	}

	idt := idToken()
	check("fresh id_token", idt, http.StatusOK)
	_ = e.sim.RevokeTokens("1001")
	check("after RevokeTokens", idt, http.StatusUnauthorized)
	check("a new one", idToken(), http.StatusOK)

	// Code replay revokes the id_token too.
	f, tok := e.login("1001", user.SourcedID)
	check("before replay", tok.Extra("id_token").(string), http.StatusOK)
	if _, err := e.exchange(f); err == nil {
		t.Fatal("replayed code accepted")
	}
	check("after code replay", tok.Extra("id_token").(string), http.StatusUnauthorized)

	// Deactivation, and it stays dead after reactivation.
	idt = idToken()
	_, _ = e.sim.Deactivate(t.Context(), "1001", false)
	check("deactivated", idt, http.StatusUnauthorized)
	_, _ = e.sim.Reactivate(t.Context(), "1001")
	check("reactivated: old id_token", idt, http.StatusUnauthorized)
	check("reactivated: new id_token", idToken(), http.StatusOK)
}

func TestTrailingSlashes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	user := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	server := e.serverToken("1001")
	for _, path := range []string{"/users/", "/users/" + user.SourcedID + "/", "/classes/"} {
		wantStatusInfo(t, path, e.oneRoster(path, server, nil), http.StatusNotFound, "unknown_object")
	}
	if resp := e.oneRoster("/users/"+user.SourcedID, server, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("without slash: %d", resp.StatusCode)
	}

	// SSO v3 takes both spellings.
	iss := e.sim.Issuer("1001")
	for _, path := range []string{"/jwks/", "/.well-known/openid-configuration/"} {
		if resp := e.get(iss + path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	_ = e.sim.SetSignedInUser("1001", user.SourcedID)
	conf := e.oauthConfig("1001")
	conf.Endpoint.AuthURL += "/"
	conf.Endpoint.TokenURL += "/"
	verifier := oauth2.GenerateVerifier()
	loc := e.redirectTo(e.get(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n"))))
	if _, err := conf.Exchange(e.ctx(), loc.Query().Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Errorf("token endpoint with a slash: %v", err)
	}
}

func TestStatsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	const n = 50
	for i := range n {
		iss := e.sim.Issuer(fmt.Sprintf("x%d", i))
		e.get(iss + "/.well-known/openid-configuration")
		e.get(iss + "/jwks")
		e.get(iss + "/authorize?client_id=partner-app")
		e.do(http.MethodPost, iss+"/token", "", strings.NewReader("grant_type=client_credentials"),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
		e.do(http.MethodPost, e.sim.Issuer("1001")+"/token", "", strings.NewReader(fmt.Sprintf("grant_type=made-up-%d", i)),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	}
	e.get(e.sim.Issuer("1001") + "/jwks")
	e.get(e.sim.Issuer("1001") + "/jwks/")
	st := e.sim.Stats()
	unknown := platformsim.UnknownTenant
	if len(st.DiscoveryFetches) != 1 || st.DiscoveryFetches[unknown] != n {
		t.Errorf("discovery: %v", st.DiscoveryFetches)
	}
	if len(st.AuthorizeRequests) != 1 || st.AuthorizeRequests[unknown] != n {
		t.Errorf("authorize: %v", st.AuthorizeRequests)
	}
	if len(st.TokenRequests) != 2 || st.TokenRequestCount(unknown, platformsim.GrantClientCredentials) != n ||
		len(st.TokenRequests["1001"]) != 1 || st.TokenRequestCount("1001", platformsim.GrantOther) != n {
		t.Errorf("token: %v", st.TokenRequests)
	}
	if want := map[string]int{"/WebUntis/api/sso/v3/1001/jwks": 2}; fmt.Sprint(st.JWKSFetches) != fmt.Sprint(want) {
		t.Errorf("jwks: %v, want %v", st.JWKSFetches, want)
	}
}

func TestFreshKeys(t *testing.T) {
	t.Parallel()
	a, _ := simtest.NewServer(t, platformsim.Config{})
	b, _ := simtest.NewServer(t, platformsim.Config{})
	c, _ := simtest.NewServer(t, platformsim.Config{FreshKeys: true})
	if a.WebhookPublicKey() != b.WebhookPublicKey() || a.SigningKeyID() != b.SigningKeyID() {
		t.Error("default keys are not shared within the process (the doc says they are)")
	}
	if c.WebhookPublicKey() == a.WebhookPublicKey() {
		t.Error("FreshKeys: webhook key is the shared default")
	}
	if c.SigningKeyID() == a.SigningKeyID() {
		t.Error("FreshKeys: signing key is the shared default")
	}
	// A given key wins over FreshKeys.
	d, _ := simtest.NewServer(t, platformsim.Config{FreshKeys: true, SigningKey: ecKey()})
	if d.SigningAlgorithm() != platformsim.ES256 || d.WebhookPublicKey() == a.WebhookPublicKey() {
		t.Errorf("FreshKeys with a given signing key: alg %s", d.SigningAlgorithm())
	}
}
