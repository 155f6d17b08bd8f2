// Package exampleapp is the partner's app of the demo: a small web app that runs behind the
// server's gateway (UPSTREAM_URL) and knows nothing of Untis, OpenID Connect or sessions. It
// shows who is signed in from the gateway's X-Untis-* headers, verifies the X-Untis-Identity
// JWT against the gateway's JWKS with go-jose, and has a WebSocket echo. cmd/exampleapp serves
// it; the server's browser tests run it in-process behind a gateway.
//
// Pages: / (and any other path) who is signed in; /public/ a page for GATEWAY_PUBLIC_PATHS
// (with its assets under /public/assets/); /healthz; /ws the echo.
package exampleapp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// Config is what the app needs to know of the gateway in front of it.
type Config struct {
	// Issuer is the iss the identity token must have: the gateway's PUBLIC_URL.
	Issuer string
	// Audience is the aud the identity token must have: the gateway's IDENTITY_JWT_AUDIENCE
	// (default: Issuer, as the gateway's own default is PUBLIC_URL).
	Audience string
	// JWKSURL is where the gateway publishes its keys (default: Issuer/.well-known/jwks.json).
	JWKSURL string
	// Logger (default: discard).
	Logger *slog.Logger
}

// withDefaults fills in what the gateway's own defaults imply, and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Issuer == "" {
		return c, errors.New("the issuer (the gateway's PUBLIC_URL) must not be empty")
	}
	if c.Audience == "" {
		c.Audience = c.Issuer
	}
	if c.JWKSURL == "" {
		c.JWKSURL = strings.TrimSuffix(c.Issuer, "/") + "/.well-known/jwks.json"
	}
	if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return c, fmt.Errorf("the JWKS URL %q is not an http(s) URL", c.JWKSURL)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// New returns the app's whole HTTP surface. Serve it with no ReadTimeout or WriteTimeout (their
// deadlines would stay on a hijacked WebSocket connection), and end the sockets with the
// server's BaseContext when stopping: http.Server.Shutdown does not wait for hijacked
// connections.
func New(cfg Config) (http.Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &app{verifier: newVerifier(cfg.JWKSURL, cfg.Issuer, cfg.Audience), log: cfg.Logger}
	return a.routes(), nil
}

// Settings describes the configuration in effect, for a start-up line.
func (c Config) Settings() string {
	d, err := c.withDefaults()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("identity tokens from %s, iss %s, aud %s", d.JWKSURL, d.Issuer, d.Audience)
}
