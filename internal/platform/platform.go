// Package platform is the server's only way to talk to the Untis Platform's APIs: per school
// (tenant) client-credentials tokens, cached and shared, and the OneRoster 1.1 and REST calls made
// with them or with a signed-in user's token.
//
// Every outbound request goes to UNTIS_API_URL and nowhere else: no webhook field, form value
// or redirect chooses where a secret or token is sent.
//
// The token cache follows the platform's rule for expired or revoked tokens: a token may be
// invalid at any time; on a 401 fetch a fresh one once and retry once; if that fails too, back
// off and flag an error (the school's credentials are marked failing in the store, which the
// operator console and /metrics show).
package platform

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/untis-partner/server/internal/discovery"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

// Config configures the platform clients. BaseURL and Store are required.
type Config struct {
	// BaseURL is UNTIS_API_URL: SSO v3, OneRoster and REST all live below it.
	BaseURL *url.URL
	// Store holds the schools' credentials and their health mark.
	Store   *store.Store
	Logger  *slog.Logger
	Metrics *metrics.Registry
	// HTTPClient makes the requests; nil means NewHTTPClient(). Redirects are never followed,
	// whatever client is given.
	HTTPClient *http.Client
	// Now is the clock (tests move it with the simulator's); nil means time.Now.
	Now func() time.Time
	// RequestTimeout bounds each attempt of an API call; default 10 s.
	RequestTimeout time.Duration
	// TokenTimeout bounds a token request; default 10 s.
	TokenTimeout time.Duration
	// MaxAttempts is how often an idempotent call is tried when the platform answers 429 or 5xx
	// or cannot be reached; default 3.
	MaxAttempts int
	// MaxRetryAfter is the longest Retry-After a call waits for before it retries; a longer
	// one fails the call at once with ErrRateLimited or ErrUnavailable. Default 10 s.
	MaxRetryAfter time.Duration
	// RetryBase is the first wait between attempts, doubled each time, with jitter; default
	// 200 ms.
	RetryBase time.Duration
	// BackoffBase and BackoffMax bound how long a school's calls fail fast after its token
	// request failed or a fresh token was refused: BackoffBase after the first failure,
	// doubling (with jitter) up to BackoffMax. Defaults 2 s and 5 min.
	BackoffBase, BackoffMax time.Duration
	// DiscoveryTTL is how long a school's OpenID discovery document is trusted; default
	// discovery.DefaultTTL (1 h).
	DiscoveryTTL time.Duration
	// StreamIdleTimeout cuts a streamed answer (Stream) when no byte of it arrives for this
	// long; default 60 s.
	StreamIdleTimeout time.Duration
}

// Clients hands out platform clients per school and owns the token cache they share. It is safe
// for concurrent use; one per process.
type Clients struct {
	base  string // BaseURL without a trailing slash
	store *store.Store
	log   *slog.Logger
	http  *http.Client
	// stream makes Stream's requests: http's transport without its overall timeout, since a
	// streamed answer may take as long as it keeps moving (the attempt's header timeout and the
	// body's idle timeout bound it instead).
	stream *http.Client
	now    func() time.Time
	m      clientMetrics
	tuning tuning
	// disc is the schools' discovery documents, which name the token endpoint; the sign-in
	// (internal/sso) uses the same cache.
	disc *discovery.Cache

	mu      sync.RWMutex
	tenants map[string]*tenantState // token cache and backoff, per school

	listening atomic.Bool // Listen is connected and hears changes
}

type tuning struct {
	requestTimeout, tokenTimeout time.Duration
	maxAttempts                  int
	maxRetryAfter, retryBase     time.Duration
	backoffBase, backoffMax      time.Duration
	streamIdle                   time.Duration
}

// New builds the clients.
func New(cfg Config) (*Clients, error) {
	if cfg.BaseURL == nil || cfg.BaseURL.Host == "" || (cfg.BaseURL.Scheme != "https" && cfg.BaseURL.Scheme != "http") {
		return nil, errors.New("platform: BaseURL must be an absolute http(s) URL")
	}
	if cfg.Store == nil {
		return nil, errors.New("platform: Store is required")
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
	hc := NewHTTPClient()
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = refuseRedirects
	streamClient := *hc
	streamClient.Timeout = 0
	disc, err := discovery.New(discovery.Config{
		APIURL: cfg.BaseURL, HTTPClient: hc, Logger: cfg.Logger, Metrics: cfg.Metrics, Now: cfg.Now, TTL: cfg.DiscoveryTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("platform: %w", err)
	}
	c := &Clients{
		base:   strings.TrimRight(cfg.BaseURL.String(), "/"),
		store:  cfg.Store,
		log:    cfg.Logger,
		http:   hc,
		stream: &streamClient,
		now:    cfg.Now,
		tuning: tuning{
			requestTimeout: orDuration(cfg.RequestTimeout, 10*time.Second),
			tokenTimeout:   orDuration(cfg.TokenTimeout, 10*time.Second),
			maxAttempts:    max(cfg.MaxAttempts, 1),
			maxRetryAfter:  orDuration(cfg.MaxRetryAfter, 10*time.Second),
			retryBase:      orDuration(cfg.RetryBase, 200*time.Millisecond),
			backoffBase:    orDuration(cfg.BackoffBase, 2*time.Second),
			backoffMax:     orDuration(cfg.BackoffMax, 5*time.Minute),
			streamIdle:     orDuration(cfg.StreamIdleTimeout, 60*time.Second),
		},
		tenants: make(map[string]*tenantState),
		disc:    disc,
	}
	if cfg.MaxAttempts == 0 {
		c.tuning.maxAttempts = 3
	}
	c.m = newClientMetrics(cfg.Metrics, c)
	return c, nil
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// NewHTTPClient is the default outbound client: bounded connection pool, a timeout at every
// stage, no redirects.
func NewHTTPClient() *http.Client {
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		MaxConnsPerHost:       128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 15 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, Timeout: 30 * time.Second, CheckRedirect: refuseRedirects}
}

// refuseRedirects keeps every request on UNTIS_API_URL: a redirect is answered to the caller as
// the 3xx it is, never followed with our Authorization header.
func refuseRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// tenantIDPattern is what a tenant id may look like before it goes into a URL path.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func checkTenantID(id string) error {
	if !tenantIDPattern.MatchString(id) {
		return fmt.Errorf("%w: tenant id %q is not 1-64 letters, digits, '-' or '_'", ErrBadRequest, id)
	}
	return nil
}

// Client makes platform calls for one school. It is a small value: get one with For or ForUser
// wherever it is needed rather than keeping it.
type Client struct {
	c        *Clients
	tenantID string
	// asUser makes the client call with userToken, a signed-in user's access token: calls
	// then carry the user's permissions, are not retried with another token, and never mark
	// the school's credentials. An empty userToken then fails every call: it never falls back
	// to the school's token and its wider permissions.
	asUser    bool
	userToken string
}

// String keeps a user's token out of anything that formats a Client.
func (cl Client) String() string {
	if cl.asUser {
		return "platform.Client{tenant " + cl.tenantID + ", as a user}"
	}
	return "platform.Client{tenant " + cl.tenantID + "}"
}

// GoString is String, for %#v.
func (cl Client) GoString() string { return cl.String() }

// For returns the client that calls the platform as the school tenantID itself, with its
// client-credentials token.
func (c *Clients) For(tenantID string) Client {
	return Client{c: c, tenantID: tenantID}
}

// ForUser returns a client that calls the platform with a signed-in user's access token (from
// the school tenantID's SSO), so the platform applies the user's permissions.
func (c *Clients) ForUser(tenantID, accessToken string) Client {
	return Client{c: c, tenantID: tenantID, asUser: true, userToken: accessToken}
}

// TenantID is the school the client calls for.
func (cl Client) TenantID() string { return cl.tenantID }

// Discovery is the schools' discovery documents, shared with the sign-in: one per process.
func (c *Clients) Discovery() *discovery.Cache { return c.disc }

// Invalidate forgets the school's cached token, its backoff and its discovery document, so the
// next call fetches them again with the credentials in the store. Call it when the credentials
// change or the school is deactivated; other replicas hear of it through the store
// (ListenTenantChanges).
func (c *Clients) Invalidate(tenantID string) {
	c.disc.Invalidate(tenantID)
	c.mu.Lock()
	st := c.tenants[tenantID]
	delete(c.tenants, tenantID)
	c.mu.Unlock()
	if st != nil {
		c.m.invalidations.Inc()
	}
}

// InvalidateAll forgets every cached token, backoff and discovery document.
func (c *Clients) InvalidateAll() {
	c.disc.InvalidateAll()
	c.mu.Lock()
	n := len(c.tenants)
	clear(c.tenants)
	c.mu.Unlock()
	c.m.invalidations.Add(float64(n))
}

// Listen keeps the cache in step with credential changes made by any replica, until ctx ends.
// The handlers in also (other caches of the replica) hear the same changes on the same connection.
func (c *Clients) Listen(ctx context.Context, also ...store.TenantChangeHandler) {
	c.store.ListenTenantChanges(ctx, c.log, store.TenantChangeHandler{
		Changed: c.Invalidate,
		Resync: func() {
			c.InvalidateAll()
			c.listening.Store(true)
		},
		Disconnected: func() { c.listening.Store(false) },
	}.Also(also...))
}

// state returns the school's cache entry, creating it on first use. The lookup of an existing
// entry takes a read lock and does not allocate.
func (c *Clients) state(tenantID string) *tenantState {
	c.mu.RLock()
	st := c.tenants[tenantID]
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st = c.tenants[tenantID]; st == nil {
		st = &tenantState{tenantID: tenantID}
		c.tenants[tenantID] = st
	}
	return st
}

// current reports whether st is still the school's cache entry (not invalidated since).
func (c *Clients) current(st *tenantState) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.tenants[st.tenantID] == st
}

// forget drops st from the cache if it is still the school's entry.
func (c *Clients) forget(st *tenantState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tenants[st.tenantID] == st {
		delete(c.tenants, st.tenantID)
	}
}
