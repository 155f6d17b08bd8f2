package httpserver_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// get requests path from srv with header and no redirects followed.
func getPage(t *testing.T, srv *httptest.Server, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The pages speak the browser's language: de-AT and de-CH get German, a language the app does not
// ship English, and <html lang> and Content-Language say which.
func TestPagesSpeakTheBrowsersLanguage(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer srv.Close()
	for _, tc := range []struct {
		accept, lang, home, notFound string
	}{
		{"de-AT,de;q=0.9,en;q=0.8", "de", "Öffnen Sie diese App aus Untis", "Seite nicht gefunden"},
		{"de-CH", "de", "Öffnen Sie diese App aus Untis", "Seite nicht gefunden"},
		{"en-GB,en;q=0.9,de;q=0.8", "en", "Open this app from Untis", "Page not found"},
		{"fr-FR,fr;q=0.9", "en", "Open this app from Untis", "Page not found"},
		{"", "en", "Open this app from Untis", "Page not found"},
		// Italian is partial: its own words where it has them, English for the rest.
		{"it-IT", "it", "Apri questa app da Untis", "Pagina non trovata"},
	} {
		h := http.Header{}
		if tc.accept != "" {
			h.Set("Accept-Language", tc.accept)
		}
		resp, body := getPage(t, srv, http.MethodGet, "/", h)
		if !strings.Contains(body, `<html lang="`+tc.lang+`">`) || !strings.Contains(body, "<h1>"+tc.home+"</h1>") {
			t.Errorf("Accept-Language %q: want lang %s and %q:\n%s", tc.accept, tc.lang, tc.home, body)
		}
		if got := resp.Header.Get("Content-Language"); got != tc.lang {
			t.Errorf("Accept-Language %q: Content-Language %q", tc.accept, got)
		}
		if v := resp.Header.Values("Vary"); !strings.Contains(strings.Join(v, ","), "Accept-Language") {
			t.Errorf("Vary %v does not name Accept-Language", v)
		}
		if _, body := getPage(t, srv, http.MethodGet, "/no/such/page", h); !strings.Contains(body, tc.notFound) {
			t.Errorf("Accept-Language %q: the 404 page has no %q", tc.accept, tc.notFound)
		}
	}
}

// A signed-in user's pages follow the browser first, then the school's language from its
// credentials webhook, then English.
func TestSchoolLanguageAfterTheBrowsers(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	for i, tc := range []struct {
		school, accept, want string
	}{
		{"de", "", "Hallo, "},
		{"de", "fr-FR,fr;q=0.9", "Hallo, "},
		{"de", "en-US,en", "Hello, "},
		{"en", "de-AT", "Hallo, "},
		{"xx", "", "Hello, "}, // a language the app does not ship
	} {
		tid := strconv.Itoa(6911 + i)
		if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: tid, Name: "School " + tid, Language: tc.school}); err != nil {
			t.Fatal(err)
		}
		res, err := e.sim.Activate(e.ctx(), tid)
		if err != nil || res.Status != http.StatusOK {
			t.Fatalf("CREATED for %s: %v %+v", tid, err, res)
		}
		b := e.browser()
		b.lang = tc.accept
		b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
		page := b.launch(launchQuery(tid))
		if page.status != http.StatusOK || !strings.Contains(page.body, tc.want) {
			t.Errorf("school language %q, Accept-Language %q: want %q:\n%s", tc.school, tc.accept, tc.want, page.body)
		}
	}
}

// The language switch on every page remembers the choice in a cookie and goes back to the page,
// but never to another site, and never repeats an address nothing answers.
func TestLanguageSwitch(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer srv.Close()

	resp, _ := getPage(t, srv, http.MethodGet, "/_untis/lang?to=de&return="+url.QueryEscape("/admin?after=5"), nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/admin?after=5" {
		t.Fatalf("switch = %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var choice *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "__Host-untis-lang" {
			choice = c
		}
	}
	if choice == nil || choice.Value != "de" || !choice.Secure || !choice.HttpOnly || choice.Path != "/" || choice.SameSite != http.SameSiteLaxMode || choice.MaxAge < 86400 {
		t.Fatalf("choice cookie %+v", choice)
	}
	// The choice beats the browser's languages.
	_, body := getPage(t, srv, http.MethodGet, "/", http.Header{"Accept-Language": {"en-US,en"}, "Cookie": {"__Host-untis-lang=de"}})
	if !strings.Contains(body, `<html lang="de">`) {
		t.Errorf("with the choice cookie the page is not German:\n%s", body)
	}
	// Only paths inside the app.
	for _, back := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "/%2f%2fevil.example", "", "javascript:alert(1)", "/launch?tenant_id=1"} {
		resp, _ := getPage(t, srv, http.MethodGet, "/_untis/lang?to=en&return="+url.QueryEscape(back), nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
			t.Errorf("return %q: %d to %q, want /", back, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// A language the app does not ship: a page that says so, and no cookie.
	resp, body = getPage(t, srv, http.MethodGet, "/_untis/lang?to=klingon&return=/", http.Header{"Accept-Language": {"de"}})
	if resp.StatusCode != http.StatusBadRequest || len(resp.Cookies()) != 0 || !strings.Contains(body, "Diese Sprache ist nicht verfügbar") {
		t.Errorf("unknown language = %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	// The links on a page: every language, back to this page; from an unknown address back to
	// the start page (the path is never repeated).
	_, body = getPage(t, srv, http.MethodGet, "/", nil)
	for _, want := range []string{`href="/_untis/lang?to=de&amp;return=%2F" lang="de" hreflang="de">Deutsch</a>`,
		`href="/_untis/lang?to=it&amp;return=%2F" lang="it" hreflang="it">Italiano</a>`, `<span aria-current="true" lang="en">English</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("the start page has no %s", want)
		}
	}
	_, body = getPage(t, srv, http.MethodGet, "/secret-looking/path-part", nil)
	if strings.Contains(body, "secret-looking") || !strings.Contains(body, "return=%2F") {
		t.Errorf("the 404 page's switch repeats the path:\n%s", body)
	}

	// In embed mode the choice travels inside the platform's iFrame, like the session.
	embed := httptest.NewServer(httpserver.New(httpserver.Deps{EmbedMode: true}).Handler())
	defer embed.Close()
	resp, _ = getPage(t, embed, http.MethodGet, "/_untis/lang?to=de&return=/", nil)
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "SameSite=None") || !strings.Contains(sc, "Partitioned") {
		t.Errorf("embed mode choice cookie %q", sc)
	}
}

// HEAD is answered wherever GET is, with GET's status and headers and no body.
func TestHeadWhereverGet(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "6951", Name: "Head School"}, store.StateActive)
	srv := e.app.srv
	for _, p := range []string{"/", "/healthz", "/readyz", "/metrics", "/static/app.css", "/static/favicon.svg", "/favicon.ico", "/_untis/favicon.svg", "/_untis/static/app.css", "/activate",
		"/admin/login", "/admin", "/admin/events", "/setup", "/api/me", "/launch?tenant_id=" + tid, "/launch", "/logout", "/_untis/lang?to=de&return=/",
		"/no/such/page"} {
		get, getBody := getPage(t, srv, http.MethodGet, p, nil)
		head, headBody := getPage(t, srv, http.MethodHead, p, nil)
		if head.StatusCode != get.StatusCode || headBody != "" {
			t.Errorf("HEAD %s = %d with %d bytes; GET = %d", p, head.StatusCode, len(headBody), get.StatusCode)
		}
		if ct := head.Header.Get("Content-Type"); ct != get.Header.Get("Content-Type") {
			t.Errorf("HEAD %s: Content-Type %q, GET's %q", p, ct, get.Header.Get("Content-Type"))
		}
		if get.StatusCode == http.StatusOK && getBody == "" {
			t.Errorf("GET %s has no body", p)
		}
	}
	// A POST-only route still refuses HEAD.
	if head, _ := getPage(t, srv, http.MethodHead, "/webhooks/credentials", nil); head.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("HEAD of a POST-only route = %d", head.StatusCode)
	}
}

// APP_NAME names the app in every page's title and header; APP_LOGO_URL shows a logo (and only
// its origin is added to the CSP's img-src); APP_ACCENT_COLOR is a style sheet of ours, never an
// inline style.
func TestBranding(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{Brand: httpserver.Branding{
		Name: "Klassenbuch Plus", LogoURL: "https://cdn.partner.example/logo.svg", Accent: "#ffcc00"}}).Handler())
	defer srv.Close()
	resp, body := getPage(t, srv, http.MethodGet, "/", nil)
	for _, want := range []string{"<title>Open this app from Untis – Klassenbuch Plus</title>", "<span>Klassenbuch Plus</span>",
		`<img class="logo" src="https://cdn.partner.example/logo.svg" alt="">`, `<link rel="stylesheet" href="/_untis/theme.css">`,
		`<link rel="icon" href="/_untis/favicon.svg" type="image/svg+xml">`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page has no %s", want)
		}
	}
	if strings.Contains(body, "style=") {
		t.Error("the page has an inline style")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "img-src 'self' data: https://cdn.partner.example;") || !strings.Contains(csp, "style-src 'self';") {
		t.Errorf("CSP %q", csp)
	}
	css, sheet := getPage(t, srv, http.MethodGet, "/_untis/theme.css", nil)
	if css.StatusCode != http.StatusOK || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") ||
		!strings.Contains(sheet, "--accent: #ffcc00;") || !strings.Contains(sheet, "--accent-fg: #111;") {
		t.Errorf("theme.css = %d %q", css.StatusCode, sheet)
	}

	plain := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer plain.Close()
	resp, body = getPage(t, plain, http.MethodGet, "/", nil)
	if strings.Contains(body, "theme.css") || strings.Contains(body, "<img") || !strings.Contains(body, "<span>Partner App</span>") {
		t.Errorf("without branding:\n%s", body)
	}
	if strings.Contains(resp.Header.Get("Content-Security-Policy"), "https://") {
		t.Errorf("CSP without a logo %q", resp.Header.Get("Content-Security-Policy"))
	}
	if css, _ := getPage(t, plain, http.MethodGet, "/_untis/theme.css", nil); css.StatusCode != http.StatusNotFound {
		t.Errorf("theme.css without a colour = %d", css.StatusCode)
	}
}

// A flash names one of a few fixed sentences: a forged cookie cannot put words on a page.
func TestFlashCannotCarryWords(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(httpserver.New(httpserver.Deps{}).Handler())
	defer srv.Close()
	for value, want := range map[string]string{
		"setup_saved":               "Your answers are saved.",
		"deactivated.1002.3":        "School 1002 is deactivated; its 3 sessions were ended.",
		"deactivated.1002.1":        "School 1002 is deactivated; its 1 session was ended.",
		"deactivated.<b>hi</b>.3":   "",
		"deactivated.1002.lots":     "",
		"deactivated.1002":          "",
		"credentials.1002.2.evil":   "",
		"Hello-world":               "",
		"setup_saved.extra":         "",
		"event_retried.42":          "Event 42 is queued again: it is sent as soon as its school&#39;s earlier events are.",
		"event_retried.<x>":         "",
		"events_retried.3":          "3 failed events are queued again: each is sent as soon as its school&#39;s earlier events are.",
		"events_retried.1":          "1 failed event is queued again: it is sent as soon as its school&#39;s earlier events are.",
		"events_retried.many":       "",
		"events_retried0":           "There was no failed event to retry.",
		"credentials.1002.2.active": "New credentials for school 1002 are stored (version 2); the school is now: Active.",
	} {
		resp, body := getPage(t, srv, http.MethodGet, "/", http.Header{"Cookie": {"__Host-untis-flash=" + value}})
		shown := strings.Contains(body, `class="flash"`)
		if want == "" && shown || want != "" && !strings.Contains(body, `<p class="flash" role="status">`+want+`</p>`) {
			t.Errorf("flash %q: page shows %v, want %q", value, shown, want)
		}
		if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "__Host-untis-flash=;") || !strings.Contains(sc, "Max-Age=0") {
			t.Errorf("flash %q is not removed: %q", value, sc)
		}
	}
}
