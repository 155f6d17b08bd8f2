package httpserver_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// axeSHA256 is the SHA-256 of testdata/axe/axe.min.js (axe-core 4.14.1; testdata/axe/README.md).
const axeSHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"

// TestBrowserPagesInTwoLanguages loads every main page in a real headless Chromium whose
// languages are German (Austria) and then English: each page must say <html lang> and its
// heading in that language (the catalog's words, which differ between the two), pass axe-core
// without a serious or critical violation, and not scroll sideways at phone width. It saves a
// screenshot of each page at desktop (1280px) and phone (390px) width in .local/screenshots/
// (git-ignored; SCREENSHOT_DIR moves it), for a person to look at.
//
// Like TestBrowserSignIn it is skipped without chromium and chromedriver, unless CI is set.
func TestBrowserPagesInTwoLanguages(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	wd := startWebDriver(t)
	cat, err := i18n.Load(web.Locales())
	if err != nil {
		t.Fatal(err)
	}
	dir := screenshotDir(t)

	for _, lc := range []struct {
		langs string // the browser's languages (Chromium's --accept-lang: no q-values)
		want  language.Tag
	}{{"de-AT,de", language.German}, {"en-GB,en", language.English}} {
		t.Run(lc.want.String(), func(t *testing.T) {
			t.Parallel()
			l := cat.Localizer(lc.want)
			words := func(id string, kv ...any) string { return l.MustLocalize(i18n.T(id, kv...)) }
			fields, err := setup.Parse([]byte(browserSetupFields))
			if err != nil {
				t.Fatal(err)
			}
			e := newSigninEnv(t, signinOptions{setupFields: fields, eventsTarget: "https://app.example.com/untis/events"})
			base := e.app.srv.URL
			const email, pw = "ops@partner.example", "correct horse battery staple"
			e.addOperator(email, pw)
			active := e.school(platformsim.TenantSpec{ID: "8101", Name: "Gymnasium am See"}, store.StateActive)
			pending := e.school(platformsim.TenantSpec{ID: "8102", Name: "Mittelschule Nord"}, store.StatePendingSetup)
			teacher := e.user(active, platformsim.RoleTeacher)
			admin := e.user(pending, platformsim.RoleAdministrator)

			s := wd.newSessionIn(t, lc.langs)
			defer s.dumpOnFailure(t, e)
			s.must(s.cmd(http.MethodPost, "/timeouts", map[string]any{"pageLoad": 15000, "script": 60000, "implicit": 0}, nil))
			check := func(name, heading string) {
				t.Helper()
				s.checkPage(name, lc.want.String(), heading, axe, dir)
			}

			s.open(base + "/")
			check("anonymous", words("anonymous.heading"))

			// The app page, launched from a lesson: names, not ids.
			s.launchFromSim(e.simURL, active, teacher.SourcedID, platformsim.EntryLessonDetails)
			s.waitFor("the app page", func() (bool, string) {
				cur, _ := s.url()
				s.refused(cur)
				return cur == base+"/", cur
			})
			check("app", words("home.hello", "Name", teacher.GivenName+" "+teacher.FamilyName))
			lesson := e.sim.Classes(active)[0]
			body, _ := s.bodyText()
			for _, want := range []string{lesson.Title, lesson.Subjects[0], words("home.context.room")} {
				if !strings.Contains(body, want) {
					t.Errorf("the app page does not name %q:\n%s", want, body)
				}
			}
			if strings.Contains(body, lesson.SourcedID) {
				t.Errorf("the app page shows the lesson's id %s:\n%s", lesson.SourcedID, body)
			}

			// Signed out, then the error pages.
			s.click(s.find(`form[action="/logout"] button`))
			s.waitPage("the signed-out page", base+"/logout", words("signed_out.heading"))
			check("signed-out", words("signed_out.heading"))
			s.open(base + "/launch?tenant_id=8999")
			check("error-unknown-school", words("signin.unknown_school.heading"))
			s.open(base + "/no/such/page")
			check("error-404", words("error.not_found.heading"))

			// The setup form of a pending school's admin, first with a wrong answer.
			s.launchFromSim(e.simURL, pending, admin.SourcedID, platformsim.EntryMainMenu)
			s.waitPage("the setup page", base+"/setup", words("setup.heading"))
			check("setup", words("setup.heading"))
			s.fill("#f-code", "12")
			s.click(s.find(`form[action="/setup"] button`))
			s.waitPage("the setup's problems", base+"/setup", words("setup.problems"))
			if d := s.attribute("#f-code", "aria-describedby"); !strings.Contains(d, "f-code-problem") {
				t.Errorf("the wrong field is described by %q, want its message", d)
			}
			// The deployment's words for its fields, in the page's language where it gave them.
			if body, _ := s.bodyText(); lc.want == language.German && (!strings.Contains(body, "Schulkennzahl") || !strings.Contains(body, "Erwartet: vier Ziffern")) ||
				lc.want == language.English && !strings.Contains(body, "School code") {
				t.Errorf("the setup form's fields in %s:\n%s", lc.want, body)
			}
			if role := s.attribute(".problems", "role"); role != "alert" {
				t.Errorf("the problems' summary has role %q, want alert", role)
			}
			check("setup-problems", words("setup.heading"))

			s.open(base + "/activate")
			check("activate", words("activate.heading"))

			// The console: sign-in, the schools, a school after its deactivation.
			s.open(base + "/admin")
			s.waitPage("the console's sign-in", base+"/admin/login", words("console.login.heading"))
			check("console-login", words("console.login.heading"))
			s.fill("#l-email", email)
			s.fill("#l-pw", pw)
			s.click(s.find(`form[action="/admin/login"] button`))
			s.waitPage("the schools", base+"/admin", words("console.schools.heading"))
			check("console-schools", words("console.schools.heading"))
			s.open(base + "/admin/tenants/" + active)
			form := fmt.Sprintf(`form[action="/admin/tenants/%s/deactivate"]`, active)
			s.fill(form+` input[name="confirm"]`, active)
			s.fill(form+` input[name="reason"]`, "contract ended")
			s.click(s.find(form + " button"))
			flash := words("console.flash.deactivated_none", "Tenant", active)
			s.waitPage("the school's page saying what happened", base+"/admin/tenants/"+active, flash)
			check("console-school", words("console.school.heading", "Tenant", active))

			// The events to the app: the deactivation's event failed for good; the schools page
			// warns, the events page lists it, and "retry every failed event" says what it did.
			if _, err := e.store.Pool().Exec(e.ctx(), `UPDATE events SET status = 'failed', failed_at = now(), attempts = 58,
				last_error = 'HTTP 503 from https://app.example.com/untis/events' WHERE tenant_id = $1`, active); err != nil {
				t.Fatal(err)
			}
			s.open(base + "/admin")
			s.waitPage("the schools' warning", base+"/admin", words("console.schools.failed_events", "Count", 1))
			check("console-schools-warning", words("console.schools.heading"))
			s.click(s.find(`a[href="/admin/events"]`))
			s.waitPage("the events page", base+"/admin/events", words("events.failed.heading"), "HTTP 503", words("event_type.school.deactivated"))
			check("console-events", words("events.heading"))
			s.click(s.find(`form[action="/admin/events/retry-failed"] button`))
			s.waitPage("the events page saying what happened", base+"/admin/events", words("events.flash.retried_failed", "Count", 1))
			check("console-events-retried", words("events.heading"))
		})
	}
}

// TestBrowserGatewayPagesInTwoLanguages: in gateway mode (the partner's app behind the server),
// the pages the server answers itself (open the app from Untis, a school being set up, the app
// not answering) are in the browser's language, styled by the server's own files under
// /_untis/ (the app's /static/ and /favicon.ico are the app's), accessible, and fit a phone.
func TestBrowserGatewayPagesInTwoLanguages(t *testing.T) {
	t.Parallel()
	axe := axeSource(t)
	wd := startWebDriver(t)
	cat, err := i18n.Load(web.Locales())
	if err != nil {
		t.Fatal(err)
	}
	dir := screenshotDir(t)
	// An address where nothing answers: every proxied request is the server's 502 page.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	for _, lc := range []struct {
		langs string
		want  language.Tag
	}{{"de-AT,de", language.German}, {"en-GB,en", language.English}} {
		t.Run(lc.want.String(), func(t *testing.T) {
			t.Parallel()
			l := cat.Localizer(lc.want)
			words := func(id string, kv ...any) string { return l.MustLocalize(i18n.T(id, kv...)) }
			g := newGatewayEnv(t, gatewayOptions{upstreamURL: dead})
			base := g.app.srv.URL
			active := g.school(platformsim.TenantSpec{ID: "8201", Name: "Gymnasium am See"}, store.StateActive)
			pending := g.school(platformsim.TenantSpec{ID: "8202", Name: "Mittelschule Nord"}, store.StatePendingSetup)

			s := wd.newSessionIn(t, lc.langs)
			defer s.dumpOnFailure(t, g.signinEnv)
			s.must(s.cmd(http.MethodPost, "/timeouts", map[string]any{"pageLoad": 15000, "script": 60000, "implicit": 0}, nil))
			check := func(name, heading string) {
				t.Helper()
				// Styled: the server's style sheet loaded (the brand bar is a flex row).
				var display string
				s.script(`return getComputedStyle(document.querySelector(".brand")).display`, &display)
				if display != "flex" {
					t.Errorf("gateway %s: not styled (the brand bar's display is %q)", name, display)
				}
				s.checkPage("gateway-"+name, lc.want.String(), heading, axe, dir)
			}

			s.open(base + "/lessons/7")
			check("anonymous", words("anonymous.heading"))

			s.launchFromSim(g.simURL, pending, g.user(pending, platformsim.RoleTeacher).SourcedID, platformsim.EntryMainMenu)
			s.waitPage("the pending school's page", base+"/", words("pending.heading"))
			check("pending", words("pending.heading"))

			s.launchFromSim(g.simURL, active, g.user(active, platformsim.RoleTeacher).SourcedID, platformsim.EntryMainMenu)
			s.waitPage("the app's 502", base+"/", words("error.upstream_unavailable.heading"))
			check("upstream-unavailable", words("error.upstream_unavailable.heading"))
		})
	}
}

// checkPage checks the current page (lang, heading, accessibility, no sideways scrolling on a
// phone) and saves its screenshots as DIR/NAME-LANG-{desktop,phone}.png.
func (s *wdSession) checkPage(name, lang, heading, axe, dir string) {
	s.t.Helper()
	var got struct {
		Lang string `json:"lang"`
		H1   string `json:"h1"`
	}
	s.script(`return {lang: document.documentElement.lang, h1: (document.querySelector("h1") || {}).textContent || ""}`, &got)
	if got.Lang != lang {
		s.t.Errorf("%s: <html lang=%q>, want %q", name, got.Lang, lang)
	}
	if strings.TrimSpace(got.H1) != heading {
		s.t.Errorf("%s: heading %q, want %q", name, got.H1, heading)
	}
	s.noSeriousViolations(name, axe)
	for _, size := range []struct {
		name  string
		width int
	}{{"desktop", 1280}, {"phone", 390}} {
		s.must(s.cmd(http.MethodPost, "/window/rect", map[string]any{"width": size.width, "height": 900}, nil))
		var m struct{ Scroll, Inner, Height int }
		s.script(`return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, height: document.documentElement.scrollHeight}`, &m)
		if m.Scroll > m.Inner {
			s.t.Errorf("%s at %dpx: the page scrolls sideways (%dpx wide)", name, size.width, m.Scroll)
		}
		// The whole page: the window as tall as the document.
		s.must(s.cmd(http.MethodPost, "/window/rect", map[string]any{"width": size.width, "height": min(max(m.Height+140, 600), 6000)}, nil))
		var png string
		s.must(s.cmd(http.MethodGet, "/screenshot", nil, &png))
		b, err := base64.StdEncoding.DecodeString(png)
		if err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s-%s.png", name, lang, size.name)), b, 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	s.must(s.cmd(http.MethodPost, "/window/rect", map[string]any{"width": 1280, "height": 900}, nil))
}

// noSeriousViolations runs axe-core on the current page and fails the test on each serious or
// critical violation (minor and moderate ones are logged).
func (s *wdSession) noSeriousViolations(name, axe string) {
	s.t.Helper()
	s.must(s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": axe + "\nreturn true;", "args": []any{}}, nil))
	var out string
	s.must(s.cmd(http.MethodPost, "/execute/async", map[string]any{"script": `const done = arguments[arguments.length - 1];
		axe.run(document, {resultTypes: ["violations"]}).then(r => done(JSON.stringify(r.violations.map(v => ({
			id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(" "))})))))
		.catch(e => done("error: " + e));`, "args": []any{}}, &out))
	if strings.HasPrefix(out, "error: ") {
		s.t.Fatalf("%s: axe: %s", name, out)
	}
	var vs []struct {
		ID, Impact, Help string
		Nodes            []string
	}
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		s.t.Fatalf("%s: axe's answer %q: %v", name, out, err)
	}
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			s.t.Errorf("%s: accessibility (%s) %s: %s at %v", name, v.Impact, v.ID, v.Help, v.Nodes)
		} else {
			s.t.Logf("%s: accessibility (%s) %s: %s at %v", name, v.Impact, v.ID, v.Help, v.Nodes)
		}
	}
}

// script runs a synchronous script and decodes its result into out.
func (s *wdSession) script(js string, out any) {
	s.t.Helper()
	s.must(s.cmd(http.MethodPost, "/execute/sync", map[string]any{"script": js, "args": []any{}}, out))
}

// axeSource is the vendored axe-core, checked against its recorded hash.
func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "axe", "axe.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != axeSHA256 {
		t.Fatalf("testdata/axe/axe.min.js is not axe-core 4.14.1 as recorded (sha256 %x); see testdata/axe/README.md", sum)
	}
	return string(b)
}

// screenshotDir is where the screenshots go: SCREENSHOT_DIR, else .local/screenshots/ of the
// repository (git-ignored).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SCREENSHOT_DIR")
	if dir == "" {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".local", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestVendoredAxeIsTheRecordedOne keeps the accessibility check honest even where no browser
// runs: the file is the axe-core release the README names.
func TestVendoredAxeIsTheRecordedOne(t *testing.T) {
	t.Parallel()
	axeSource(t)
}
