package httpserver

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// Handler returns the whole HTTP surface of the server (contract.md, "Routes").
//
// Health, readiness and metrics sit outside the application middleware (no body limits or
// security headers needed, and they must keep answering when the application is in trouble), but
// they are still logged and counted.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	// recoverer sits inside requestContext and observe, so a panic is logged with its request id,
	// the 500 page quotes that id, and the request is still logged and counted.
	r.Use(s.requestContext, s.observe, s.recoverer)
	// HEAD is answered wherever GET is (net/http sends the headers and drops the body).
	r.Use(middleware.GetHead)

	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.Handler())

	r.Group(func(r chi.Router) {
		r.Use(s.securityHeaders, limitBody(1<<20))
		if s.proxy == nil {
			// The built-in app. In gateway mode "/", /static/ and /favicon.ico are the app's.
			r.Get("/", s.handleHome)
			r.Get("/static/*", s.handleStatic)
			r.Get("/favicon.ico", s.handleFavicon) // where browsers look by themselves
		}
		r.Get("/_untis/static/*", s.handleStatic) // the server's own files, in both modes
		r.Get("/launch", s.handleLaunch)          // an entry point's launch, and the SSO callback
		r.Get("/api/me", s.handleMe)
		r.Get("/setup", s.handleSetup)
		r.MethodFunc(http.MethodGet, "/logout", s.handleLogout)
		r.MethodFunc(http.MethodPost, "/logout", s.handleLogout)
		r.MethodFunc(http.MethodOptions, "/logout", s.handleLogout) // CORS preflight of WebUntis' call
		// The server's own paths live under /_untis/ (reserved: never a path of the app, in
		// gateway mode neither).
		r.Get(langRoute, s.handleLanguage)            // the language switch on every page
		r.Get("/_untis/theme.css", s.handleTheme)     // APP_ACCENT_COLOR as a style sheet
		r.Get("/_untis/favicon.svg", s.handleFavicon) // the pages' icon (not cached: see handleFavicon)
	})

	// The gateway's machine answers (no page headers): forward-auth for an ingress, any method;
	// the public keys of the X-Untis-Identity assertion.
	r.HandleFunc("/_untis/auth", s.handleForwardAuth)
	r.Get("/.well-known/jwks.json", s.handleJWKS)
	r.Get("/_untis/jwks.json", s.handleJWKS)

	// Forms: a smaller body limit, no state-changing request from another site (besides each
	// form's own CSRF token), and no parameter the database cannot store as text (400 first).
	r.Group(func(r chi.Router) {
		r.Use(s.securityHeaders, limitBody(maxFormBody), s.crossOrigin.Handler, s.refuseBadText)
		r.Post("/setup", s.handleSetupPost) // a school admin, after SSO (session CSRF token)

		// Pages that take credentials are never framed, in embed mode neither.
		r.Group(func(r chi.Router) {
			r.Use(s.neverFramed)
			r.Get("/activate", s.handleActivate) // a school admin with no webhook (form cookie token)
			r.Post("/activate", s.handleActivatePost)
			r.Get("/admin/login", s.handleAdminLogin)
			r.Post("/admin/login", s.handleAdminLoginPost)

			// The operator console: every page needs a console session, every form its CSRF
			// token.
			r.Group(func(r chi.Router) {
				r.Use(s.requireOperator)
				r.Get("/admin", s.handleAdminTenants)
				r.Get("/admin/tenants/{tenantID}", s.handleAdminTenant)
				r.Post("/admin/tenants/{tenantID}/credentials", s.handleAdminCredentials)
				r.Post("/admin/tenants/{tenantID}/deactivate", s.handleAdminDeactivate)
				r.Get("/admin/events", s.handleAdminEvents)
				r.Post("/admin/events/retry-failed", s.handleAdminEventsRetryFailed)
				r.Post("/admin/events/{eventID}/retry", s.handleAdminEventRetry)
				r.Post("/admin/logout", s.handleAdminLogout)
			})
		})
	})

	// The platform's signed webhooks; each route takes both kinds (contract.md). The handler
	// limits the body to 64 KiB itself, so that a refusal is answered and counted like the others.
	r.Post("/webhooks/credentials", s.handleWebhook)
	r.Post("/webhooks/deactivation", s.handleWebhook)

	// The platform's Calendar API (the timetable view), signed like the webhooks. Under /_untis/,
	// which is the server's in gateway mode too, so it never takes a path from the app.
	r.Post(CalendarPath, s.handleCalendar)

	// Error pages are pages too: they get the security headers. In gateway mode every path
	// not routed above is the app's (handleGateway keeps the server's trees, gateway.Reserved).
	if s.proxy != nil {
		r.NotFound(s.handleGateway)
	} else {
		r.NotFound(s.securityHeaders(http.HandlerFunc(s.handleNotFound)).ServeHTTP)
	}
	r.MethodNotAllowed(s.securityHeaders(http.HandlerFunc(s.handleMethodNotAllowed)).ServeHTTP)
	return r
}
