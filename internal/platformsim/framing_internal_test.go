package platformsim

import (
	"net/http"
	"testing"
)

// TestFramingAllowed: the simulator reads the partner's framing headers as a browser does.
func TestFramingAllowed(t *testing.T) {
	t.Parallel()
	const sim, partner = "http://localhost:8081", "http://localhost:8080"
	csp := func(v string) http.Header { return http.Header{"Content-Security-Policy": {v}} }
	for _, c := range []struct {
		name     string
		h        http.Header
		embedder string
		allowed  bool
		none     bool
	}{
		{"no headers", http.Header{}, sim, true, false},
		{"outside embed mode", http.Header{
			"Content-Security-Policy": {"default-src 'self'; frame-ancestors 'none'"}, "X-Frame-Options": {"DENY"}}, sim, false, true},
		{"X-Frame-Options DENY alone", http.Header{"X-Frame-Options": {"deny"}}, sim, false, true},
		{"X-Frame-Options SAMEORIGIN, other origin", http.Header{"X-Frame-Options": {"SAMEORIGIN"}}, sim, false, false},
		{"X-Frame-Options SAMEORIGIN, same origin", http.Header{"X-Frame-Options": {"SAMEORIGIN"}}, partner, true, false},
		{"embed mode lists the simulator", csp("default-src 'self'; frame-ancestors 'self' https://*.webuntis.com " + sim), sim, true, false},
		{"embed mode, simulator opened under another name", csp("frame-ancestors 'self' https://*.webuntis.com " + sim), "http://127.0.0.1:8081", false, false},
		{"frame-ancestors wins over X-Frame-Options", http.Header{
			"Content-Security-Policy": {"frame-ancestors " + sim}, "X-Frame-Options": {"DENY"}}, sim, true, false},
		{"wildcard host", csp("frame-ancestors https://*.webuntis.com"), "https://school.webuntis.com", true, false},
		{"wildcard host, bare domain", csp("frame-ancestors https://*.webuntis.com"), "https://webuntis.com", false, false},
		{"wildcard host, other scheme", csp("frame-ancestors https://*.webuntis.com"), "http://school.webuntis.com", false, false},
		{"host without scheme, default port", csp("frame-ancestors school.example"), "https://school.example", true, false},
		{"wrong port", csp("frame-ancestors http://localhost:9999"), sim, false, false},
		{"any port", csp("frame-ancestors http://localhost:*"), sim, true, false},
		{"scheme source", csp("frame-ancestors http:"), sim, true, false},
		{"star", csp("frame-ancestors *"), sim, true, false},
		{"empty list", csp("frame-ancestors"), sim, false, true},
	} {
		v := framingAllowed(c.h, c.embedder, partner)
		if !v.Known || v.Allowed != c.allowed || (!c.allowed && v.NoneAllowed != c.none) {
			t.Errorf("%s: %+v, want allowed %v, none %v", c.name, v, c.allowed, c.none)
		}
	}
}
