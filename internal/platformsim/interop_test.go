package platformsim_test

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/platformsim"
)

// discoveryDoc fetches a school's discovery document.
func (e *env) discoveryDoc(tenantID string) map[string]any {
	e.t.Helper()
	resp := e.get(e.sim.Issuer(tenantID) + "/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("discovery of %s: %d", tenantID, resp.StatusCode)
	}
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		e.t.Fatal(err)
	}
	return doc
}

// discoveredConfig is a partner configured from the school's discovery, as a standards-minded
// client is: endpoints from the document, the given client authentication.
func (e *env) discoveredConfig(tenantID string, style oauth2.AuthStyle) *oauth2.Config {
	e.t.Helper()
	p, err := oidc.NewProvider(e.ctx(), e.sim.Issuer(tenantID))
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.oauthConfig(tenantID)
	c.Endpoint = p.Endpoint()
	c.Endpoint.AuthStyle = style
	return c
}

// authorizeAt runs the authorize step against the given authorize URL and returns the flow.
func (e *env) authorizeAt(c *oauth2.Config, tenantID, userID string) flow {
	e.t.Helper()
	if err := e.sim.SetSignedInUser(tenantID, userID); err != nil {
		e.t.Fatal(err)
	}
	f := flow{tenantID: tenantID, state: rand.Text(), nonce: rand.Text(), verifier: oauth2.GenerateVerifier()}
	loc := e.redirectTo(e.get(c.AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier), oidc.Nonce(f.nonce))))
	if f.code = loc.Query().Get("code"); f.code == "" {
		e.t.Fatalf("no code in %s", loc)
	}
	return f
}

func TestAlternativeEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	if err := e.sim.SetInterop("1001", platformsim.InteropOptions{AlternativeEndpoints: true}); err != nil {
		t.Fatal(err)
	}
	iss := e.sim.Issuer("1001")
	doc := e.discoveryDoc("1001")
	if doc["authorization_endpoint"] != iss+"/auth" || doc["token_endpoint"] != iss+"/oauth/token" {
		t.Fatalf("discovery names %v and %v", doc["authorization_endpoint"], doc["token_endpoint"])
	}
	if e.sim.AuthorizationEndpoint("1001") != iss+"/auth" || e.sim.TokenEndpoint("1001") != iss+"/oauth/token" {
		t.Errorf("AuthorizationEndpoint/TokenEndpoint = %s, %s", e.sim.AuthorizationEndpoint("1001"), e.sim.TokenEndpoint("1001"))
	}
	// The other school keeps the documented endpoints.
	if doc := e.discoveryDoc("1002"); doc["token_endpoint"] != e.sim.Issuer("1002")+"/token" {
		t.Errorf("school 1002's token endpoint moved too: %v", doc["token_endpoint"])
	}

	teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	// A partner that builds the documented URLs gets 404, at both endpoints and for both grants.
	documented := e.oauthConfig("1001")
	if resp := e.get(documented.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("n"))); resp.StatusCode != http.StatusNotFound {
		t.Errorf("documented /authorize = %d, want 404", resp.StatusCode)
	}
	clientID, _, password, _ := e.sim.Credentials("1001")
	if resp, _ := e.clientCredentials("1001", clientID, password); resp.StatusCode != http.StatusNotFound {
		t.Errorf("client_credentials at the documented /token = %d, want 404", resp.StatusCode)
	}
	discovered := e.discoveredConfig("1001", oauth2.AuthStyleInParams)
	f := e.authorizeAt(discovered, "1001", teacher.SourcedID)
	if _, err := documented.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier)); err == nil {
		t.Error("the documented /token redeemed a code")
	} else if re := (*oauth2.RetrieveError)(nil); !asRetrieveError(err, &re) || re.Response.StatusCode != http.StatusNotFound {
		t.Errorf("documented /token: %v, want 404", err)
	}
	// The 404 did not burn the code: the discovered token endpoint redeems it.
	tok, err := discovered.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		t.Fatalf("exchange at the discovered token endpoint: %v", err)
	}
	if _, err := e.verifier("1001").Verify(e.ctx(), tok.Extra("id_token").(string)); err != nil {
		t.Errorf("id_token: %v", err)
	}
	// The user picker posts back to where it was shown: the alternative path.
	if err := e.sim.SetSignedInUser("1001", ""); err != nil {
		t.Fatal(err)
	}
	picker := e.get(discovered.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("n2")))
	if picker.StatusCode != http.StatusOK || !strings.Contains(bodyOf(picker), `action="/WebUntis/api/sso/v3/1001/auth?`) {
		t.Errorf("picker at the alternative path = %d:\n%.500s", picker.StatusCode, bodyOf(picker))
	}
	// Client credentials live at the alternative token path too.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, iss+"/oauth/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, password)
	if resp, err := e.client.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("client_credentials at /oauth/token = %d", resp.StatusCode)
	}

	// Switched back: the documented paths work and the alternative ones are 404.
	if err := e.sim.SetInterop("1001", platformsim.InteropOptions{}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.clientCredentials("1001", clientID, password); resp.StatusCode != http.StatusOK {
		t.Errorf("documented /token after switching back = %d", resp.StatusCode)
	}
	if resp := e.get(iss + "/auth?client_id=" + clientID); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/auth of a school with documented endpoints = %d, want 404", resp.StatusCode)
	}
	if err := e.sim.SetInterop("9999", platformsim.InteropOptions{}); err == nil {
		t.Error("SetInterop of an unknown school succeeded")
	}
}

func asRetrieveError(err error, re **oauth2.RetrieveError) bool {
	r, ok := err.(*oauth2.RetrieveError)
	if ok {
		*re = r
	}
	return ok && r.Response != nil
}

// bodyOf reads a response of e.do, whose body is in memory.
func bodyOf(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestBasicAuthOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	methods := func(tid string) []string {
		var out []string
		for _, m := range e.discoveryDoc(tid)["token_endpoint_auth_methods_supported"].([]any) {
			out = append(out, m.(string))
		}
		return out
	}
	if got := methods("1001"); !slices.Equal(got, []string{"client_secret_post", "client_secret_basic"}) {
		t.Errorf("default auth methods = %v", got)
	}
	if err := e.sim.SetInterop("1001", platformsim.InteropOptions{BasicAuthOnly: true}); err != nil {
		t.Fatal(err)
	}
	if got := methods("1001"); !slices.Equal(got, []string{"client_secret_basic"}) {
		t.Errorf("basic-only auth methods = %v", got)
	}
	teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)

	// client_secret_post is refused as invalid_client, and burns nothing: the code still works.
	post := e.discoveredConfig("1001", oauth2.AuthStyleInParams)
	f := e.authorizeAt(post, "1001", teacher.SourcedID)
	_, err := post.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier))
	var re *oauth2.RetrieveError
	if !asRetrieveError(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("client_secret_post at a basic-only school: %v, want 401 invalid_client", err)
	}
	if got := re.Response.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic") {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	basic := e.discoveredConfig("1001", oauth2.AuthStyleInHeader)
	if _, err := basic.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Fatalf("client_secret_basic at a basic-only school: %v", err)
	}

	// Both ways at once is refused everywhere (RFC 6749 §2.3), also at a school that takes both.
	for _, tid := range []string{"1001", "1002"} {
		c := e.discoveredConfig(tid, oauth2.AuthStyleInHeader)
		f := e.authorizeAt(c, tid, mustUser(t, e.sim, tid, platformsim.RoleStudent).SourcedID)
		form := url.Values{
			"grant_type": {"authorization_code"}, "code": {f.code}, "code_verifier": {f.verifier},
			"redirect_uri": {c.RedirectURL}, "client_id": {c.ClientID}, "client_secret": {c.ClientSecret},
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, c.Endpoint.TokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || body.Error != "invalid_request" {
			t.Errorf("school %s, secret sent both ways: %d %q, want 400 invalid_request", tid, resp.StatusCode, body.Error)
		}
	}
	// The other school still takes client_secret_post.
	c := e.discoveredConfig("1002", oauth2.AuthStyleInParams)
	f = e.authorizeAt(c, "1002", mustUser(t, e.sim, "1002", platformsim.RoleTeacher).SourcedID)
	if _, err := c.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Errorf("client_secret_post at school 1002: %v", err)
	}
}

// tokenPost sends a token request to url with form as the body, and HTTP Basic when basicUser
// is not empty; it answers the status and the OAuth error code.
func (e *env) tokenPost(url string, form url.Values, basicUser, basicPassword string) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodPost, url, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicUser != "" {
		req.SetBasicAuth(basicUser, basicPassword)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error
}

// TestPostAuthOnly: a school whose token endpoint takes only client_secret_post says so in its
// discovery and enforces it for both grants: HTTP Basic is no client authentication there, and
// the client-credentials grant takes client_id and the password as client_secret in the body.
// Both ways at once stay refused, for the client-credentials grant too.
func TestPostAuthOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	if err := e.sim.SetInterop("1001", platformsim.InteropOptions{PostAuthOnly: true}); err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, m := range e.discoveryDoc("1001")["token_endpoint_auth_methods_supported"].([]any) {
		methods = append(methods, m.(string))
	}
	if !slices.Equal(methods, []string{"client_secret_post"}) {
		t.Errorf("post-only auth methods = %v", methods)
	}
	teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	basic := e.discoveredConfig("1001", oauth2.AuthStyleInHeader)
	f := e.authorizeAt(basic, "1001", teacher.SourcedID)
	_, err := basic.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier))
	var re *oauth2.RetrieveError
	if !asRetrieveError(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
		t.Fatalf("client_secret_basic at a post-only school: %v, want 401 invalid_client", err)
	}
	if _, err := e.discoveredConfig("1001", oauth2.AuthStyleInParams).Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Fatalf("client_secret_post at a post-only school: %v", err)
	}

	tokenURL := e.sim.TokenEndpoint("1001")
	clientID, sec, password, _ := e.sim.Credentials("1001")
	cc := url.Values{"grant_type": {"client_credentials"}}
	inBody := func(id, pw string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {pw}}
		return v
	}
	for _, tc := range []struct {
		name           string
		form           url.Values
		user, pw       string
		status         int
		code           string
		tid, tokenPath string
	}{
		{"Basic at the post-only school", cc, clientID, password, http.StatusUnauthorized, "invalid_client", "1001", tokenURL},
		{"in the body", inBody(clientID, password), "", "", http.StatusOK, "", "1001", tokenURL},
		{"in the body, OIDC secret as password", inBody(clientID, sec), "", "", http.StatusBadRequest, "invalid_grant", "1001", tokenURL},
		{"in the body, wrong password", inBody(clientID, "nope"), "", "", http.StatusUnauthorized, "invalid_client", "1001", tokenURL},
		{"in the body, other client", inBody("other", password), "", "", http.StatusUnauthorized, "invalid_client", "1001", tokenURL},
		{"both ways", inBody(clientID, password), clientID, password, http.StatusBadRequest, "invalid_request", "1001", tokenURL},
		// School 1002 takes the documented HTTP Basic only for this grant, and neither may a
		// client authenticate twice there.
		{"in the body at the documented school", inBody("x", "y"), "", "", http.StatusUnauthorized, "invalid_client", "1002", ""},
		{"both ways at the documented school", inBody("x", "y"), "x", "y", http.StatusBadRequest, "invalid_request", "1002", ""},
	} {
		u := tc.tokenPath
		if u == "" {
			u = e.sim.TokenEndpoint(tc.tid)
			id, _, pw, _ := e.sim.Credentials(tc.tid)
			tc.form.Set("client_id", id)
			tc.form.Set("client_secret", pw)
			if tc.user != "" {
				tc.user, tc.pw = id, pw
			}
		}
		if status, code := e.tokenPost(u, tc.form, tc.user, tc.pw); status != tc.status || code != tc.code {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, code, tc.status, tc.code)
		}
	}
	if err := e.sim.SetInterop("1001", platformsim.InteropOptions{PostAuthOnly: true, BasicAuthOnly: true}); !errors.Is(err, platformsim.ErrAuthOnlyConflict) {
		t.Errorf("both only-switches: %v", err)
	}
}

func TestSigningKeysRotateAndRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{FreshKeys: true})
	jwks := func() ([]string, string) {
		resp := e.get(e.sim.Issuer("1001") + "/jwks")
		var set struct{ Keys []struct{ Kid string } }
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k.Kid)
		}
		return kids, resp.Header.Get("Cache-Control")
	}
	first := e.sim.SigningKeys()
	if kids, cc := jwks(); !slices.Equal(kids, []string{first.Current}) || cc != "max-age=300" || first.MaxAgeSeconds != 300 {
		t.Fatalf("JWKS %v with Cache-Control %q, keys %+v", kids, cc, first)
	}
	if n := e.sim.RemoveOldSigningKeys(); n != 0 {
		t.Errorf("RemoveOldSigningKeys with one key removed %d", n)
	}
	teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	_, tok := e.login("1001", teacher.SourcedID)
	oldToken := tok.Extra("id_token").(string)

	newKid, err := e.sim.RotateSigningKey(true)
	if err != nil {
		t.Fatal(err)
	}
	keys := e.sim.SigningKeys()
	if keys.Current != newKid || !slices.Equal(keys.Published, []string{newKid, first.Current}) {
		t.Fatalf("after rotation: %+v", keys)
	}
	if kids, _ := jwks(); !slices.Equal(kids, keys.Published) {
		t.Errorf("JWKS after rotation %v", kids)
	}
	verifier := e.verifier("1001")
	if _, err := verifier.Verify(e.ctx(), oldToken); err != nil {
		t.Errorf("old token while its key is published: %v", err)
	}
	if n := e.sim.RemoveOldSigningKeys(); n != 1 {
		t.Errorf("removed %d keys, want 1", n)
	}
	if kids, _ := jwks(); !slices.Equal(kids, []string{newKid}) {
		t.Errorf("JWKS after removal %v", kids)
	}
	// A fresh verifier (fresh JWKS) refuses the old token and accepts a new one.
	verifier = e.verifier("1001")
	if _, err := verifier.Verify(e.ctx(), oldToken); err == nil {
		t.Error("a token signed with a removed key verified")
	}
	_, tok = e.login("1001", teacher.SourcedID)
	if _, err := verifier.Verify(e.ctx(), tok.Extra("id_token").(string)); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
}

func TestInteropControlAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{FreshKeys: true})
	post := func(path, body string, v any) int {
		t.Helper()
		resp := e.do(http.MethodPost, e.url+"/sim/api"+path, "", strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
		if v != nil && resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode
	}
	var o platformsim.InteropOptions
	if st := post("/tenants/1001/interop", `{"alternativeEndpoints": true}`, &o); st != http.StatusOK || !o.AlternativeEndpoints || o.BasicAuthOnly {
		t.Fatalf("set alternativeEndpoints: %d %+v", st, o)
	}
	// A partial body keeps the other switch.
	if st := post("/tenants/1001/interop", `{"basicAuthOnly": true}`, &o); st != http.StatusOK || !o.AlternativeEndpoints || !o.BasicAuthOnly {
		t.Fatalf("set basicAuthOnly: %d %+v", st, o)
	}
	if got, _ := e.sim.Interop("1001"); got != o {
		t.Errorf("Interop = %+v, want %+v", got, o)
	}
	resp := e.get(e.url + "/sim/api/tenants/1001/interop")
	var got platformsim.InteropOptions
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got != o {
		t.Errorf("GET interop = %+v (%v)", got, err)
	}
	var ti platformsim.TenantInfo
	if err := json.NewDecoder(e.get(e.url + "/sim/api/tenants/1001").Body).Decode(&ti); err != nil || ti.Interop != o {
		t.Errorf("tenant info interop = %+v (%v)", ti.Interop, err)
	}
	// Only Basic and only the body exclude each other; the refusal changes nothing.
	if st := post("/tenants/1001/interop", `{"postAuthOnly": true}`, nil); st != http.StatusBadRequest {
		t.Errorf("postAuthOnly while basicAuthOnly is on: %d, want 400", st)
	}
	if st := post("/tenants/1001/interop", `{"basicAuthOnly": false, "postAuthOnly": true}`, &o); st != http.StatusOK || !o.PostAuthOnly || o.BasicAuthOnly || !o.AlternativeEndpoints {
		t.Errorf("switch to postAuthOnly: %d %+v", st, o)
	}
	if st := post("/tenants/9999/interop", `{"basicAuthOnly": true}`, nil); st != http.StatusNotFound {
		t.Errorf("unknown school: %d", st)
	}
	if st := post("/tenants/1001/interop", `{"basicAuthOnly": "yes"}`, nil); st != http.StatusBadRequest {
		t.Errorf("bad body: %d", st)
	}

	first := e.sim.SigningKeyID()
	var keys platformsim.SigningKeys
	if st := post("/signing-keys/rotate", ``, &keys); st != http.StatusOK || keys.Current == first || !slices.Equal(keys.Published, []string{keys.Current, first}) {
		t.Fatalf("rotate: %d %+v", st, keys)
	}
	if st := post("/signing-keys/remove-old", ``, &keys); st != http.StatusOK || !slices.Equal(keys.Published, []string{keys.Current}) {
		t.Fatalf("remove-old: %d %+v", st, keys)
	}
	if st := post("/signing-keys/rotate", `{"keepOld": false}`, &keys); st != http.StatusOK || len(keys.Published) != 1 {
		t.Fatalf("rotate without the old key: %d %+v", st, keys)
	}
	var listed platformsim.SigningKeys
	if err := json.NewDecoder(e.get(e.url + "/sim/api/signing-keys").Body).Decode(&listed); err != nil || listed.Current != keys.Current {
		t.Errorf("GET signing-keys = %+v (%v)", listed, err)
	}
}

// TestInteropPage: the simulator's page shows each school's switches and the signing keys, and
// its buttons change them.
func TestInteropPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{FreshKeys: true})
	home := bodyOf(e.get(e.url + "/"))
	for _, want := range []string{
		"Behave like another OpenID Provider", "Endpoints at other paths (/auth, /oauth/token): <strong>off</strong>",
		"accepts only <code>client_secret_basic</code>: <strong>off</strong>", "Rotate signing key now",
		"Remove old keys from JWKS", e.sim.SigningKeyID(), `action="/sim/tenants/1001/interop"`,
	} {
		if !strings.Contains(home, want) {
			t.Errorf("home page lacks %q", want)
		}
	}
	form := func(path string, v url.Values) *http.Response {
		return e.do(http.MethodPost, e.url+path, "", strings.NewReader(v.Encode()),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	}
	resp := form("/sim/tenants/1002/interop", url.Values{"setting": {"alternative-endpoints"}, "on": {"true"}})
	if loc := e.redirectTo(resp); !strings.Contains(loc.Query().Get("msg"), "/oauth/token") || loc.Fragment != "t-1002" {
		t.Errorf("toggle answered %s", loc)
	}
	resp = form("/sim/tenants/1002/interop", url.Values{"setting": {"basic-auth-only"}, "on": {"true"}})
	e.redirectTo(resp)
	if o, _ := e.sim.Interop("1002"); !o.AlternativeEndpoints || !o.BasicAuthOnly {
		t.Errorf("after the page's toggles: %+v", o)
	}
	if o, _ := e.sim.Interop("1001"); o != (platformsim.InteropOptions{}) {
		t.Errorf("school 1001 changed too: %+v", o)
	}
	home = bodyOf(e.get(e.url + "/"))
	if !strings.Contains(home, "Endpoints at other paths (/auth, /oauth/token): <strong>on</strong>") {
		t.Error("the page does not show the switch on")
	}
	// Only the body: turns only-Basic off, and the page says both.
	e.redirectTo(form("/sim/tenants/1002/interop", url.Values{"setting": {"post-auth-only"}, "on": {"true"}}))
	if o, _ := e.sim.Interop("1002"); !o.PostAuthOnly || o.BasicAuthOnly {
		t.Errorf("after the post-only toggle: %+v", o)
	}
	home = bodyOf(e.get(e.url + "/"))
	if !strings.Contains(home, "accepts only <code>client_secret_post</code>: <strong>on</strong>") ||
		strings.Contains(home, "accepts only <code>client_secret_basic</code>: <strong>on</strong>") {
		t.Error("the page does not show post-only on and basic-only off")
	}
	if resp := form("/sim/tenants/1002/interop", url.Values{"setting": {"bogus"}, "on": {"true"}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown setting: %d", resp.StatusCode)
	}
	first := e.sim.SigningKeyID()
	e.redirectTo(form("/sim/signing-keys/rotate", nil))
	if keys := e.sim.SigningKeys(); keys.Current == first || len(keys.Published) != 2 {
		t.Errorf("after the rotate button: %+v", keys)
	}
	e.redirectTo(form("/sim/signing-keys/remove-old", nil))
	if keys := e.sim.SigningKeys(); len(keys.Published) != 1 {
		t.Errorf("after the remove button: %+v", keys)
	}
	// A cross-site form post is refused, as for every other button.
	resp = e.do(http.MethodPost, e.url+"/sim/signing-keys/rotate", "", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site rotate: %d", resp.StatusCode)
	}
}
