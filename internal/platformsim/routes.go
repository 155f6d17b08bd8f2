package platformsim

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

const (
	ssoPrefix       = "/WebUntis/api/sso/v3/"
	oneRosterPrefix = "/ims/oneroster/v1p1"
	maxFormBytes    = 64 << 10
)

// routes lists the simulator's whole HTTP surface.
func (s *Sim) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.logRequests)

	r.Route("/WebUntis/api/sso/v3/{tenantID}", func(r chi.Router) {
		// The v1/v2 SSO examples had a trailing slash and v3's do not;
		// partner code written against either exists, so the SSO
		// endpoints accept both. Nothing else does: OneRoster URLs with a
		// trailing slash are 404, so a partner bug adding one shows.
		r.Use(middleware.StripSlashes)
		r.Get("/.well-known/openid-configuration", s.handleDiscovery)
		r.Get("/jwks", s.handleJWKS)
		r.Get("/authorize", s.atPath(false, s.handleAuthorize))
		// The user picker posts back to the authorize URL; a cross-origin
		// post must not be able to sign someone in.
		r.With(crossOriginProtection).Post("/authorize", s.atPath(false, s.handlePickUser))
		r.Post("/token", s.atPath(false, s.handleToken))
		// A school that behaves like another OP (SetInterop) has them here.
		r.Get(AltAuthorizePath, s.atPath(true, s.handleAuthorize))
		r.With(crossOriginProtection).Post(AltAuthorizePath, s.atPath(true, s.handlePickUser))
		r.Post(AltTokenPath, s.atPath(true, s.handleToken))
	})

	r.Route(oneRosterPrefix, s.oneRosterRoutes)
	r.Route(externPrefix, s.externRoutes)

	// Pages for a person and the JSON control API. Browsers on other
	// origins must not trigger actions here; curl and Go clients (which
	// send no Origin or Sec-Fetch-Site) still can.
	r.Group(func(r chi.Router) {
		r.Use(crossOriginProtection)
		r.Get("/", s.handleHome)
		r.Get("/sim", s.handleHome)
		r.Get("/sim/embed", s.handleEmbed)
		r.Post("/sim/tenants/{tenantID}/signin", s.handleSignIn)
		r.Post("/sim/tenants/{tenantID}/signout", s.handleSignOut)
		r.Post("/sim/tenants/{tenantID}/launch", s.handleLaunch)
		r.Post("/sim/tenants/{tenantID}/interop", s.handleInteropToggle)
		r.Post("/sim/tenants/{tenantID}/timetable", s.handleTimetable)
		r.Post("/sim/signing-keys/{action}", s.handleSigningKeyAction)
		r.Post("/sim/tenants/{tenantID}/{action}", s.handlePageAction)
		r.Route("/sim/api", s.controlRoutes)
	})
	return r
}

func crossOriginProtection(next http.Handler) http.Handler {
	return http.NewCrossOriginProtection().Handler(next)
}

// logRequests logs each request at debug level. When debug logging is off
// it adds nothing to the hot path.
func (s *Sim) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		// Only the path: query strings carry codes and secrets.
		s.log.Debug("platformsim: request", "method", r.Method, "path", r.URL.Path,
			"status", ww.Status(), "duration", time.Since(start))
	})
}

// writeJSON writes v as JSON with status. Errors writing to the client are
// not actionable and are dropped.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
