package httpserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"golang.org/x/text/language"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// Pages speak the reader's language. A handler never writes the words of a page: it names
// catalog messages (web/locales/active.LANG.toml) with i18n.T, and render shows them in the
// request's language (see chooseLanguage). The one way to show a translated page or error:
//
//	s.renderError(w, r, http.StatusNotFound, i18n.T("error.not_found.heading"), i18n.T("error.not_found.text"))
//	s.render(w, r, http.StatusOK, page{Page: "signed_out", Title: i18n.T("signed_out.heading")})
//
// and in a template {{t "message.id"}}, {{t "message.id" "Name" .Value}} or {{tt .SomeText}}.
// Every id must be in active.en.toml (the catalog tests check the ids used in Go and in
// templates), and the template lint refuses English written into a template.

// page is the data every template gets.
type page struct {
	Page      string    // which content block to render
	Title     i18n.Text // the document's title (the app's name is added); zero: the app's name alone
	Heading   i18n.Text
	Message   i18n.Text
	RequestID string
	// Back is where the language switch returns to ("": this page, see returnPath).
	Back string
	// Flash says what the last action did (a console action, a saved setup), once.
	Flash i18n.Text

	// Set by render: the language, the links to the other languages, the app's name and logo,
	// where the app's name links to, and the time zone of dates on the page.
	Lang      string
	Languages []languageLink
	App       Branding
	Home      string
	Console   bool // an operator console page
	Wide      bool // a page with tables
	Zone      *time.Location

	// The signed-in pages.
	Session    *store.Session
	CSRF       string
	IsAdmin    bool
	School     string
	EntryPoint i18n.Text
	Context    []contextItem

	// Forms: what was sent (never a secret), a message per wrong field.
	Values     map[string]string
	Problems   map[string]i18n.Text
	Fields     []formField // the setup form
	CredFields []credField // a credentials form (activation, the console)
	Pending    bool        // the school is pending setup
	State      string      // a school's state after activation

	// The console.
	Operator          string
	Tenants           []store.TenantSummary
	Tenant            *store.TenantSummary
	TenantID          string
	Audit             []auditRow
	Answers           []answer
	NextAfter         string
	DeactivateProblem i18n.Text
	// The lifecycle events to the partner's app: the events page, a school's own, the count of
	// failed ones the schools page warns about.
	Events       *eventsView
	SchoolEvents []store.OutboxEvent
	FailedEvents int

	// The "sign-in needs cookies" page: the launch to open again, and whether we are in an iFrame.
	Relaunch string
	Embed    bool
}

// CredFieldsWithProblems are the credentials fields the page marks as wrong, for the summary.
func (p page) CredFieldsWithProblems() []credField {
	var out []credField
	for _, f := range p.CredFields {
		if !f.Problem.IsZero() {
			out = append(out, f)
		}
	}
	return out
}

// languageLink is one entry of the language switch.
type languageLink struct {
	Tag, Name, URL string
	Current        bool
}

// Branding is how the pages name the app (APP_NAME, APP_LOGO_URL, APP_ACCENT_COLOR).
type Branding struct {
	Name    string
	LogoURL string // https or a path on this server; "" for none
	Accent  string // #rrggbb; "" keeps the built-in colours
	Theme   bool   // pages link /_untis/theme.css (set when Accent is)
}

// langCookie remembers a user's explicit choice of language (the switch on every page).
const langCookie = "__Host-untis-lang"

// langRoute switches the language: GET /_untis/lang?to=de&return=/path.
const langRoute = "/_untis/lang"

// pageTemplates parses the templates once per shipped language, each with that language's words.
func pageTemplates(cat *i18n.Catalog) (map[language.Tag]*template.Template, error) {
	out := map[language.Tag]*template.Template{}
	for _, tag := range cat.Languages() {
		t, err := web.Templates(templateFuncs(cat.Localizer(tag)))
		if err != nil {
			return nil, fmt.Errorf("templates: %w", err)
		}
		out[tag] = t
	}
	return out, nil
}

// templateFuncs are the words and dates of one language, for the templates.
func templateFuncs(l *i18n.Localizer) template.FuncMap {
	named := func(prefix string) func(string) string {
		return func(v string) string {
			if v == "" {
				v = "unknown"
			}
			s, err := l.Localize(i18n.T(prefix + v))
			if err != nil {
				return v // a value no catalog names (a newer platform's role): as it is
			}
			return s
		}
	}
	in := func(f func(time.Time) string) func(time.Time, *time.Location) string {
		return func(t time.Time, loc *time.Location) string {
			if loc == nil {
				loc = time.UTC
			}
			return f(t.In(loc))
		}
	}
	return template.FuncMap{
		"t":      func(id string, kv ...any) string { return l.MustLocalize(i18n.T(id, kv...)) },
		"tt":     l.MustLocalize,
		"role":   named("role."),
		"state":  named("state."),
		"source": named("source."),
		// A lifecycle event's type (school.activated) and delivery status (pending, ...).
		"eventtype":   named("event_type."),
		"eventstatus": named("event_status."),
		"date":        in(l.Date),
		"datetime":    in(l.DateTime),
		// stamp is the console's compact time, in UTC with the zone named.
		"stamp": func(v any) string {
			switch t := v.(type) {
			case time.Time:
				return l.Stamp(t.UTC())
			case *time.Time:
				if t != nil {
					return l.Stamp(t.UTC())
				}
			}
			return "–"
		},
	}
}

// handleStatic serves the server's static files, under /_untis/static/ (and /static/ outside
// gateway mode, where that path is the app's).
func (s *Server) handleStatic(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	prefix := "/static/"
	if strings.HasPrefix(r.URL.Path, "/_untis/static/") {
		prefix = "/_untis/static/"
	}
	http.StripPrefix(prefix, http.FileServerFS(web.Static())).ServeHTTP(w, r)
}

// handleFavicon serves the pages' icon, not cached (no-store, like the pages): at
// /_untis/favicon.svg, which every page links (in gateway mode too, where /favicon.ico is the
// app's), and at /favicon.ico, where browsers look by themselves, outside gateway mode. Linked
// as a cacheable /static/favicon.svg instead, the icon let Chromium restore a page from its
// back/forward cache after the user signed out, so that Back showed the previous user again
// (TestBrowserSignOut caught it).
func (s *Server) handleFavicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	b, _ := fs.ReadFile(web.Static(), "favicon.svg")
	_, _ = w.Write(b)
}

// handleTheme serves the accent colour (APP_ACCENT_COLOR) as a style sheet: the pages' CSP
// allows style sheets from 'self' only, never inline styles, so the colour cannot go into the
// page itself.
func (s *Server) handleTheme(w http.ResponseWriter, r *http.Request) {
	if s.brand.Accent == "" {
		s.handleNotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "public, max-age=3600")
	fg := "#fff"
	if lightColour(s.brand.Accent) {
		fg = "#111"
	}
	// The value was checked to be #rrggbb when the configuration was read.
	fmt.Fprintf(w, ":root { --accent: %s; --accent-fg: %s; }\n", s.brand.Accent, fg)
}

// lightColour reports whether text on c should be dark (WCAG relative luminance above ~0.18,
// where black text contrasts better than white).
func lightColour(c string) bool {
	if len(c) != 7 {
		return false
	}
	lin := func(h string) float64 {
		v, _ := strconv.ParseUint(h, 16, 8)
		x := float64(v) / 255
		if x <= 0.03928 {
			return x / 12.92
		}
		return math.Pow((x+0.055)/1.055, 2.4)
	}
	l := 0.2126*lin(c[1:3]) + 0.7152*lin(c[3:5]) + 0.0722*lin(c[5:7])
	return l > 0.179
}

// handleLanguage remembers the user's choice of language in a cookie and goes back to the page
// the switch was on. It is a GET that only sets a harmless preference: a forged link can only
// change someone's language, and the return path is a path inside the app, never another site.
func (s *Server) handleLanguage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tag, ok := s.catalog.Supported(q.Get("to"))
	if !ok {
		s.renderError(w, r, http.StatusBadRequest, i18n.T("error.language.heading"), i18n.T("error.language.text"))
		return
	}
	c := &http.Cookie{Name: langCookie, Value: tag.String(), Path: "/", MaxAge: 365 * 24 * 3600,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode}
	if s.embedMode {
		// Inside the platform's iFrame, as the session cookie.
		c.SameSite, c.Partitioned = http.SameSiteNoneMode, true
	}
	http.SetCookie(w, c)
	back, ok := sso.SafeReturnPath(q.Get("return"))
	if !ok {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// chooseLanguage is the request's language: the user's choice (the switch's cookie), else the
// browser's Accept-Language, else the school's language (its credentials webhook's "language";
// only known on a signed-in user's pages), else English.
func (s *Server) chooseLanguage(r *http.Request, school string) language.Tag {
	var choice string
	if c, err := r.Cookie(langCookie); err == nil {
		choice = c.Value
	}
	return s.catalog.Choose(choice, r.Header.Get("Accept-Language"), school)
}

// languageLinks are the language switch's links, back to this page (to the start page from an
// address nothing answers: the switch never repeats an unknown path, which may hold anything).
func (s *Server) languageLinks(r *http.Request, status int, cur language.Tag, back string) []languageLink {
	switch {
	case back != "":
	case status != http.StatusNotFound && status != http.StatusMethodNotAllowed:
		back = returnPath(r)
	default:
		back = "/"
	}
	back = url.QueryEscape(back)
	var out []languageLink
	for _, tag := range s.catalog.Languages() {
		out = append(out, languageLink{Tag: tag.String(), Name: s.catalog.Name(tag), Current: tag == cur,
			URL: langRoute + "?to=" + tag.String() + "&return=" + back})
	}
	return out
}

// returnPath is where the language switch comes back to: this page, or for an answer to a form
// (a POST) the page of the form, when there is one to GET; the sign-in's own address never
// (its answer pages are shown once), and no query but the pages' own harmless ones.
func returnPath(r *http.Request) string {
	p := r.URL.Path
	if p == "/launch" || strings.HasPrefix(p, "/launch/") {
		return "/"
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if r.URL.RawQuery != "" && (p == "/admin" || p == "/activate") {
			return p + "?" + r.URL.RawQuery
		}
		return p
	}
	rc := chi.RouteContext(r.Context())
	for try := p; try != "/" && try != "."; try = path.Dir(try) {
		if rc != nil && rc.Routes != nil && rc.Routes.Match(chi.NewRouteContext(), http.MethodGet, try) {
			return try
		}
	}
	return "/"
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, http.StatusNotFound, i18n.T("error.not_found.heading"), i18n.T("error.not_found.text"))
}

func (s *Server) handleMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	s.renderError(w, r, http.StatusMethodNotAllowed, i18n.T("error.method.heading"), i18n.T("error.method.text"))
}

// renderError shows a plain-words error page. Messages are written for end users; details for
// operators go to the log, keyed by the request id shown on the page.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, status int, heading, message i18n.Text) {
	s.render(w, r, status, page{Page: "error", Title: heading, Heading: heading, Message: message, RequestID: RequestID(r.Context())})
}

// render executes the layout into a buffer first, so a template error becomes a clean 500
// instead of half a page. It picks the language and fills what every page shows.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, p page) {
	var school string
	if p.Session != nil {
		school = p.Session.TenantLanguage
		if p.Zone == nil {
			p.Zone = i18n.SchoolZone(p.Session.TenantCountry, s.schoolZone)
		}
	}
	tag := s.chooseLanguage(r, school)
	p.Lang = tag.String()
	p.Languages = s.languageLinks(r, status, tag, p.Back)
	p.App = s.brand
	if p.Zone == nil {
		p.Zone = s.schoolZone
	}
	if p.Home == "" {
		p.Home = "/"
	}
	if p.Flash.IsZero() {
		p.Flash = s.takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := s.pages[tag].ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.ErrorContext(r.Context(), "render page", "page", p.Page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Language", p.Lang)
	h.Set("Cache-Control", "no-store")
	// The page's words depend on these request headers: no shared cache may mix them up.
	h.Add("Vary", "Accept-Language, Cookie")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
