package httpserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// A school an operator deactivated stays deactivated when someone pastes its (still valid)
// credentials into the public activation page.
func TestActivatePageCannotUndoAnOperatorsDeactivation(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "6901"}, store.StateActive)
	if _, err := e.store.EndTenant(e.ctx(), tid, false, "operator ops@example.com", nil); err != nil {
		t.Fatal(err)
	}
	clientID, secret, password, _ := e.sim.Credentials(tid)
	b := e.browser()
	got := b.formPost(e.app.srv.URL+"/activate", activateValues(activateForm(t, b), tid, clientID, secret, password), nil)
	if got.status != http.StatusForbidden || !strings.Contains(got.body, "operator deactivated") {
		t.Fatalf("POST /activate for a school an operator ended = %d:\n%s", got.status, got.body)
	}
	if state := e.obState(tid); state != store.StateDeactivated || e.obVersions(tid) != 0 {
		t.Fatalf("school %q with %d credentials after the refusal", state, e.obVersions(tid))
	}
}

// The pages that take credentials are never framed, not even in embed mode, where the app's
// own pages may be framed by the platform.
func TestCredentialPagesAreNeverFramed(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{embed: true})
	for _, path := range []string{"/activate", "/admin/login", "/admin"} {
		got := e.browser().get(e.app.srv.URL + path)
		if csp := got.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") ||
			got.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: CSP %q, X-Frame-Options %q; want it never framed", path, csp, got.header.Get("X-Frame-Options"))
		}
	}
	if csp := e.browser().get(e.app.srv.URL + "/").header.Get("Content-Security-Policy"); strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("the app's home page cannot be framed in embed mode: %q", csp)
	}
}

// The home page names the user's school, read once from OneRoster through the user's org
// reference (OneRoster 1.1 types it "org") and kept on the tenant for the console.
func TestHomePageNamesTheSchool(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "6902", Name: "Volksschule Seeblick"}, store.StateActive)
	b, landed := e.obSignIn(tid, "teacher")
	if landed.status != http.StatusOK {
		t.Fatalf("sign-in ended on %d", landed.status)
	}
	if home := b.get(e.app.srv.URL + "/"); !strings.Contains(home.body, "Volksschule Seeblick") {
		t.Fatalf("the home page does not name the school:\n%s", home.body)
	}
	if tn, err := e.store.Tenant(e.ctx(), tid); err != nil || tn.Name != "Volksschule Seeblick" {
		t.Fatalf("tenant name %q (%v), want it kept", tn.Name, err)
	}
}

// Onboarding scenario 3 after a reactivation: the platform deactivated the school (webhook), the
// admin reactivated it but no webhook arrived; the new credentials pasted on /activate bring it
// back, and its users sign in again.
func TestActivateByHandAfterAQuietReactivation(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := "6903"
	e.obActivate(tid)
	if res, err := e.sim.Deactivate(e.ctx(), tid, false); err != nil || res.Status != http.StatusOK {
		t.Fatalf("DEACTIVATION: %v %+v", err, res)
	}
	if err := e.sim.ReactivateWithoutWebhook(tid); err != nil {
		t.Fatal(err)
	}
	if state := e.obState(tid); state != store.StateDeactivated {
		t.Fatalf("school %q before the manual activation", state)
	}
	clientID, secret, password, _ := e.sim.Credentials(tid)
	b := e.browser()
	got := b.formPost(e.app.srv.URL+"/activate", activateValues(activateForm(t, b), tid, clientID, secret, password), nil)
	if got.status != http.StatusOK || !strings.Contains(got.body, "The app is activated") {
		t.Fatalf("POST /activate = %d:\n%s", got.status, got.body)
	}
	if _, landed := e.obSignIn(tid, "teacher"); landed.status != http.StatusOK {
		t.Fatalf("a teacher's sign-in after the manual activation ended on %d", landed.status)
	}
}
