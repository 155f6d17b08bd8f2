package httpserver_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// TestSignInAgainstAnotherOP: a school whose platform behaves like another certified OpenID
// Provider (endpoints at other paths, only client_secret_basic at the token endpoint) signs its
// users in through the browser like any other.
func TestSignInAgainstAnotherOP(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	if err := e.sim.SetInterop(tid, platformsim.InteropOptions{AlternativeEndpoints: true, BasicAuthOnly: true}); err != nil {
		t.Fatal(err)
	}
	u := e.user(tid, platformsim.RoleTeacher)
	b := e.browser()
	b.signInAs(tid, u.SourcedID)
	hops := b.follow(e.app.srv.URL + "/launch?tenant_id=" + tid)
	if len(hops) != 4 {
		t.Fatalf("want launch -> authorize -> callback -> app, got %d hops; last %d:\n%s", len(hops), hops[len(hops)-1].status, hops[len(hops)-1].body)
	}
	if au, _ := url.Parse(hops[0].location); au.Path != "/WebUntis/api/sso/v3/"+tid+"/auth" {
		t.Errorf("sent to %s, want the discovered /auth", au.Path)
	}
	if home := hops[3]; home.status != http.StatusOK || !strings.Contains(home.body, u.GivenName+" "+u.FamilyName) {
		t.Errorf("home = %d:\n%s", home.status, home.body)
	}
	if st := e.sim.Stats(); st.TokenRequestCount(tid, platformsim.GrantAuthorizationCode) != 1 {
		t.Errorf("%d code exchanges, want 1", st.TokenRequestCount(tid, platformsim.GrantAuthorizationCode))
	}
}

// TestSignInWithRefusedOIDCSecret: when the platform refuses the school's OIDC secret, the user
// reads in plain words that the school's connection needs attention and who can fix it (no
// security warning), the log names the reason, and operators see the school failing.
func TestSignInWithRefusedOIDCSecret(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	clientID, _, pw, _ := e.sim.Credentials(tid)
	const outdated = "an-outdated-oidc-secret-abcdefghijkl"
	if _, err := e.store.AddCredentials(e.ctx(), tid, store.Credentials{ClientID: clientID, Secret: outdated, Password: pw, Source: "manual"}); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	end := b.launch(launchQuery(tid))
	if end.status != http.StatusFailedDependency || !strings.Contains(end.body, "connection to your school needs attention") ||
		!strings.Contains(end.body, "WebUntis administrator or the provider of this app can fix it") ||
		strings.Contains(end.body, "security checks") {
		t.Errorf("page %d:\n%s", end.status, end.body)
	}
	e.refusal(t, end, "client_rejected")
	if n := e.sessionsOf(tid); n != 0 {
		t.Errorf("%d sessions", n)
	}
	tn, err := e.store.Tenant(e.ctx(), tid)
	if err != nil || tn.CredentialsFailingSince == nil || !strings.HasPrefix(tn.CredentialsFailureReason, store.OIDCSecretRefused) {
		t.Fatalf("failing mark: %v %v %q", err, tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	metrics := b.get(e.app.srv.URL + "/metrics").body
	if !strings.Contains(metrics, "\nplatform_tenants_credentials_failing 1\n") {
		t.Errorf("/metrics does not count the failing school:\n%s", metrics)
	}
	// The operator console shows it, with the reason on the school's page.
	const email, opw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, opw)
	ops, _ := e.consoleBrowser(t, email, opw)
	if row := consoleRow(t, ops.get(e.app.srv.URL+"/admin").body, tid); !strings.Contains(row, "failing since") {
		t.Errorf("console row: %s", row)
	}
	if page := ops.get(e.app.srv.URL + "/admin/tenants/" + tid).body; !strings.Contains(page, "the OIDC secret was refused") {
		t.Errorf("school page lacks the reason:\n%s", page)
	}
	e.logs.AssertNoSecrets(t, outdated)
}

// TestSignInRightAfterKeyRotation: the platform rotates its signing key a second after our JWKS
// fetch; the next sign-in works at once (one more JWKS fetch), not only after the 30 s a key id
// still unknown after a fetch has to wait.
func TestSignInRightAfterKeyRotation(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleStudent).SourcedID)
	jwks := func() int { return e.sim.Stats().JWKSFetches["/WebUntis/api/sso/v3/"+tid+"/jwks"] }
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("first sign-in = %d", end.status)
	}
	if _, err := e.sim.RotateSigningKey(true); err != nil {
		t.Fatal(err)
	}
	e.sim.Advance(time.Second)
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("sign-in a second after the rotation = %d:\n%s", end.status, end.body)
	}
	if n := jwks(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2", n)
	}
	// The old key removed as well: new tokens are signed with the current key, nothing to fetch.
	e.sim.RemoveOldSigningKeys()
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK || jwks() != 2 {
		t.Errorf("sign-in after the removal = %d, %d JWKS fetches", end.status, jwks())
	}
}
