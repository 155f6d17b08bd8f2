package httpserver

import (
	"net/http"
	"strings"
)

// originAllowed reports whether a browser Origin matches one of the platform origin patterns
// (config.Config.PlatformOrigins, normalised "scheme://host[:port]", host optionally "*.domain":
// any subdomain, at least one label deep, never the bare domain).
func originAllowed(origin string, patterns []string) bool {
	origin = strings.ToLower(origin)
	scheme, hostPort, ok := strings.Cut(origin, "://")
	if !ok || hostPort == "" || strings.ContainsAny(hostPort, "/?#@") {
		return false
	}
	for _, p := range patterns {
		if p == origin {
			return true
		}
		pScheme, pHost, _ := strings.Cut(p, "://")
		rest, wild := strings.CutPrefix(pHost, "*.")
		if !wild || pScheme != scheme {
			continue
		}
		if sub, ok := strings.CutSuffix(hostPort, "."+rest); ok && sub != "" && !strings.Contains(sub, ":") {
			return true
		}
	}
	return false
}

// platformCORS answers CORS for a route the platform's pages call from the browser with
// credentials (the Logout-Path): the calling origin is echoed only when it is a platform origin,
// never "*", which credentialed requests may not use anyway. It reports whether the request was
// a preflight, which it has answered.
func (s *Server) platformCORS(w http.ResponseWriter, r *http.Request, methods string) bool {
	h := w.Header()
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	allowed := origin != "" && originAllowed(origin, s.platformOrigins)
	if allowed {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if r.Method != http.MethodOptions {
		return false
	}
	if allowed {
		h.Set("Access-Control-Allow-Methods", methods)
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", "Content-Type")
		}
		h.Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
	return true
}
