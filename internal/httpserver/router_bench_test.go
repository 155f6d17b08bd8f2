package httpserver

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-chi/chi/v5"
)

// BenchmarkRouterParamRoute measures routing a parametrised route through the full middleware
// stack the server uses (recovery, request id and client IP, logging and metrics, security
// headers, body limit), with the logger discarding.
func BenchmarkRouterParamRoute(b *testing.B) {
	s := New(Deps{})
	r := chi.NewRouter()
	r.Use(s.requestContext, s.observe, s.recoverer, s.securityHeaders, limitBody(1<<20))
	r.Get("/api/tenants/{tenantID}/users/{sub}", func(w http.ResponseWriter, r *http.Request) {
		if chi.URLParam(r, "tenantID") == "" || chi.URLParam(r, "sub") == "" {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	req := httptest.NewRequest(http.MethodGet, "/api/tenants/1001/users/3f1c2a9e-0b7d-4c55-9a31-2d1e7f0c4b8a", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkRouterParamRouteBare is chi alone on the same route, to show what the middleware costs.
func BenchmarkRouterParamRouteBare(b *testing.B) {
	r := chi.NewRouter()
	r.Get("/api/tenants/{tenantID}/users/{sub}", func(w http.ResponseWriter, r *http.Request) {
		if chi.URLParam(r, "tenantID") == "" {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	req := httptest.NewRequest(http.MethodGet, "/api/tenants/1001/users/3f1c2a9e-0b7d-4c55-9a31-2d1e7f0c4b8a", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		r.ServeHTTP(w, req)
	}
}

// BenchmarkErrorPageInGerman renders a whole page with its words from the catalogs: the 404 page
// for a browser that asks for German (language matching, every message looked up).
func BenchmarkErrorPageInGerman(b *testing.B) {
	h := New(Deps{}).Handler()
	req := httptest.NewRequest(http.MethodGet, "/no/such/page", nil)
	req.Header.Set("Accept-Language", "de-AT,de;q=0.9,en;q=0.8")
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusNotFound {
			b.Fatal(w.Code)
		}
	}
}
