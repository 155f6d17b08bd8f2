package httpserver_test

import (
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
)

// testSetupFields is a SETUP_FIELDS_FILE with one field of each kind.
const testSetupFields = `[
	{"name": "district", "label": "School district", "type": "text", "required": true,
	 "pattern": "[A-Z]{2}-[0-9]{3}", "patternHelp": "must look like AB-123", "help": "As on the ministry's list."},
	{"name": "contact", "label": "Contact e-mail", "type": "email"},
	{"name": "homepage", "label": "Homepage", "type": "url"},
	{"name": "plan", "label": "Plan", "type": "select", "options": ["basic", {"value": "pro", "label": "Professional"}]},
	{"name": "terms", "label": "I accept the terms of use", "type": "checkbox", "required": true}
]`

func parseSetupFields(t testing.TB) setup.Fields {
	t.Helper()
	fs, err := setup.Parse([]byte(testSetupFields))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// validSetup is a complete, valid answer to testSetupFields.
func validSetup(csrf string) url.Values {
	return url.Values{"csrf": {csrf}, "district": {"AB-123"}, "contact": {"office@school.example"},
		"homepage": {"https://school.example/"}, "plan": {"pro"}, "terms": {"on"}}
}

func (e *signinEnv) answersOf(tid string) map[string]string {
	e.t.Helper()
	a, err := e.store.SetupAnswers(e.ctx(), tid)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func TestSetupForm(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{setupFields: parseSetupFields(t)})
	setupURL := e.app.srv.URL + "/setup"

	// Activated by the platform's webhook, the school waits for its setup.
	a := "6501"
	e.obActivate(a)
	if s := e.obState(a); s != store.StatePendingSetup {
		t.Fatalf("after CREATED with setup fields: state %q", s)
	}
	admin, page := e.obSignIn(a, platformsim.RoleAdministrator)
	if page.status != http.StatusOK || !strings.HasSuffix(page.url, "/setup") {
		t.Fatalf("the admin lands on %s (%d), want /setup", page.url, page.status)
	}
	for _, want := range []string{`<form method="post" action="/setup"`, "School district", "Contact e-mail", "Homepage",
		"Professional", "I accept the terms of use", "As on the ministry&#39;s list.", "Finish the setup"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the setup page has no %q", want)
		}
	}
	csrf := obCSRF(t, page.body)

	teacher, tpage := e.obSignIn(a, platformsim.RoleTeacher)
	if tpage.status != http.StatusOK || !strings.Contains(tpage.body, "being set up") {
		t.Errorf("a teacher of a pending school sees %d:\n%s", tpage.status, tpage.body)
	}
	nothingStored := func(t *testing.T) {
		t.Helper()
		if ans := e.answersOf(a); len(ans) != 0 || e.obState(a) != store.StatePendingSetup {
			t.Errorf("answers %v, state %q; want nothing stored, still pending", ans, e.obState(a))
		}
	}

	t.Run("not the admin", func(t *testing.T) {
		if got := teacher.get(setupURL); got.status != http.StatusForbidden {
			t.Errorf("teacher GET /setup = %d", got.status)
		}
		if got := teacher.formPost(setupURL, validSetup(csrf), nil); got.status != http.StatusForbidden {
			t.Errorf("teacher POST /setup = %d", got.status)
		}
		anon := e.browser()
		if got := anon.get(setupURL); got.status != http.StatusUnauthorized {
			t.Errorf("GET /setup without a session = %d", got.status)
		}
		if got := anon.formPost(setupURL, validSetup(csrf), nil); got.status != http.StatusUnauthorized {
			t.Errorf("POST /setup without a session = %d", got.status)
		}
		nothingStored(t)
	})

	t.Run("CSRF", func(t *testing.T) {
		noToken := validSetup("")
		noToken.Del("csrf")
		if got := admin.formPost(setupURL, noToken, nil); got.status != http.StatusForbidden {
			t.Errorf("without a token: %d", got.status)
		}
		// The same admin signed in on another browser has a session, and a token, of its own.
		_, otherPage := e.obSignIn(a, platformsim.RoleAdministrator)
		otherCSRF := obCSRF(t, otherPage.body)
		if otherCSRF == csrf {
			t.Fatal("two sessions share a CSRF token")
		}
		if got := admin.formPost(setupURL, validSetup(otherCSRF), nil); got.status != http.StatusForbidden {
			t.Errorf("with another session's token: %d", got.status)
		}
		nothingStored(t)
	})

	t.Run("cross-origin", func(t *testing.T) {
		for _, h := range []http.Header{
			{"Sec-Fetch-Site": {"cross-site"}},
			{"Origin": {"https://evil.example"}},
		} {
			if got := admin.formPost(setupURL, validSetup(csrf), h); got.status != http.StatusForbidden {
				t.Errorf("POST with %v = %d", h, got.status)
			}
		}
		nothingStored(t)
		// The same request from our own pages goes through CrossOriginProtection (checked below).
	})

	t.Run("invalid answers", func(t *testing.T) {
		bad := url.Values{"csrf": {csrf}, "district": {"ab-12"}, "contact": {"not-an-address"},
			"homepage": {"ftp://files.example"}, "plan": {"gold"}}
		got := admin.formPost(setupURL, bad, nil)
		if got.status != http.StatusBadRequest {
			t.Fatalf("invalid answers: %d", got.status)
		}
		for _, want := range []string{"must look like AB-123", "Please enter one e-mail address", "Please enter a web address starting with https://",
			"Please choose one of the options.", "Please tick this box.", "Nothing was saved",
			`value="ab-12"`, `value="not-an-address"`, `value="ftp://files.example"`} {
			if !strings.Contains(got.body, want) {
				t.Errorf("the page has no %q", want)
			}
		}
		if c := strings.Count(got.body, `aria-invalid="true"`); c != 5 {
			t.Errorf("%d fields marked invalid, want 5", c)
		}
		// One message each: the required district left empty says so.
		bad.Set("district", "")
		if got := admin.formPost(setupURL, bad, nil); got.status != http.StatusBadRequest || !strings.Contains(got.body, "Please fill this in.") {
			t.Errorf("empty required field: %d", got.status)
		}
		nothingStored(t)
	})

	t.Run("valid answers", func(t *testing.T) {
		got := admin.formPost(setupURL, validSetup(csrf), http.Header{"Sec-Fetch-Site": {"same-origin"}, "Origin": {e.app.srv.URL}})
		if got.status != http.StatusSeeOther || got.location != e.app.srv.URL+"/" {
			t.Fatalf("valid setup = %d to %q:\n%s", got.status, got.location, got.body)
		}
		if s := e.obState(a); s != store.StateActive {
			t.Errorf("state %q after the setup", s)
		}
		want := map[string]string{"district": "AB-123", "contact": "office@school.example", "homepage": "https://school.example/",
			"plan": "pro", "terms": "true"}
		if ans := e.answersOf(a); !maps.Equal(ans, want) {
			t.Errorf("stored %v, want %v", ans, want)
		}
		if home := teacher.get(e.app.srv.URL + "/"); home.status != http.StatusOK || !strings.Contains(home.body, "Hello,") {
			t.Errorf("the teacher's home after the setup: %d\n%s", home.status, home.body)
		} else if strings.Contains(home.body, `href="/setup"`) {
			t.Error("a teacher's app page links to the setup")
		}
		// The admin lands on the app, which says the setup is done and links back to it.
		home := admin.get(e.app.srv.URL + "/")
		for _, want := range []string{"The setup is complete: your school&#39;s users can now use the app.", `<a class="button" href="/setup">Open the school&#39;s setup</a>`} {
			if !strings.Contains(home.body, want) {
				t.Errorf("the admin's app page after the setup has no %s:\n%s", want, home.body)
			}
		}
	})

	t.Run("change an answer", func(t *testing.T) {
		page := admin.get(setupURL)
		if page.status != http.StatusOK || !strings.Contains(page.body, `value="AB-123"`) || strings.Contains(page.body, "Finish the setup") {
			t.Fatalf("setup page of an active school: %d\n%s", page.status, page.body)
		}
		form := validSetup(obCSRF(t, page.body))
		form.Set("district", "CD-456")
		got := admin.formPost(setupURL, form, nil)
		if got.status != http.StatusSeeOther || got.location != e.app.srv.URL+"/setup?saved=1" {
			t.Fatalf("change = %d to %q", got.status, got.location)
		}
		saved := admin.get(got.location)
		if !strings.Contains(saved.body, "Your answers are saved.") || !strings.Contains(saved.body, `value="CD-456"`) {
			t.Errorf("after saving:\n%s", saved.body)
		}
		if ans := e.answersOf(a); ans["district"] != "CD-456" || e.obState(a) != store.StateActive {
			t.Errorf("stored %v, state %q", ans, e.obState(a))
		}
	})

	t.Run("the school comes from the session", func(t *testing.T) {
		before := e.answersOf(a)
		b := "6502"
		e.obActivate(b)
		adminB, pageB := e.obSignIn(b, platformsim.RoleAdministrator)
		form := validSetup(obCSRF(t, pageB.body))
		form.Set("district", "ZZ-999")
		for _, k := range []string{"tenantId", "tenant_id", "tenantID", "tenant"} {
			form.Set(k, a)
		}
		got := adminB.formPost(setupURL, form, nil)
		if got.status != http.StatusSeeOther {
			t.Fatalf("B's setup = %d\n%s", got.status, got.body)
		}
		if ans := e.answersOf(b); ans["district"] != "ZZ-999" || e.obState(b) != store.StateActive {
			t.Errorf("B: %v, state %q", ans, e.obState(b))
		}
		if after := e.answersOf(a); !maps.Equal(before, after) {
			t.Errorf("B's admin changed A's answers: %v -> %v", before, after)
		}
	})
}
