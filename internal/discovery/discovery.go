// Package discovery reads each school's OpenID Connect discovery document (OpenID Connect
// Discovery §3), the source of truth for the school's issuer, JWKS, authorize and token
// endpoints and the client authentication its token endpoint accepts. One cache serves both the
// sign-in (internal/sso) and the server-to-server client (internal/platform), so a school's
// document is fetched once for both and both follow the same rules: every URL it names must lie
// on UNTIS_API_URL, and the documented paths are used only for a field it does not name or while
// it cannot be fetched.
package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

// Defaults and bounds.
const (
	// DefaultTTL is how long a school's document is trusted before it is fetched again.
	DefaultTTL = time.Hour
	// RetryAfter is how long a failed fetch is remembered before the next caller tries again:
	// long enough that a school whose document is down costs the platform one request per few
	// seconds, short enough that a sign-in soon sees it back.
	RetryAfter = 5 * time.Second
	// MaxBytes bounds the document.
	MaxBytes = 64 << 10
	// fetchTimeout bounds one fetch.
	fetchTimeout = 10 * time.Second
)

// Token endpoint client authentication methods (OIDC Discovery §3, OIDC Core §9).
const (
	ClientSecretPost  = "client_secret_post"
	ClientSecretBasic = "client_secret_basic"
)

// Failures, told apart: an unreachable document leaves the documented endpoints usable (the
// caller may fall back to them); one that sends us off UNTIS_API_URL, or names no client
// authentication we can do, is a configuration problem, and nothing may be sent to the school's
// endpoints until it is fixed. Anything else (not JSON, another issuer, no jwks_uri) is a
// broken document: not a fallback either.
var (
	ErrUnreachable           = errors.New("discovery document could not be fetched")
	ErrUntrusted             = errors.New("discovery names an endpoint that is not on UNTIS_API_URL")
	ErrAuthMethodUnsupported = errors.New("discovery's token_endpoint_auth_methods_supported lists neither client_secret_post nor client_secret_basic")
)

// Document is what a school's discovery document says, checked: every URL is absolute and on
// UNTIS_API_URL. Immutable; shared by every caller.
type Document struct {
	Issuer                string
	JWKSURL               string // empty only in a Documented one
	AuthorizationEndpoint string
	TokenEndpoint         string
	// AuthMethods are the client authentications at the token endpoint that the document lists
	// and this server can do (client_secret_post, client_secret_basic), in its order. Empty when
	// it lists none.
	AuthMethods []string
}

// ClientAuth is how to authenticate at the token endpoint, for a caller that prefers preferred
// (ClientSecretPost or ClientSecretBasic): preferred when the document lists it or lists none,
// otherwise the other, which it then lists. Never both (RFC 6749 §2.3).
func (d *Document) ClientAuth(preferred string) string {
	if len(d.AuthMethods) == 0 || slices.Contains(d.AuthMethods, preferred) {
		return preferred
	}
	return d.AuthMethods[0]
}

// Config is what a Cache needs.
type Config struct {
	// APIURL is UNTIS_API_URL: the documents are fetched there, and every URL they name must
	// lie there.
	APIURL *url.URL
	// HTTPClient fetches the documents; it should not follow redirects. Required.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Metrics gets sso_discovery_fetches_total.
	Metrics *metrics.Registry
	Now     func() time.Time
	// TTL is how long a document is trusted (DefaultTTL).
	TTL time.Duration
}

// Cache holds each school's document. Safe for concurrent use; one per process, shared.
type Cache struct {
	api     *url.URL
	base    string // APIURL without a trailing slash
	client  *http.Client
	log     *slog.Logger
	now     func() time.Time
	ttl     time.Duration
	fetches *metrics.CounterVec

	mu      sync.Mutex
	entries map[string]*entry // by tenant id
}

// entry is one school's document or failure; ready is closed once the fetch that fills it has
// ended, and then nothing in it changes.
type entry struct {
	ready   chan struct{}
	doc     *Document
	err     error
	fetched time.Time
}

// New builds a cache.
func New(cfg Config) (*Cache, error) {
	if cfg.APIURL == nil || cfg.APIURL.Host == "" || cfg.HTTPClient == nil {
		return nil, errors.New("discovery: APIURL and HTTPClient are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	return &Cache{
		api:    cfg.APIURL,
		base:   strings.TrimRight(cfg.APIURL.String(), "/"),
		client: cfg.HTTPClient,
		log:    cfg.Logger,
		now:    cfg.Now,
		ttl:    cfg.TTL,
		fetches: cfg.Metrics.NewCounterVec("sso_discovery_fetches_total",
			"Fetches of schools' OpenID discovery documents (for sign-ins and server-to-server tokens alike).", "outcome"),
		entries: map[string]*entry{},
	}, nil
}

// Issuer is the school's issuer: {UNTIS_API_URL}/WebUntis/api/sso/v3/{tenantId}.
func (c *Cache) Issuer(tenantID string) string { return c.base + "/WebUntis/api/sso/v3/" + tenantID }

// Documented is the school's endpoints as the platform's documentation builds them
// ({issuer}/authorize and {issuer}/token), for while its document cannot be fetched. It names no
// JWKS and no client authentication.
func (c *Cache) Documented(tenantID string) *Document {
	iss := c.Issuer(tenantID)
	return &Document{Issuer: iss, AuthorizationEndpoint: iss + "/authorize", TokenEndpoint: iss + "/token"}
}

// Get returns the school's document, fetching it when it is not cached, older than the TTL, or
// failed more than RetryAfter ago (a failure within that is returned again). Concurrent callers
// share one fetch, which runs on even when the caller who started it gives up.
func (c *Cache) Get(ctx context.Context, tenantID string) (*Document, error) {
	c.mu.Lock()
	e := c.entries[tenantID]
	if e == nil || c.stale(e) {
		e = &entry{ready: make(chan struct{})}
		c.entries[tenantID] = e
		c.mu.Unlock()
		// Detached from the caller, and in its own goroutine: others may be waiting for this
		// same fetch, and the caller may give up before it ends.
		go c.fill(context.WithoutCancel(ctx), tenantID, e)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return e.doc, e.err
}

// Fetch fetches the school's document without the cache: for credentials that are not stored
// yet (a manual activation), whose tenant id anyone may type. Storing credentials invalidates
// the school's entry anyway.
func (c *Cache) Fetch(ctx context.Context, tenantID string) (*Document, error) {
	doc, err := c.discover(ctx, tenantID)
	c.fetches.With(outcome(err)).Inc()
	return doc, err
}

// stale reports whether a finished entry must be fetched again; one being filled is not.
// Called with c.mu held.
func (c *Cache) stale(e *entry) bool {
	select {
	case <-e.ready:
	default:
		return false
	}
	age := c.now().Sub(e.fetched)
	if e.err != nil {
		return age >= RetryAfter
	}
	return age >= c.ttl
}

func (c *Cache) fill(ctx context.Context, tenantID string, e *entry) {
	defer close(e.ready)
	e.fetched = c.now()
	e.doc, e.err = c.discover(ctx, tenantID)
	c.fetches.With(outcome(e.err)).Inc()
	if e.err != nil {
		c.log.WarnContext(ctx, "discovery of the school's OpenID configuration failed", "tenant_id", tenantID, "err", e.err)
	}
}

// Invalidate forgets the school's document: its next use fetches it again. Call it when the
// school's credentials or state change.
func (c *Cache) Invalidate(tenantID string) {
	c.mu.Lock()
	delete(c.entries, tenantID)
	c.mu.Unlock()
}

// InvalidateAll forgets every school's document.
func (c *Cache) InvalidateAll() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// discover fetches and checks the school's document. It must name the expected issuer and a
// JWKS URL; its authorize and token endpoints are used when it names them, the documented ones
// when it does not. Every URL it names must lie on UNTIS_API_URL: nothing the platform's answer
// says may send a user, a code, a secret or a password elsewhere.
func (c *Cache) discover(ctx context.Context, tenantID string) (*Document, error) {
	if !store.ValidTenantID(tenantID) {
		return nil, fmt.Errorf("discovery: tenant id %q is not 1-64 letters, digits, '-' or '_'", boundedValue(tenantID))
	}
	issuer := c.Issuer(tenantID)
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%w: %s answered %d", ErrUnreachable, req.URL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if len(body) > MaxBytes {
		return nil, fmt.Errorf("discovery: document over %d bytes", MaxBytes)
	}
	var doc struct {
		Issuer            string   `json:"issuer"`
		JWKSURI           string   `json:"jwks_uri"`
		AuthorizeEndpoint string   `json:"authorization_endpoint"`
		TokenEndpoint     string   `json:"token_endpoint"`
		TokenAuthMethods  []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("discovery: not JSON: %w", err)
	}
	if doc.Issuer != issuer {
		return nil, fmt.Errorf("discovery: issuer is %q, want %q", boundedValue(doc.Issuer), issuer)
	}
	if doc.JWKSURI == "" {
		return nil, errors.New("discovery: no jwks_uri")
	}
	d := c.Documented(tenantID)
	for _, f := range []struct {
		name, value string
		into        *string
	}{
		{"jwks_uri", doc.JWKSURI, &d.JWKSURL},
		{"authorization_endpoint", doc.AuthorizeEndpoint, &d.AuthorizationEndpoint},
		{"token_endpoint", doc.TokenEndpoint, &d.TokenEndpoint},
	} {
		if f.value == "" {
			continue // the documented endpoint
		}
		u, ok := c.onAPI(f.value)
		if !ok {
			return nil, fmt.Errorf("%w: %s %q", ErrUntrusted, f.name, boundedValue(f.value))
		}
		*f.into = u
	}
	if d.AuthMethods, err = authMethods(doc.TokenAuthMethods); err != nil {
		return nil, err
	}
	return d, nil
}

// onAPI reports whether raw is an absolute URL on UNTIS_API_URL (its scheme and host), without
// user info or fragment, and returns it normalised.
func (c *Cache) onAPI(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != c.api.Scheme || u.Host != c.api.Host || u.User != nil ||
		u.Fragment != "" || u.Opaque != "" {
		return "", false
	}
	return u.String(), true
}

// authMethods keeps the listed methods this server can do. A list without either is refused:
// the token endpoint would take no authentication we can send.
func authMethods(listed []string) ([]string, error) {
	var usable []string
	for _, m := range listed {
		if (m == ClientSecretPost || m == ClientSecretBasic) && !slices.Contains(usable, m) {
			usable = append(usable, m)
		}
	}
	if len(listed) > 0 && len(usable) == 0 {
		named := make([]string, 0, min(len(listed), 5))
		for _, m := range listed[:min(len(listed), 5)] {
			named = append(named, Word(m))
		}
		return nil, fmt.Errorf("%w (it lists %s)", ErrAuthMethodUnsupported, strings.Join(named, ", "))
	}
	return usable, nil
}

// Word keeps a word from the platform's answer (an OAuth error code, an authentication method)
// loggable and safe to show: such words are ASCII (RFC 6749 §5.2); anything else becomes
// "other". Sign-in (internal/sso) shows the token endpoint's error codes through it too.
func Word(w string) string {
	if w == "" || len(w) > 64 {
		return "other"
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return "other"
		}
	}
	return w
}

// boundedValue keeps a value from the platform's answer short and printable for a log line.
func boundedValue(v string) string {
	if len(v) > 200 {
		v = v[:200] + "..."
	}
	return strings.ToValidUTF8(v, "?")
}

func outcome(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
