package platformsim

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The simulator's iFrame entry points frame the partner app. A partner that may not be framed
// (its pages say so in Content-Security-Policy frame-ancestors or X-Frame-Options, as the
// partner server does outside EMBED_MODE) would show a broken frame; the simulator asks the
// partner first and explains instead.

// frameVerdict is what the partner's answer says about being framed by one origin.
type frameVerdict struct {
	Allowed bool
	Known   bool   // the partner answered; false: it could not be asked
	Policy  string // the header that decides, as the partner sent it
	// NoneAllowed: the partner refuses every frame (frame-ancestors 'none', X-Frame-Options
	// DENY), as the partner server does outside embed mode. Otherwise it allows other origins.
	NoneAllowed bool
}

// partnerFraming asks the partner's app page whether embedder (an origin, scheme://host[:port])
// may frame it. It fetches the partner's home page, which carries the same framing headers as
// the launch (fetching the launch itself would start a sign-in).
func (s *Sim) partnerFraming(ctx context.Context, embedder string) frameVerdict {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.PartnerURL()+"/", nil)
	if err != nil {
		return frameVerdict{}
	}
	req.Header.Set("User-Agent", "platformsim (Untis Platform simulator)")
	resp, err := s.client.Do(req)
	if err != nil {
		return frameVerdict{}
	}
	resp.Body.Close()
	return framingAllowed(resp.Header, embedder, originOf(s.PartnerURL()))
}

// framingAllowed applies a response's framing headers to a frame on embedder's page (the only
// ancestor), as a browser does: CSP frame-ancestors when present, else X-Frame-Options.
func framingAllowed(h http.Header, embedder, self string) frameVerdict {
	for _, csp := range h.Values("Content-Security-Policy") {
		for _, directive := range strings.Split(csp, ";") {
			fields := strings.Fields(directive)
			if len(fields) == 0 || !strings.EqualFold(fields[0], "frame-ancestors") {
				continue
			}
			v := frameVerdict{Known: true, Policy: "Content-Security-Policy: " + strings.TrimSpace(directive)}
			sources := fields[1:]
			v.NoneAllowed = len(sources) == 0 || (len(sources) == 1 && strings.EqualFold(sources[0], "'none'"))
			for _, src := range sources {
				if sourceMatches(src, embedder, self) {
					v.Allowed = true
				}
			}
			return v
		}
	}
	switch xfo := strings.ToUpper(strings.TrimSpace(h.Get("X-Frame-Options"))); xfo {
	case "DENY":
		return frameVerdict{Known: true, Policy: "X-Frame-Options: DENY", NoneAllowed: true}
	case "SAMEORIGIN":
		return frameVerdict{Known: true, Policy: "X-Frame-Options: SAMEORIGIN", Allowed: strings.EqualFold(embedder, self)}
	}
	return frameVerdict{Known: true, Allowed: true}
}

// sourceMatches matches one CSP source expression of frame-ancestors against an origin: 'self',
// *, a scheme ("https:"), or a host source with optional scheme, a leading "*." wildcard and an
// optional port (or ":*").
func sourceMatches(src, origin, self string) bool {
	src = strings.ToLower(src)
	origin = strings.ToLower(origin)
	switch {
	case src == "'self'":
		return origin == strings.ToLower(self)
	case src == "*":
		return true
	case strings.HasPrefix(src, "'"):
		return false
	case strings.HasSuffix(src, ":") && !strings.Contains(src, "/"):
		return strings.HasPrefix(origin, src)
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	scheme, hostPort, ok := strings.Cut(src, "://")
	if !ok {
		scheme, hostPort = "", src
	}
	hostPort, _, _ = strings.Cut(hostPort, "/")
	if scheme != "" && scheme != u.Scheme {
		return false
	}
	host, port, hasPort := strings.Cut(hostPort, ":")
	switch {
	case strings.HasPrefix(host, "*."):
		if !strings.HasSuffix(u.Hostname(), host[1:]) {
			return false
		}
	case host != u.Hostname():
		return false
	}
	originPort := u.Port()
	if originPort == "" {
		originPort = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if !hasPort {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return port == "*" || port == originPort
}

// originOf is the scheme://host[:port] of a URL.
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
