package platformsim_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
)

// BenchmarkLogin measures one full SSO round (authorize, code exchange
// with an ES256 id_token, users/{sub}) against an in-process simulator,
// the platform's share of a partner login.
func BenchmarkLogin(b *testing.B) {
	sim, srv := simtest.NewServer(b, platformsim.Config{PartnerURL: partnerURL, SigningKey: ecKey()})
	sim.SeedDemo()
	user, _ := sim.UserByRole("1001", platformsim.RoleStudent)
	_ = sim.SetSignedInUser("1001", user.SourcedID)
	clientID, secret, _, _ := sim.Credentials("1001")
	iss := sim.Issuer("1001")
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	authURL := iss + "/authorize?" + url.Values{
		"response_type": {"code"}, "scope": {"openid roster-core.readonly"}, "client_id": {clientID},
		"redirect_uri": {sim.RedirectURI()}, "state": {"s"}, "nonce": {"n"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode()

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(authURL)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			form := url.Values{
				"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {clientID},
				"client_secret": {secret}, "redirect_uri": {sim.RedirectURI()}, "code_verifier": {verifier},
			}
			resp, err = client.PostForm(iss+"/token", form)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("token: %d %s", resp.StatusCode, body)
			}
			at := string(body[strings.Index(string(body), `"access_token":"`)+16:])
			at = at[:strings.IndexByte(at, '"')]
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ims/oneroster/v1p1/users/"+user.SourcedID, nil)
			req.Header.Set("Authorization", "Bearer "+at)
			resp, err = client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
