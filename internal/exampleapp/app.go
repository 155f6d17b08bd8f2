package exampleapp

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"claimRows": claimRows, "initial": initial, "plus": func(a, b int) int { return a + b }, "when": when, "join": strings.Join,
}).ParseFS(webFS, "web/*.html"))

// app is the example partner app. Its pages are what a partner's own app would do with the
// gateway's headers, the server's platform API and its lifecycle events.
type app struct {
	verifier *verifier
	log      *slog.Logger
	api      *platformAPI // nil: not connected to the platform API
	events   *eventLog
}

// routes is the app's whole HTTP surface. Everything under /public/ (its assets included) and
// /healthz works without a session when the gateway lists them in GATEWAY_PUBLIC_PATHS.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	assets, _ := fs.Sub(webFS, "web/assets")
	mux.Handle("GET /public/assets/", http.StripPrefix("/public/assets/", assetServer(http.FileServerFS(assets))))
	mux.HandleFunc("GET /public/{$}", a.handlePublic)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /ws", a.handleEcho)
	mux.HandleFunc("GET /untis/calendar", a.handleCalendar) // the server asks it for the timetable view
	mux.HandleFunc("POST "+eventsPath, a.handleEvent)       // the server's lifecycle events
	mux.HandleFunc("GET "+eventsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "the server POSTs its lifecycle events here; the app's page of them is /events", http.StatusMethodNotAllowed)
	})
	mux.HandleFunc("GET /teachers", a.handleTeachers)
	mux.HandleFunc("GET /events", a.handleEvents)
	// Every other path shows who is signed in: a launch's return_to, or an entry point's path
	// for a role, lands on some path of the app.
	mux.HandleFunc("GET /", a.handleHome)
	return securityHeaders(mux)
}

// homePage is what the identity page shows.
type homePage struct {
	Path     string
	ID       identity
	Token    verified
	Mismatch []string // header values the verified token contradicts
	Issuer   string
	Audience string
	JWKSURL  string
}

func (a *app) handleHome(w http.ResponseWriter, r *http.Request) {
	id := fromHeaders(r)
	p := homePage{Path: r.URL.Path, ID: id, Issuer: a.verifier.issuer, Audience: a.verifier.audience, JWKSURL: a.verifier.jwksURL}
	if id.Present {
		p.Token = a.verifier.Verify(r.Context(), id.Token)
		if p.Token.OK {
			p.Mismatch = mismatches(id, p.Token.Claims)
		}
	}
	a.render(w, "home.html", p)
}

func (a *app) handlePublic(w http.ResponseWriter, r *http.Request) {
	a.render(w, "public.html", struct{ ID identity }{fromHeaders(r)})
}

// mismatches lists the headers whose values differ from the verified token's claims: the
// token is the proof, the headers a convenience, and they must agree.
func mismatches(id identity, c *claims) []string {
	var out []string
	for _, f := range []struct{ header, got, want string }{
		{HeaderTenantID, id.TenantID, c.TenantID}, {HeaderUserID, id.UserID, c.UserID}, {HeaderRole, id.Role, c.Role},
		{HeaderGivenName, id.GivenName, c.GivenName}, {HeaderFamilyName, id.FamilyName, c.FamilyName},
		{HeaderEmail, id.Email, c.Email}, {HeaderSchoolName, id.SchoolName, c.SchoolName},
	} {
		if f.got != f.want {
			out = append(out, f.header)
		}
	}
	if !samePairs(id.Launch, c.Launch) {
		out = append(out, HeaderLaunch)
	}
	if !samePairs(id.Setup, c.Setup) {
		out = append(out, HeaderSetup)
	}
	return out
}

func samePairs(ps []pair, m map[string]string) bool {
	if len(ps) != len(m) {
		return false
	}
	for _, p := range ps {
		if v, ok := m[p.Key]; !ok || v != p.Value {
			return false
		}
	}
	return true
}

// claimRows are the token's claims as the page lists them.
func claimRows(c *claims) []pair {
	if c == nil {
		return nil
	}
	rows := []pair{{"sub", c.Subject}, {"tenant_id", c.TenantID}, {"user_id", c.UserID}, {"role", c.Role},
		{"given_name", c.GivenName}, {"family_name", c.FamilyName}, {"email", c.Email}, {"school_name", c.SchoolName},
		{"launch", mapText(c.Launch)}, {"setup", mapText(c.Setup)},
		{"iss", c.Issuer}, {"aud", strings.Join(c.Audience, ", ")}}
	if c.IssuedAt != nil {
		rows = append(rows, pair{"iat", c.IssuedAt.Time().UTC().Format("2006-01-02 15:04:05 UTC")})
	}
	if c.Expiry != nil {
		rows = append(rows, pair{"exp", c.Expiry.Time().UTC().Format("2006-01-02 15:04:05 UTC")})
	}
	return rows
}

// when shows an RFC 3339 time as UTC to the second (what does not parse, as it came).
func when(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// initial is the first letter of a name, for the avatar ("?" when there is none).
func initial(name string) string {
	for _, r := range name {
		return strings.ToUpper(string(r))
	}
	return "?"
}

func mapText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " = " + m[k]
	}
	return strings.Join(parts, "; ")
}

func (a *app) render(w http.ResponseWriter, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		a.log.Error("render", "page", name, "err", err)
		http.Error(w, "the page could not be shown", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Who is signed in is this request's business only.
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func assetServer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		h.ServeHTTP(w, r)
	})
}

// securityHeaders: the app's pages load only their own assets and talk only to their own
// origin (the echo socket included). No frame-ancestors: in embed mode the platform frames the
// gateway, and with it this app.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}
