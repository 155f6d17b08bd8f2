package httpserver_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// TestSignInAgainstAnotherOP: a school whose platform behaves like another certified OpenID
// Provider (endpoints at other paths; only client_secret_basic, or only client_secret_post, at
// the token endpoint) signs its users in through the browser like any other, and the app's page
// then names the school and the lesson, which it reads from OneRoster with the school's
// server-to-server token from the same discovered token endpoint. Nothing marks the school
// failing.
func TestSignInAgainstAnotherOP(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	for _, o := range []platformsim.InteropOptions{
		{AlternativeEndpoints: true, BasicAuthOnly: true},
		{AlternativeEndpoints: true, PostAuthOnly: true},
	} {
		tid := e.newSchool(store.StateActive)
		if err := e.sim.SetInterop(tid, o); err != nil {
			t.Fatal(err)
		}
		u := e.user(tid, platformsim.RoleTeacher)
		lesson := e.sim.Classes(tid)[0]
		launchURL, err := e.sim.LaunchURL(tid, platformsim.EntryLessonDetails, lesson.SourcedID)
		if err != nil {
			t.Fatal(err)
		}
		lu, _ := url.Parse(launchURL)
		b := e.browser()
		b.signInAs(tid, u.SourcedID)
		hops := b.follow(e.app.srv.URL + "/launch?" + lu.RawQuery)
		if len(hops) != 4 {
			t.Fatalf("%+v: want launch -> authorize -> callback -> app, got %d hops; last %d:\n%s", o, len(hops), hops[len(hops)-1].status, hops[len(hops)-1].body)
		}
		if au, _ := url.Parse(hops[0].location); au.Path != "/WebUntis/api/sso/v3/"+tid+"/auth" {
			t.Errorf("%+v: sent to %s, want the discovered /auth", o, au.Path)
		}
		home := hops[3]
		if home.status != http.StatusOK || !strings.Contains(home.body, u.GivenName+" "+u.FamilyName) ||
			!strings.Contains(home.body, lesson.Title) || !strings.Contains(home.body, "School "+tid) {
			t.Errorf("%+v: home = %d, want the user, the lesson %q and the school's name:\n%s", o, home.status, lesson.Title, home.body)
		}
		st := e.sim.Stats()
		if n := st.TokenRequestCount(tid, platformsim.GrantAuthorizationCode); n != 1 {
			t.Errorf("%+v: %d code exchanges, want 1", o, n)
		}
		// The documented /token answers 404 before the simulator counts a request, so these
		// were made at /oauth/token.
		if n := st.TokenRequestCount(tid, platformsim.GrantClientCredentials); n != 1 {
			t.Errorf("%+v: %d client-credentials tokens, want 1", o, n)
		}
		if tn, err := e.store.Tenant(e.ctx(), tid); err != nil || tn.CredentialsFailingSince != nil {
			t.Errorf("%+v: school marked failing: %v %q", o, err, tn.CredentialsFailureReason)
		}
	}
}

// newSchoolID is a school id no other test uses (as newSchool's), for a school the partner does
// not know yet.
func (e *signinEnv) newSchoolID() string { return fmt.Sprintf("%d", 4000+schoolSeq.Add(1)) }

// TestActivateAgainstAnotherOP: manual activation proves the pasted credentials at the token
// endpoint the school's discovery names (the documented one answers 404 there), with the client
// authentication it lists; wrong ones are still refused there, and nothing is stored for them.
func TestActivateAgainstAnotherOP(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	activateURL := e.app.srv.URL + "/activate"
	for _, o := range []platformsim.InteropOptions{
		{AlternativeEndpoints: true},
		{AlternativeEndpoints: true, PostAuthOnly: true},
	} {
		tid := e.obAddSchool(e.newSchoolID())
		if err := e.sim.SetInterop(tid, o); err != nil {
			t.Fatal(err)
		}
		clientID, sec, pw, _ := e.sim.Credentials(tid)
		b := e.browser()
		token := activateForm(t, b)
		if got := b.formPost(activateURL, activateValues(token, tid, clientID, sec, "not-the-password"), nil); got.status == http.StatusOK ||
			!strings.Contains(got.body, "refused") {
			t.Errorf("%+v: wrong password = %d\n%s", o, got.status, got.body)
		}
		if _, err := e.store.ActiveCredentials(e.ctx(), tid); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%+v: refused credentials stored: %v", o, err)
		}
		got := b.formPost(activateURL, activateValues(token, tid, clientID, sec, pw), nil)
		if got.status != http.StatusOK || !strings.Contains(got.body, "The app is activated") {
			t.Fatalf("%+v: activation = %d\n%s", o, got.status, got.body)
		}
		if c, err := e.store.ActiveCredentials(e.ctx(), tid); err != nil || c.Password != pw {
			t.Errorf("%+v: stored %v", o, err)
		}
		if _, home := e.obSignIn(tid, platformsim.RoleTeacher); home.status != http.StatusOK || !strings.Contains(home.body, "School "+tid) {
			t.Errorf("%+v: sign-in after manual activation: %d\n%s", o, home.status, home.body)
		}
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
