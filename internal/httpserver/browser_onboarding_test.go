package httpserver_test

import (
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
)

// browserSetupFields is the SETUP_FIELDS_FILE of the setup scenario: a required text with a
// pattern, and a choice.
const browserSetupFields = `[
	{"name": "code", "label": "School code", "type": "text", "required": true,
	 "pattern": "[0-9]{4}", "patternHelp": "must be four digits",
	 "translations": {"de": {"label": "Schulkennzahl", "patternHelp": "vier Ziffern"}}},
	{"name": "plan", "label": "Plan", "type": "select", "options": ["basic", {"value": "pro", "label": "Professional"}],
	 "translations": {"de": {"label": "Paket", "options": {"basic": "Basis", "pro": "Profi"}}}}
]`

// TestBrowserOnboarding drives the onboarding forms (the operator console, manual activation and
// the setup form) in a real headless Chromium. Unlike the HTTP tests, the requests are the
// browser's own: it sends Origin and Sec-Fetch-Site, which http.CrossOriginProtection checks on
// every form post, and it must accept the __Host- cookies (form token, console session, app
// session) the forms depend on. A post from another origin is refused, to show the check is in
// play.
//
// Like TestBrowserSignIn it is skipped without chromium and chromedriver, unless CI is set.
func TestBrowserOnboarding(t *testing.T) {
	t.Parallel()
	wd := startWebDriver(t)

	// The console and the activation page share one server and one browser. The browser sees
	// the server at http://127.0.0.1:port, which Chromium treats as secure, so Secure and
	// __Host- cookies work without TLS.
	e := newSigninEnv(t, signinOptions{})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	consoleTID := e.school(platformsim.TenantSpec{ID: "7101", Name: "Gymnasium Nord"}, store.StateActive)
	shared := wd.newSession(t)

	t.Run("console", func(t *testing.T) {
		s := shared.forTest(t)
		defer s.dumpOnFailure(t, e)
		base := e.app.srv.URL

		s.open(base + "/admin")
		s.waitPage("the console's sign-in page", base+"/admin/login", "Console sign-in")
		s.fill("#l-email", email)
		s.fill("#l-pw", pw)
		s.click(s.find(`form[action="/admin/login"] button`))
		s.waitPage("the schools list", base+"/admin", "Schools", email)
		s.hasCookie(operator.CookieName)

		row := fmt.Sprintf(`tr:has(a[href="/admin/tenants/%s"])`, consoleTID)
		if text := s.textOf(row); !strings.Contains(text, consoleTID) || !strings.Contains(text, "Active") {
			t.Errorf("the school's row reads %q, want its id and %q", text, "Active")
		}
		s.click(s.find(row + ` a[href="/admin/tenants/` + consoleTID + `"]`))
		detail := base + "/admin/tenants/" + consoleTID
		s.waitPage("the school's page", detail, "School "+consoleTID, "Deactivate school "+consoleTID)
		if st := s.attribute("dl.facts .state", "class"); st != "state state-"+store.StateActive || s.textOf("dl.facts .state") != "Active" {
			t.Errorf("the school's page shows state %q, want %q", st, store.StateActive)
		}

		form := fmt.Sprintf(`form[action="/admin/tenants/%s/deactivate"]`, consoleTID)
		s.fill(form+` input[name="confirm"]`, consoleTID)
		s.fill(form+` input[name="reason"]`, "browser test")
		s.click(s.find(form + " button"))
		s.waitFor("the school's page showing it deactivated", func() (bool, string) {
			cur, err := s.url()
			s.refused(cur)
			if err != nil || cur != detail {
				return false, fmt.Sprintf("url %q (%v)", cur, err)
			}
			st, err := s.text("dl.facts .state")
			return err == nil && st == "Deactivated", fmt.Sprintf("state %q (%v)", st, err)
		})
		if text, _ := s.bodyText(); !strings.Contains(text, "browser test") {
			t.Errorf("the audit trail does not show the reason:\n%s", text)
		}
		if st := e.obState(consoleTID); st != store.StateDeactivated {
			t.Errorf("stored state %q, want %q", st, store.StateDeactivated)
		}
	})

	t.Run("manual activation", func(t *testing.T) {
		s := shared.forTest(t)
		defer s.dumpOnFailure(t, e)
		base := e.app.srv.URL
		const tid = "7201"
		if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: tid, Name: "Volksschule Süd"}); err != nil {
			t.Fatal(err)
		}
		clientID, sec, pass, ok := e.sim.Credentials(tid)
		if !ok {
			t.Fatalf("the simulator has no credentials for %s", tid)
		}

		s.open(base + "/activate?tenant_id=" + tid)
		s.waitPage("the activation page", base+"/activate?tenant_id="+tid, "Activate the app for your school")
		s.hasCookie(session.FormCookieName)
		if v := s.property("#a-tenant", "value"); v != tid {
			t.Errorf("the tenant id field holds %q, want %q", v, tid)
		}
		s.fill("#a-client", clientID)
		s.fill("#a-secret", sec)
		s.fill("#a-password", pass)
		s.click(s.find(`form[action="/activate"] button`))
		s.waitPage("the activation's answer", base+"/activate", "The app is activated", tid)
		if text, _ := s.bodyText(); strings.Contains(text, sec) || strings.Contains(text, pass) {
			t.Error("the answer page shows a credential")
		}
		if st := e.obState(tid); st != store.StateActive {
			t.Errorf("stored state %q, want %q", st, store.StateActive)
		}
		c, err := e.store.ActiveCredentials(e.ctx(), tid)
		if err != nil || c.ClientID != clientID || c.Secret != sec || c.Password != pass || c.Source != store.SourceManual {
			t.Errorf("stored credentials %+v (%v)", c, err)
		}
	})

	t.Run("cross-origin post refused", func(t *testing.T) {
		// The same form, sent by a page of the simulator (another origin on the same host): the
		// browser marks it, and the server refuses it before the handler sees it.
		s := shared.forTest(t)
		defer s.dumpOnFailure(t, e)
		const tid = "7202"
		if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: tid, Name: "Mittelschule"}); err != nil {
			t.Fatal(err)
		}
		clientID, sec, pass, _ := e.sim.Credentials(tid)
		s.open(e.simURL + "/")
		script := `const f = document.createElement("form");
			f.method = "post"; f.action = arguments[0];
			for (const [k, v] of Object.entries(arguments[1])) {
				const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i);
			}
			document.body.appendChild(f); f.submit();`
		s.must(s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": script, "args": []any{
			e.app.srv.URL + "/activate",
			map[string]string{"tenantId": tid, "clientId": clientID, "secret": sec, "password": pass},
		}}, nil))
		s.waitPage("the server's refusal", e.app.srv.URL+"/activate", "cross-origin request detected from Sec-Fetch-Site header")
		if st := e.obState(tid); st != "" {
			t.Errorf("a cross-origin post stored the school (state %q)", st)
		}
	})

	t.Run("setup", func(t *testing.T) {
		fields, err := setup.Parse([]byte(browserSetupFields))
		if err != nil {
			t.Fatal(err)
		}
		e := newSigninEnv(t, signinOptions{setupFields: fields})
		tid := e.school(platformsim.TenantSpec{ID: "7301", Name: "Berufsschule Mitte"}, store.StatePendingSetup)
		admin := e.user(tid, platformsim.RoleAdministrator)
		// A browser of its own: cookies do not tell ports apart, and this is another server on
		// 127.0.0.1.
		s := wd.newSession(t)
		defer s.dumpOnFailure(t, e)
		base := e.app.srv.URL

		s.launchFromSim(e.simURL, tid, admin.SourcedID, platformsim.EntryMainMenu)
		s.waitPage("the setup page", base+"/setup", "Set up the app", "School code", "Finish the setup")
		s.hasCookie(session.CookieName)

		// A wrong answer: the page comes back with the field's message, nothing is stored.
		s.fill("#f-code", "12")
		s.click(s.find(`#f-plan option[value="pro"]`))
		s.click(s.find(`form[action="/setup"] button`))
		s.waitPage("the field's message", base+"/setup", "must be four digits", "Nothing was saved")
		if inv := s.attribute("#f-code", "aria-invalid"); inv != "true" {
			t.Errorf("the wrong field has aria-invalid %q", inv)
		}
		if v := s.property("#f-plan", "value"); v != "pro" {
			t.Errorf("the choice came back as %q, want pro", v)
		}
		if st, ans := e.obState(tid), e.answersOf(tid); st != store.StatePendingSetup || len(ans) != 0 {
			t.Errorf("after a wrong answer: state %q, answers %v; want pending, none", st, ans)
		}

		// The right answers: the school is ready and the admin sees the app.
		s.fill("#f-code", "2024")
		s.click(s.find(`#f-plan option[value="basic"]`))
		s.click(s.find(`form[action="/setup"] button`))
		s.waitPage("the app's home page", base+"/", "Hello, "+admin.GivenName+" "+admin.FamilyName)
		if st := e.obState(tid); st != store.StateActive {
			t.Errorf("stored state %q, want %q", st, store.StateActive)
		}
		if ans, want := e.answersOf(tid), map[string]string{"code": "2024", "plan": "basic"}; !maps.Equal(ans, want) {
			t.Errorf("stored answers %v, want %v", ans, want)
		}
	})
}

// forTest returns the session for use in a subtest: its checks fail that test.
func (s *wdSession) forTest(t *testing.T) *wdSession {
	c := *s
	c.t = t
	return &c
}

// open navigates the current window to u (and waits for the page to load).
func (s *wdSession) open(u string) {
	s.t.Helper()
	s.must(s.cmd(http.MethodPost, "/url", map[string]any{"url": u}, nil))
}

// fill clears the input matching css and types text into it.
func (s *wdSession) fill(css, text string) {
	s.t.Helper()
	el := s.find(css)
	s.must(s.cmd(http.MethodPost, "/element/"+el.id()+"/clear", map[string]any{}, nil))
	s.must(s.cmd(http.MethodPost, "/element/"+el.id()+"/value", map[string]any{"text": text}, nil))
}

// text is the visible text of the element matching css.
func (s *wdSession) text(css string) (string, error) {
	var el wdElement
	if err := s.cmd(http.MethodPost, "/element", map[string]any{"using": "css selector", "value": css}, &el); err != nil {
		return "", err
	}
	var text string
	err := s.cmd(http.MethodGet, "/element/"+el.id()+"/text", nil, &text)
	return text, err
}

// textOf is text, failing the test when there is no such element.
func (s *wdSession) textOf(css string) string {
	s.t.Helper()
	text, err := s.text(css)
	if err != nil {
		s.t.Fatalf("text of %s: %v", css, err)
	}
	return text
}

// property is a DOM property of the element matching css, as a string.
func (s *wdSession) property(css, name string) string {
	s.t.Helper()
	var v any
	s.must(s.cmd(http.MethodGet, "/element/"+s.find(css).id()+"/property/"+name, nil, &v))
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// attribute is an attribute of the element matching css ("" when absent).
func (s *wdSession) attribute(css, name string) string {
	s.t.Helper()
	var v *string
	s.must(s.cmd(http.MethodGet, "/element/"+s.find(css).id()+"/attribute/"+name, nil, &v))
	if v == nil {
		return ""
	}
	return *v
}

// waitPage waits until the browser shows url with every one of texts in its body.
func (s *wdSession) waitPage(what, url string, texts ...string) {
	s.t.Helper()
	s.waitFor(what, func() (bool, string) {
		cur, err := s.url()
		s.refused(cur)
		if err != nil || cur != url {
			return false, fmt.Sprintf("url %q (%v)", cur, err)
		}
		body, err := s.bodyText()
		if err != nil {
			return false, err.Error()
		}
		for _, want := range texts {
			if !strings.Contains(body, want) {
				return false, fmt.Sprintf("url %q, no %q in %q", cur, want, body)
			}
		}
		return true, ""
	})
}

// hasCookie checks that the browser holds the named cookie for the current page: it accepted
// it (for a __Host- cookie: Secure, no Domain, Path=/).
func (s *wdSession) hasCookie(name string) {
	s.t.Helper()
	var cookies []struct {
		Name     string `json:"name"`
		Path     string `json:"path"`
		Secure   bool   `json:"secure"`
		HTTPOnly bool   `json:"httpOnly"`
	}
	s.must(s.cmd(http.MethodGet, "/cookie", nil, &cookies))
	var names []string
	for _, c := range cookies {
		if c.Name == name {
			if !c.Secure || !c.HTTPOnly || c.Path != "/" {
				s.t.Errorf("cookie %s: %+v", name, c)
			}
			return
		}
		names = append(names, c.Name)
	}
	s.t.Errorf("the browser holds no %s cookie (has %v)", name, names)
}
