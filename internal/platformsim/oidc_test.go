package platformsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/platformsim"
)

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	iss := e.sim.Issuer("1001")
	if want := e.url + "/WebUntis/api/sso/v3/1001"; iss != want {
		t.Fatalf("Issuer = %q, want %q", iss, want)
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/openid-configuration/"} {
		resp := e.get(iss + path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		checks := map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
			"jwks_uri": iss + "/jwks",
		}
		for k, want := range checks {
			if doc[k] != want {
				t.Errorf("%s = %v, want %v", k, doc[k], want)
			}
		}
		for k, want := range map[string]string{
			"code_challenge_methods_supported":      "S256",
			"scopes_supported":                      "roster-core.readonly",
			"token_endpoint_auth_methods_supported": "client_secret_basic",
			"id_token_signing_alg_values_supported": "RS256",
			"response_types_supported":              "code",
		} {
			if !containsAny(doc[k], want) {
				t.Errorf("%s = %v, want it to include %s", k, doc[k], want)
			}
		}
	}
	if resp := e.get(e.sim.Issuer("9999") + "/.well-known/openid-configuration"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown tenant: status %d, want 404", resp.StatusCode)
	}
	e.get(iss + "/jwks")
	st := e.sim.Stats()
	if st.DiscoveryFetches["1001"] != 2 || st.JWKSFetches["/WebUntis/api/sso/v3/1001/jwks"] != 1 {
		t.Errorf("stats: discovery %v, jwks %v", st.DiscoveryFetches, st.JWKSFetches)
	}
}

func containsAny(v any, want string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if x == want {
			return true
		}
	}
	return false
}

// TestLoginVerifiesWithGoOIDC runs the partner's whole code flow with
// x/oauth2 (PKCE) and verifies the id_token with go-oidc, for both
// signing algorithms.
func TestLoginVerifiesWithGoOIDC(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  platformsim.Config
		alg  string
	}{
		{"RS256", platformsim.Config{}, "RS256"},
		{"ES256", platformsim.Config{SigningKey: ecKey()}, "ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.cfg)
			if got := e.sim.SigningAlgorithm(); got != tc.alg {
				t.Fatalf("SigningAlgorithm = %s, want %s", got, tc.alg)
			}
			teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
			f, tok := e.login("1001", teacher.SourcedID)
			if tok.TokenType != "Bearer" || tok.ExpiresIn != 180 {
				t.Errorf("token_type %q expires_in %d, want Bearer 180", tok.TokenType, tok.ExpiresIn)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := e.verifier("1001").Verify(e.ctx(), raw)
			if err != nil {
				t.Fatalf("go-oidc rejected the id_token: %v", err)
			}
			if idt.Subject != teacher.SourcedID || idt.Nonce != f.nonce || idt.Issuer != e.sim.Issuer("1001") {
				t.Errorf("claims: sub %q nonce %q iss %q", idt.Subject, idt.Nonce, idt.Issuer)
			}
			var claims struct {
				AuthTime int64 `json:"auth_time"`
			}
			if err := idt.Claims(&claims); err != nil || claims.AuthTime == 0 {
				t.Errorf("auth_time missing: %v", err)
			}
			// The user-context access token reads the user's OneRoster record.
			var got struct{ User platformsim.User }
			if resp := e.oneRoster("/users/"+idt.Subject, tok.AccessToken, &got); resp.StatusCode != http.StatusOK {
				t.Fatalf("users/{sub}: %d", resp.StatusCode)
			}
			if got.User.SourcedID != idt.Subject || got.User.Role != "teacher" {
				t.Errorf("user = %+v", got.User)
			}
		})
	}
}

func TestIDTokenFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  platformsim.Config
	}{
		{"RS256", platformsim.Config{}},
		{"ES256", platformsim.Config{SigningKey: ecKey()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.cfg)
			student := mustUser(t, e.sim, "1001", platformsim.RoleStudent)
			verifier := e.verifier("1001")
			for _, fault := range platformsim.IDTokenFaults {
				if fault == platformsim.OneRosterMismatch {
					continue // not an id_token fault; see TestOneRosterMismatch
				}
				if err := e.sim.InjectIDTokenFault("1001", fault); err != nil {
					t.Fatal(err)
				}
				f, tok := e.login("1001", student.SourcedID)
				raw, _ := tok.Extra("id_token").(string)
				idt, err := verifier.Verify(e.ctx(), raw)
				switch fault {
				case platformsim.WrongNonce:
					if err != nil {
						t.Errorf("%s: %v", fault, err)
					} else if idt.Nonce == f.nonce || idt.Nonce == "" {
						t.Errorf("%s: nonce %q not changed", fault, idt.Nonce)
					}
				case platformsim.MissingSub:
					// go-oidc accepts a token without sub; the partner must
					// check it.
					if err == nil && idt.Subject != "" {
						t.Errorf("%s: sub = %q", fault, idt.Subject)
					}
				default:
					if err == nil {
						t.Errorf("%s: go-oidc accepted the token", fault)
					}
				}
			}
			// Faults are one-shot: the next login is clean.
			_, tok := e.login("1001", student.SourcedID)
			if _, err := verifier.Verify(e.ctx(), tok.Extra("id_token").(string)); err != nil {
				t.Errorf("after the faults: %v", err)
			}
		})
	}
}

func TestRotateSigningKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{SigningKey: ecKey()})
	user := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	_, tok := e.login("1001", user.SourcedID)
	oldToken := tok.Extra("id_token").(string)
	oldKid := e.sim.SigningKeyID()

	keys := func() []string {
		var set struct {
			Keys []struct{ Kid, Alg, Use string }
		}
		if err := json.NewDecoder(e.get(e.sim.Issuer("1001") + "/jwks").Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		var kids []string
		for _, k := range set.Keys {
			if k.Use != "sig" || k.Alg != "ES256" {
				t.Errorf("key %+v", k)
			}
			kids = append(kids, k.Kid)
		}
		return kids
	}

	newKid, err := e.sim.RotateSigningKey(true)
	if err != nil {
		t.Fatal(err)
	}
	if newKid == oldKid {
		t.Fatal("rotation kept the kid")
	}
	if kids := keys(); len(kids) != 2 || kids[0] != newKid || kids[1] != oldKid {
		t.Fatalf("JWKS after keepOld rotation = %v", kids)
	}
	_, tok = e.login("1001", user.SourcedID)
	newToken := tok.Extra("id_token").(string)
	v := e.verifier("1001")
	for _, raw := range []string{oldToken, newToken} {
		if _, err := v.Verify(e.ctx(), raw); err != nil {
			t.Errorf("keepOld: %v", err)
		}
	}

	if _, err := e.sim.RotateSigningKey(false); err != nil {
		t.Fatal(err)
	}
	if kids := keys(); len(kids) != 1 {
		t.Fatalf("JWKS after hard rotation = %v", kids)
	}
	v = e.verifier("1001")
	if _, err := v.Verify(e.ctx(), oldToken); err == nil {
		t.Error("token of a dropped key still verifies")
	}
}

func TestAuthorizeErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	user := mustUser(t, e.sim, "1001", platformsim.RoleStudent)
	if err := e.sim.SetSignedInUser("1001", user.SourcedID); err != nil {
		t.Fatal(err)
	}
	good := func() url.Values {
		return url.Values{
			"response_type": {"code"}, "scope": {"openid roster-core.readonly"}, "client_id": {platformsim.DefaultClientID},
			"redirect_uri": {e.sim.RedirectURI()}, "state": {"st"}, "nonce": {"n"},
			"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(url.Values)
		status int    // for pages
		error  string // for redirects
	}{
		{"ok", func(url.Values) {}, http.StatusFound, ""},
		{"redirect path differs", func(q url.Values) { q.Set("redirect_uri", partnerURL+"/other") }, http.StatusFound, "invalid_ressource"},
		{"foreign origin", func(q url.Values) { q.Set("redirect_uri", "https://evil.example/launch") }, http.StatusBadRequest, ""},
		{"wrong client", func(q url.Values) { q.Set("client_id", "other") }, http.StatusBadRequest, ""},
		{"no PKCE", func(q url.Values) { q.Del("code_challenge") }, http.StatusFound, "invalid_request"},
		{"plain PKCE", func(q url.Values) { q.Set("code_challenge_method", "plain") }, http.StatusFound, "invalid_request"},
		{"no nonce", func(q url.Values) { q.Del("nonce") }, http.StatusFound, "invalid_request"},
		{"no state", func(q url.Values) { q.Del("state") }, http.StatusFound, "invalid_request"},
		{"no openid", func(q url.Values) { q.Set("scope", "roster-core.readonly") }, http.StatusFound, "invalid_scope"},
		{"token flow", func(q url.Values) { q.Set("response_type", "token") }, http.StatusFound, "unsupported_response_type"},
	} {
		q := good()
		tc.change(q)
		resp := e.get(e.sim.Issuer("1001") + "/authorize?" + q.Encode())
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
			continue
		}
		if resp.StatusCode != http.StatusFound {
			if loc := resp.Header.Get("Location"); loc != "" {
				t.Errorf("%s: redirected to %s", tc.name, loc)
			}
			continue
		}
		loc := e.redirectTo(resp)
		if got := loc.Query().Get("error"); got != tc.error {
			t.Errorf("%s: error = %q, want %q", tc.name, got, tc.error)
		}
		if tc.error == "" && loc.Query().Get("code") == "" {
			t.Errorf("%s: no code", tc.name)
		}
		if loc.Query().Get("iss") != "" {
			t.Errorf("%s: iss sent without IncludeIssParam", tc.name)
		}
	}

	// Injected access_denied, then back to normal; the trailing-slash path
	// works too.
	if err := e.sim.InjectAuthorizeError("1001", "access_denied"); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"access_denied", ""} {
		loc := e.redirectTo(e.get(e.sim.Issuer("1001") + "/authorize/?" + good().Encode()))
		if got := loc.Query().Get("error"); got != want || loc.Query().Get("state") != "st" {
			t.Errorf("injection, request %d: error %q state %q", i, got, loc.Query().Get("state"))
		}
	}

	// Deactivated schools are refused.
	if _, err := e.sim.Deactivate(t.Context(), "1001", false); err == nil {
		t.Fatal("webhook to partner.test should fail to deliver")
	}
	if got := e.redirectTo(e.get(e.sim.Issuer("1001") + "/authorize?" + good().Encode())).Query().Get("error"); got != "access_denied" {
		t.Errorf("deactivated school: error %q", got)
	}
}

func TestIncludeIssParam(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{IncludeIssParam: true})
	_ = e.sim.SetSignedInUser("1002", mustUser(t, e.sim, "1002", platformsim.RoleStudent).SourcedID)
	u := e.oauthConfig("1002").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("n"))
	if got := e.redirectTo(e.get(u)).Query().Get("iss"); got != e.sim.Issuer("1002") {
		t.Errorf("iss = %q", got)
	}
}

// TestUserPicker: without a signed-in user the authorize step shows a
// picker; posting it sets the simulator's cookie and continues.
func TestUserPicker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	admin := mustUser(t, e.sim, "1001", platformsim.RoleAdministrator)
	verifier := oauth2.GenerateVerifier()
	authURL := e.oauthConfig("1001").AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n"))

	resp := e.get(authURL)
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("picker: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var page strings.Builder
	_, _ = io.Copy(&page, resp.Body)
	if !strings.Contains(page.String(), admin.FamilyName) {
		t.Error("picker does not list the users")
	}

	resp = e.do(http.MethodPost, authURL, "", strings.NewReader(url.Values{"user": {admin.SourcedID}}.Encode()),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	back := e.redirectTo(resp)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "sim_user_1001" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != admin.SourcedID {
		t.Fatalf("cookie = %v", cookie)
	}

	// With the cookie the authorize step continues, and the cookie wins
	// over a user set with SetSignedInUser.
	_ = e.sim.SetSignedInUser("1001", mustUser(t, e.sim, "1001", platformsim.RoleStudent).SourcedID)
	resp = e.do(http.MethodGet, e.url+back.String(), "", nil, http.Header{"Cookie": {cookie.String()}})
	code := e.redirectTo(resp).Query().Get("code")
	if code == "" {
		t.Fatal("no code after picking")
	}
	tok, err := e.exchange(flow{tenantID: "1001", code: code, verifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	idt, err := e.verifier("1001").Verify(e.ctx(), tok.Extra("id_token").(string))
	if err != nil || idt.Subject != admin.SourcedID {
		t.Fatalf("sub = %v (%v), want the picked admin", idt, err)
	}
}
