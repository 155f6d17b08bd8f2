package platformsim_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/platformsim"
)

// oauthErrorCode extracts the OAuth error code from an x/oauth2 error.
func oauthErrorCode(t *testing.T, err error) string {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("want a *oauth2.RetrieveError, got %v", err)
	}
	return re.ErrorCode
}

func TestCodeReplayRevokesTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	user := mustUser(t, e.sim, "1001", platformsim.RoleStudent)
	f, tok := e.login("1001", user.SourcedID)
	if resp := e.oneRoster("/users/"+user.SourcedID, tok.AccessToken, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before replay: %d", resp.StatusCode)
	}
	_, err := e.exchange(f)
	if code := oauthErrorCode(t, err); code != "invalid_grant" {
		t.Fatalf("replay: %s", code)
	}
	if resp := e.oneRoster("/users/"+user.SourcedID, tok.AccessToken, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token of a replayed code: %d, want 401", resp.StatusCode)
	}
}

func TestCodeExchangeRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	for _, id := range []string{"1001", "1002"} {
		_ = e.sim.SetSignedInUser(id, mustUser(t, e.sim, id, platformsim.RoleTeacher).SourcedID)
	}
	for _, tc := range []struct {
		name   string
		mangle func(f *flow, conf *oauth2.Config)
		want   string
	}{
		{"cross-tenant code", func(f *flow, conf *oauth2.Config) {
			// A code of school B at school A's token endpoint, with A's
			// credentials: both schools share the client id.
			b := e.authorize("1002")
			f.code, f.verifier = b.code, b.verifier
		}, "invalid_grant"},
		{"wrong verifier", func(f *flow, _ *oauth2.Config) { f.verifier = oauth2.GenerateVerifier() }, "invalid_grant"},
		{"no verifier", func(f *flow, _ *oauth2.Config) { f.verifier = "" }, "invalid_grant"},
		{"wrong redirect_uri", func(_ *flow, conf *oauth2.Config) { conf.RedirectURL = partnerURL + "/elsewhere" }, "invalid_grant"},
		{"made-up code", func(f *flow, _ *oauth2.Config) { f.code = "nope" }, "invalid_grant"},
		{"password instead of secret", func(_ *flow, conf *oauth2.Config) {
			_, _, conf.ClientSecret, _ = e.sim.Credentials("1001")
		}, "invalid_client"},
		{"other school's secret", func(_ *flow, conf *oauth2.Config) {
			_, conf.ClientSecret, _, _ = e.sim.Credentials("1002")
		}, "invalid_client"},
		{"expired code", func(*flow, *oauth2.Config) { e.sim.Advance(61 * time.Second) }, "invalid_grant"},
	} {
		f := e.authorize("1001")
		conf := e.oauthConfig("1001")
		tc.mangle(&f, conf)
		var opts []oauth2.AuthCodeOption
		if f.verifier != "" {
			opts = append(opts, oauth2.VerifierOption(f.verifier))
		}
		_, err := conf.Exchange(e.ctx(), f.code, opts...)
		if err == nil {
			t.Errorf("%s: exchange succeeded", tc.name)
			continue
		}
		if code := oauthErrorCode(t, err); code != tc.want {
			t.Errorf("%s: error %q, want %q", tc.name, code, tc.want)
		}
	}
}

// TestCodeExchangeBasicAuthAndQuery: client_secret_basic works, and so do
// parameters in the query string as the Untis docs show them.
func TestCodeExchangeClientAuthStyles(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	_ = e.sim.SetSignedInUser("1001", mustUser(t, e.sim, "1001", platformsim.RoleTeacher).SourcedID)

	f := e.authorize("1001")
	conf := e.oauthConfig("1001")
	conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	if _, err := conf.Exchange(e.ctx(), f.code, oauth2.VerifierOption(f.verifier)); err != nil {
		t.Fatalf("client_secret_basic: %v", err)
	}

	f = e.authorize("1001")
	clientID, secret, _, _ := e.sim.Credentials("1001")
	q := url.Values{
		"grant_type": {"authorization_code"}, "code": {f.code}, "client_id": {clientID}, "client_secret": {secret},
		"redirect_uri": {e.sim.RedirectURI()}, "code_verifier": {f.verifier},
	}
	resp := e.do(http.MethodPost, e.sim.Issuer("1001")+"/token?"+q.Encode(), "", nil,
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("query-string parameters: %d", resp.StatusCode)
	}
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	clientID, secret, password, _ := e.sim.Credentials("1001")
	_, _, passwordB, _ := e.sim.Credentials("1002")
	for _, tc := range []struct {
		name             string
		clientID, passwd string
		status           int
		error            string
	}{
		{"password", clientID, password, http.StatusOK, ""},
		{"OIDC secret instead of password", clientID, secret, http.StatusBadRequest, "invalid_grant"},
		{"wrong client id", "someone-else", password, http.StatusUnauthorized, "invalid_client"},
		{"wrong password", clientID, "guess", http.StatusUnauthorized, "invalid_client"},
		{"other school's password", clientID, passwordB, http.StatusUnauthorized, "invalid_client"},
	} {
		resp, body := e.clientCredentials("1001", tc.clientID, tc.passwd)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d (%v)", tc.name, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.error != "" {
			if body["error"] != tc.error {
				t.Errorf("%s: error %v, want %s", tc.name, body["error"], tc.error)
			}
			continue
		}
		if body["token_type"] != "Bearer" || body["expires_in"] != 180.0 || body["access_token"] == "" {
			t.Errorf("%s: %v", tc.name, body)
		}
		if _, ok := body["id_token"]; ok {
			t.Errorf("%s: client_credentials answer has an id_token", tc.name)
		}
	}
	if n := e.sim.Stats().TokenRequestCount("1001", platformsim.GrantClientCredentials); n != 5 {
		t.Errorf("token requests counted: %d, want 5", n)
	}
}

func TestTokenEndpointFaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	clientID, _, password, _ := e.sim.Credentials("1001")
	if err := e.sim.FailNextTokenRequests("1001", 2, http.StatusServiceUnavailable, ""); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{503, 503, 200} {
		resp, body := e.clientCredentials("1001", clientID, password)
		if resp.StatusCode != want {
			t.Errorf("request %d: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 503 && (body["error"] != "server_error" || resp.Header.Get("Retry-After") == "") {
			t.Errorf("request %d: %v retry-after %q", i, body, resp.Header.Get("Retry-After"))
		}
	}
	// The other school is not affected.
	_ = e.sim.FailNextTokenRequests("1001", 1, http.StatusBadRequest, "invalid_grant")
	e.serverToken("1002")

	// A slow token endpoint honours the client's deadline.
	e.sim.SetTokenDelay(2 * time.Second)
	defer e.sim.SetTokenDelay(0)
	ctx, cancel := context.WithTimeout(e.t.Context(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.sim.Issuer("1002")+"/token",
		strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	start := time.Now()
	if resp, err := e.client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("slow token endpoint answered before the deadline")
	}
	if time.Since(start) > time.Second {
		t.Error("deadline not honoured")
	}
}

func TestUnknownTenantAndGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	resp, _ := e.clientCredentials("4242", platformsim.DefaultClientID, "x")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown tenant: %d", resp.StatusCode)
	}
	r := e.do(http.MethodPost, e.sim.Issuer("1001")+"/token", "", strings.NewReader("grant_type=password"),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if r.StatusCode != http.StatusBadRequest {
		t.Errorf("password grant: %d", r.StatusCode)
	}
}

// The docs: the token request must be application/x-www-form-urlencoded,
// also with the parameters in the query string.
func TestTokenContentType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	clientID, _, password, _ := e.sim.Credentials("1001")
	for ct, want := range map[string]int{
		"":                                  http.StatusBadRequest,
		"application/json":                  http.StatusBadRequest,
		"text/plain":                        http.StatusBadRequest,
		"application/x-www-form-urlencoded": http.StatusOK,
		"application/x-www-form-urlencoded; charset=UTF-8": http.StatusOK,
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost,
			e.sim.Issuer("1001")+"/token?grant_type=client_credentials", nil)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.SetBasicAuth(clientID, password)
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Content-Type %q: %d, want %d", ct, resp.StatusCode, want)
		}
	}
}
