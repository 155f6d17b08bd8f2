package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
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
// A rule ending in "/" matches that path and everything below it ("/assets/" matches
// "/assets/app.css", not "/assets"); any other rule matches exactly one path. "*" stands for any
// characters within one path segment ("/assets/*.css", "/*/health"). Only a request path in
// plain form is ever public: one that is already clean (no "." or ".." segment, no "//") and
// was sent without percent-encoding, backslash or ";" that an app might read differently
// ("/public/..;/private", "/public%2F..%2Fprivate"). Such a path is not refused; it needs a
// session like every other.
type PathRules struct {
	rules []pathRule
}

type pathRule struct {
	segs    []string
	subtree bool
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

func parsePathRule(s string) (pathRule, error) {
	if !strings.HasPrefix(s, "/") {
		return pathRule{}, fmt.Errorf("%q must start with /", s)
	}
	if s == "/" {
		return pathRule{}, errors.New(`"/" would make the whole app public; name the public parts (e.g. /assets/, /health)`)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`?[]\%;#`, c) >= 0 {
			return pathRule{}, fmt.Errorf("%q: only plain paths with * as a wildcard are accepted (no spaces, ?, [, ], \\, %%, ; or #)", s)
		}
	}
	subtree := strings.HasSuffix(s, "/")
	body := strings.TrimSuffix(s[1:], "/")
	segs := strings.Split(body, "/")
	for _, seg := range segs {
		if seg == "" || seg == "." || seg == ".." {
			return pathRule{}, fmt.Errorf("%q is not a clean path (empty, . or .. segment)", s)
		}
	}
	if Reserved(s) {
		return pathRule{}, fmt.Errorf("%q is one of the server's own paths", s)
	}
	return pathRule{segs: segs, subtree: subtree}, nil
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
	segs := strings.Split(p[1:], "/")
	for _, rule := range pr.rules {
		if rule.match(segs) {
			return true
		}
	}
	return false
}

func (rule pathRule) match(segs []string) bool {
	if rule.subtree {
		if len(segs) <= len(rule.segs) {
			return false
		}
	} else if len(segs) != len(rule.segs) {
		return false
	}
	for i, rs := range rule.segs {
		if ok, _ := path.Match(rs, segs[i]); !ok {
			return false
		}
	}
	return true
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
