package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/untis-partner/server/internal/pathrule"
)

// Reserved paths: the server's own, in gateway mode too. Everything else belongs to the app.
// Every contract route stays where it is; what the server adds lives under /_untis/: forward-auth
// (/_untis/auth), the JWKS, its pages' static files (/_untis/static/), icon (/_untis/favicon.svg;
// /favicon.ico is the app's), language switch (/_untis/lang) and accent colour
// (/_untis/theme.css).
var (
	reservedExact = []string{
		"/launch", "/logout", "/api/me", "/setup", "/activate", "/admin",
		"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json",
	}
	reservedTrees = []string{"/admin/", "/webhooks/", "/_untis/"}
)

// ReservedPaths lists the reserved paths for documentation: exact paths, and subtrees ending in
// "/".
func ReservedPaths() []string {
	return append(append([]string{}, reservedExact...), reservedTrees...)
}

// Reserved reports whether p (a request's decoded path) is one of the server's own paths.
func Reserved(p string) bool {
	for _, r := range reservedExact {
		if p == r {
			return true
		}
	}
	for _, r := range reservedTrees {
		if strings.HasPrefix(p, r) {
			return true
		}
	}
	return false
}

// PathRules are the app's public paths (GATEWAY_PUBLIC_PATHS): proxied without a session.
//
// A rule is a pattern of internal/pathrule: "/assets/" matches everything below /assets (not
// "/assets"), "/assets/*.css" one file name, "/*/health" any first segment. Only a request path in
// plain form is ever public: one that is already clean (no "." or ".." segment, no "//") and
// was sent without percent-encoding, backslash or ";" that an app might read differently
// ("/public/..;/private", "/public%2F..%2Fprivate"). Such a path is not refused; it needs a
// session like every other.
type PathRules struct {
	rules []pathrule.Pattern
}

// ParsePathRules reads a comma-separated list of rules.
func ParsePathRules(v string) (PathRules, error) {
	var pr PathRules
	for s := range strings.SplitSeq(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		r, err := parsePathRule(s)
		if err != nil {
			return PathRules{}, err
		}
		pr.rules = append(pr.rules, r)
	}
	return pr, nil
}

func parsePathRule(s string) (pathrule.Pattern, error) {
	if s == "/" {
		return pathrule.Pattern{}, errors.New(`"/" would make the whole app public; name the public parts (e.g. /assets/, /health)`)
	}
	rule, err := pathrule.Parse(s, s)
	if err != nil {
		return pathrule.Pattern{}, err
	}
	if Reserved(s) {
		return pathrule.Pattern{}, fmt.Errorf("%q is one of the server's own paths", s)
	}
	return rule, nil
}

// Len is the number of rules.
func (pr PathRules) Len() int { return len(pr.rules) }

// Match reports whether the request's path is public.
func (pr PathRules) Match(r *http.Request) bool {
	if len(pr.rules) == 0 {
		return false
	}
	p, ok := plainPath(r)
	if !ok {
		return false
	}
	segs := pathrule.Segments(p)
	for _, rule := range pr.rules {
		if rule.Match(segs) {
			return true
		}
	}
	return false
}

// plainPath returns the request's path when it is in plain form: sent without any
// percent-encoding that changes it, clean, and free of characters that some servers give a
// meaning of their own (";" path parameters, "\" as a separator).
func plainPath(r *http.Request) (string, bool) {
	p := r.URL.Path
	if r.URL.RawPath != "" || p == "" || p[0] != '/' {
		return "", false
	}
	// What came over the wire must say the same: no %-escape at all in the path part.
	if raw := r.RequestURI; raw != "" {
		if i := strings.IndexAny(raw, "?#"); i >= 0 {
			raw = raw[:i]
		}
		if strings.Contains(raw, "%") {
			return "", false
		}
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c <= 0x20 || c >= 0x7f || c == '\\' || c == ';' || c == '%' {
			return "", false
		}
	}
	clean := path.Clean(p)
	if clean != p && clean+"/" != p {
		return "", false
	}
	return p, true
}
