package gateway

import (
	"net/http"
	"strings"
)

// The identity headers the gateway sets on every request it proxies with a session, and that
// forward-auth answers with. Every one is always present (possibly empty), and a client's own
// headers of these names, or of any other X-Untis-* name, never reach the app.
const (
	HeaderTenantID   = "X-Untis-Tenant-Id"
	HeaderUserID     = "X-Untis-User-Id"
	HeaderRole       = "X-Untis-Role"
	HeaderGivenName  = "X-Untis-Given-Name"
	HeaderFamilyName = "X-Untis-Family-Name"
	HeaderEmail      = "X-Untis-Email"
	HeaderSchoolName = "X-Untis-School-Name"
	HeaderLaunch     = "X-Untis-Launch"
	HeaderSetup      = "X-Untis-Setup"
	HeaderIdentity   = "X-Untis-Identity"
)

// IdentityHeaders lists the identity headers in a fixed order (the forward-auth configurations
// copy exactly these).
var IdentityHeaders = [...]string{
	HeaderTenantID, HeaderUserID, HeaderRole, HeaderGivenName, HeaderFamilyName, HeaderEmail,
	HeaderSchoolName, HeaderLaunch, HeaderSetup, HeaderIdentity,
}

// cookiePrefix is the prefix of every cookie the server sets (session.CookieName and its flow
// and form cookies, whatever variants they grow). Compared case-insensitively: browsers apply
// the __Host- rules whatever the case.
const cookiePrefix = "__host-untis-"

// reservedHeader reports whether a request header of this name must not reach the app from a
// client: X-Untis-* in any case, and also written with underscores (X_Untis_Role), because CGI,
// PHP and WSGI servers turn both X-Untis-Role and X_Untis_Role into HTTP_X_UNTIS_ROLE, so an
// underscore variant would arrive as ours. The underscore variants of the forwarding headers go
// for the same reason (the real ones are replaced by the proxy).
func reservedHeader(name string) bool {
	if hasFoldPrefix(name, "x-untis-") {
		return true
	}
	if !strings.Contains(name, "_") {
		return false
	}
	for _, f := range [...]string{"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-port", "x-forwarded-prefix"} {
		if len(name) == len(f) && hasFoldPrefix(name, f) {
			return true
		}
	}
	return false
}

// hasFoldPrefix reports whether s starts with prefix (lower-case ASCII), ignoring case, with an
// underscore in s standing for a hyphen.
func hasFoldPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c == '_' && prefix[i] == '-' {
			continue
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// stripInbound removes from h (a request's headers, on their way to the app) every header a
// client must not be able to send: the identity headers in every spelling.
func stripInbound(h http.Header) {
	for k := range h {
		if reservedHeader(k) {
			delete(h, k)
		}
	}
}

// clientForwarding are request headers through which a client could contradict what the proxy
// tells the app about the request: who the client is (X-Real-Ip, True-Client-Ip, ... which
// common frameworks and middlewares read before or instead of X-Forwarded-For), where and how it
// came in (the port, path prefix, scheme and TLS flags that frameworks combine with
// X-Forwarded-Host and -Proto into the URLs they build), and which path it asked for (IIS's and
// old Symfony's path overrides, which would let a request for a public path be routed to another
// one). The proxy sets X-Forwarded-For, -Host and -Proto itself (ReverseProxy drops the client's
// before); these it does not set, so a client's own are removed, in any case and written with
// underscores.
var clientForwarding = [...]string{
	"x-real-ip", "true-client-ip", "x-client-ip", "client-ip", "x-cluster-client-ip",
	"x-forwarded-port", "x-forwarded-prefix", "x-forwarded-server", "x-forwarded-ssl", "x-forwarded-scheme",
	"x-forwarded-uri", "x-original-url", "x-rewrite-url",
}

// forwardingHeader reports whether a request header of this name is one of clientForwarding.
func forwardingHeader(name string) bool {
	for _, f := range clientForwarding {
		if len(name) == len(f) && hasFoldPrefix(name, f) {
			return true
		}
	}
	return false
}

// stripForwarding removes from h (a request's headers, on their way to the app) the client's own
// forwarding headers (clientForwarding).
func stripForwarding(h http.Header) {
	for k := range h {
		if forwardingHeader(k) {
			delete(h, k)
		}
	}
}

// stripTrailers removes reserved names from the trailer fields a request announced: a chunked
// body may end with trailer fields, and an app that merges them into its headers must not find
// ours there either.
func stripTrailers(r *http.Request) {
	for k := range r.Trailer {
		if reservedHeader(k) {
			delete(r.Trailer, k)
		}
	}
}

// ourCookie reports whether a cookie name is one of the server's.
func ourCookie(name string) bool {
	return hasFoldPrefix(strings.TrimSpace(name), cookiePrefix)
}

// mentionsOurCookie is a quick test that a Cookie header may hold one of our cookies: most
// requests carry none, and are then left exactly as they came.
func mentionsOurCookie(v string) bool {
	for i := 0; i+len(cookiePrefix) <= len(v); i++ {
		if v[i] == '_' && hasFoldPrefix(v[i:], cookiePrefix) {
			return true
		}
	}
	return false
}

// stripOurCookies removes the server's cookies from the Cookie header and keeps the app's, each
// pair exactly as the browser sent it (values are not re-encoded). Several Cookie lines become
// one, as HTTP/1.1 servers expect.
func stripOurCookies(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	touched := len(lines) > 1
	for _, l := range lines {
		if mentionsOurCookie(l) {
			touched = true
			break
		}
	}
	if !touched {
		return
	}
	var b strings.Builder
	for _, l := range lines {
		for pair := range strings.SplitSeq(l, ";") {
			pair = strings.TrimSpace(pair)
			if pair == "" {
				continue
			}
			name, _, _ := strings.Cut(pair, "=")
			if ourCookie(name) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(pair)
		}
	}
	if b.Len() == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{b.String()}
}

// dropOurSetCookies removes every Set-Cookie line of a response (from the app) that would set
// or clear one of the server's cookies: the app may not sign anyone in or out behind our back.
func dropOurSetCookies(h http.Header) {
	lines := h["Set-Cookie"]
	kept := lines[:0:0]
	dropped := false
	for _, l := range lines {
		name, _, _ := strings.Cut(l, "=")
		if ourCookie(name) {
			dropped = true
			continue
		}
		kept = append(kept, l)
	}
	if !dropped {
		return
	}
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}
