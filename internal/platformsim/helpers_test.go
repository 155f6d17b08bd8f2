package platformsim_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
)

const partnerURL = "http://partner.test"

// ecKey is shared by every ES256 test: one key per process is enough.
var ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// env is a simulator with two small schools, A ("1001") and B ("1002").
type env struct {
	t      *testing.T
	sim    *platformsim.Sim
	url    string
	client *http.Client // does not follow redirects
}

func newEnv(t *testing.T, cfg platformsim.Config) *env {
	t.Helper()
	if cfg.PartnerURL == "" {
		cfg.PartnerURL = partnerURL
	}
	sim, srv := simtest.NewServer(t, cfg)
	for _, id := range []string{"1001", "1002"} {
		if _, err := sim.AddTenant(platformsim.TenantSpec{ID: id, Name: "Schule " + id}); err != nil {
			t.Fatal(err)
		}
	}
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &env{t: t, sim: sim, url: srv.URL, client: client}
}

func (e *env) ctx() context.Context {
	return oidc.ClientContext(e.t.Context(), e.client)
}

// oauthConfig is the partner's OAuth2 configuration for a tenant.
func (e *env) oauthConfig(tenantID string) *oauth2.Config {
	clientID, secret, _, ok := e.sim.Credentials(tenantID)
	if !ok {
		e.t.Fatalf("no tenant %s", tenantID)
	}
	iss := e.sim.Issuer(tenantID)
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURL: e.sim.RedirectURI(),
		Scopes: []string{oidc.ScopeOpenID, "roster-core.readonly"},
		Endpoint: oauth2.Endpoint{
			AuthURL: iss + "/authorize", TokenURL: iss + "/token", AuthStyle: oauth2.AuthStyleInParams,
		},
	}
}

// flow is one started authorization: what the partner kept, and the code.
type flow struct {
	tenantID, state, nonce, verifier, code string
}

// authorize runs the authorize step for the tenant's signed-in user and
// returns the code from the redirect.
func (e *env) authorize(tenantID string) flow {
	e.t.Helper()
	f := flow{tenantID: tenantID, state: rand.Text(), nonce: rand.Text(), verifier: oauth2.GenerateVerifier()}
	u := e.oauthConfig(tenantID).AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier), oidc.Nonce(f.nonce))
	resp := e.get(u)
	loc := e.redirectTo(resp)
	if got := loc.Query().Get("state"); got != f.state {
		e.t.Fatalf("state = %q, want %q", got, f.state)
	}
	if errCode := loc.Query().Get("error"); errCode != "" {
		e.t.Fatalf("authorize error %s: %s", errCode, loc.Query().Get("error_description"))
	}
	f.code = loc.Query().Get("code")
	if f.code == "" {
		e.t.Fatalf("no code in %s", loc)
	}
	return f
}

// exchange redeems the flow's code with x/oauth2.
func (e *env) exchange(f flow) (*oauth2.Token, error) {
	return e.oauthConfig(f.tenantID).Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier))
}

// login signs userID in at tenantID and returns the token response.
func (e *env) login(tenantID, userID string) (flow, *oauth2.Token) {
	e.t.Helper()
	if err := e.sim.SetSignedInUser(tenantID, userID); err != nil {
		e.t.Fatal(err)
	}
	f := e.authorize(tenantID)
	tok, err := e.exchange(f)
	if err != nil {
		e.t.Fatalf("exchange: %v", err)
	}
	return f, tok
}

func (e *env) verifier(tenantID string) *oidc.IDTokenVerifier {
	e.t.Helper()
	p, err := oidc.NewProvider(e.ctx(), e.sim.Issuer(tenantID))
	if err != nil {
		e.t.Fatalf("oidc.NewProvider: %v", err)
	}
	clientID, _, _, _ := e.sim.Credentials(tenantID)
	return p.Verifier(&oidc.Config{ClientID: clientID})
}

func (e *env) get(u string) *http.Response {
	e.t.Helper()
	return e.do(http.MethodGet, u, "", nil, nil)
}

// do sends a request and returns the response with its body read into
// memory (resp.Body is replaced by a re-readable copy).
func (e *env) do(method, u, bearer string, body io.Reader, hdr http.Header) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func (e *env) redirectTo(resp *http.Response) *url.URL {
	e.t.Helper()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("status %d, want a redirect; body %.300s", resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	return loc
}

// oneRoster calls a OneRoster path with a bearer token and decodes the
// JSON answer into v (if non-nil).
func (e *env) oneRoster(path, bearer string, v any) *http.Response {
	e.t.Helper()
	resp := e.do(http.MethodGet, e.url+"/ims/oneroster/v1p1"+path, bearer, nil, nil)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			e.t.Fatalf("decode %s: %v", path, err)
		}
	}
	return resp
}

// clientCredentials asks for a client-credentials token with HTTP Basic.
func (e *env) clientCredentials(tenantID, clientID, password string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.sim.Issuer(tenantID)+"/token",
		strings.NewReader("grant_type=client_credentials&scope=roster-core.readonly"))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, password)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		e.t.Fatalf("decode token answer: %v", err)
	}
	return resp, body
}

// serverToken returns a client-credentials access token for a tenant.
func (e *env) serverToken(tenantID string) string {
	e.t.Helper()
	clientID, _, password, _ := e.sim.Credentials(tenantID)
	resp, body := e.clientCredentials(tenantID, clientID, password)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("client_credentials: %d %v", resp.StatusCode, body)
	}
	return body["access_token"].(string)
}

func mustUser(t *testing.T, sim *platformsim.Sim, tenantID, role string) platformsim.User {
	t.Helper()
	u, ok := sim.UserByRole(tenantID, role)
	if !ok {
		t.Fatalf("tenant %s has no %s", tenantID, role)
	}
	return u
}
