// Package exampleapp is the partner's app of the demo: a small web app that runs behind the
// server's gateway (UPSTREAM_URL) and knows nothing of Untis, OpenID Connect or sessions. It
// shows who is signed in from the gateway's X-Untis-* headers, verifies the X-Untis-Identity
// JWT against the gateway's JWKS with go-jose, and has a WebSocket echo. It uses what the server
// offers a partner's app: the platform API on the internal listener (the school's teachers),
// the school lifecycle events (received as Standard Webhooks) and the Calendar-Path.
// cmd/exampleapp serves it; the server's browser tests run it in-process behind a gateway.
//
// Pages: / (and any other path) who is signed in; /teachers the teachers of the user's school;
// /events the lifecycle events the app received for the user's school; /public/ a page for
// GATEWAY_PUBLIC_PATHS (with its assets under /public/assets/); /healthz; /ws the echo. The
// server calls /untis/events (POST, the events) and /untis/calendar (the timetable view).
package exampleapp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
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

	// APIURL is the server's internal listener with the platform API (INTERNAL_LISTEN_ADDR as a
	// URL, e.g. http://127.0.0.1:8083). Empty: the teachers page says the app is not connected.
	APIURL string
	// APIToken is the bearer token for it (the server's INTERNAL_API_TOKEN; of a comma-separated
	// list, the first). Never logged or shown.
	APIToken string
	// APITimeout bounds one call to the platform API, the answer's body included (default 10 s).
	APITimeout time.Duration
	// EventsSecret is the Standard Webhooks secret the server signs the lifecycle events with
	// (its EVENTS_SECRET: "whsec_" + base64; several, separated by spaces or commas, during a
	// rotation: a request that verifies with any of them is taken). Empty: POST /untis/events
	// answers 503. Never logged or shown.
	EventsSecret string
	// EventsKept is how many events the app keeps per school (default 100).
	EventsKept int
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
	if c.APIURL != "" {
		// The URL is not a secret, but a userinfo part could hold one: refuse it rather than echo it.
		if u, err := url.Parse(c.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return c, errors.New("the platform API URL must be an http(s) URL without user info, query or fragment, e.g. http://127.0.0.1:8083")
		}
		if c.APIToken == "" {
			return c, errors.New("the platform API URL is set but its token (INTERNAL_API_TOKEN) is not")
		}
	}
	if c.APITimeout <= 0 {
		c.APITimeout = 10 * time.Second
	}
	if c.EventsKept <= 0 {
		c.EventsKept = 100
	}
	return c, nil
}

// New returns the app's whole HTTP surface. Serve it with no ReadTimeout or WriteTimeout (their
// deadlines would stay on a hijacked WebSocket connection), and end the sockets with the
// server's BaseContext when stopping: http.Server.Shutdown does not wait for hijacked
// connections.
func New(cfg Config) (http.Handler, error) {
	a, err := build(cfg)
	if err != nil {
		return nil, err
	}
	return a.routes(), nil
}

func build(cfg Config) (*app, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &app{verifier: newVerifier(cfg.JWKSURL, cfg.Issuer, cfg.Audience), log: cfg.Logger}
	if cfg.APIURL != "" {
		a.api = newPlatformAPI(cfg.APIURL, cfg.APIToken, cfg.APITimeout)
	}
	if a.events, err = newEventLog(cfg.EventsSecret, cfg.EventsKept); err != nil {
		return nil, err
	}
	return a, nil
}

// Settings describes the configuration in effect, for a start-up line.
func (c Config) Settings() string {
	d, err := c.withDefaults()
	if err != nil {
		return err.Error()
	}
	api := "platform API off (no -api-url)"
	if d.APIURL != "" {
		api = "platform API at " + d.APIURL
	}
	events := "lifecycle events off (no EVENTS_SECRET)"
	if d.EventsSecret != "" {
		events = "lifecycle events at POST /untis/events"
	}
	// Never the token or the secret.
	return fmt.Sprintf("identity tokens from %s, iss %s, aud %s; %s; %s", d.JWKSURL, d.Issuer, d.Audience, api, events)
}
