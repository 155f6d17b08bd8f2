package httpserver

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// Handler returns the whole HTTP surface of the server (contract.md, "Routes").
//
// Health, readiness and metrics sit outside the application middleware (no body limits or
// security headers needed, and they must keep answering when the application is in trouble), but
// they are still logged and counted.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer, s.requestContext, s.observe)

	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.Handler())

	r.Group(func(r chi.Router) {
		r.Use(s.securityHeaders, limitBody(1<<20))
		r.Get("/", s.handleHome)
		r.Get("/static/*", s.handleStatic)
	})

	r.NotFound(s.handleNotFound)
	r.MethodNotAllowed(s.handleMethodNotAllowed)
	return r
}
