// Package platformsim simulates the Untis Platform (WebUntis) as a partner
// application sees it: per-tenant OIDC discovery, JWKS, authorize and token
// endpoints (SSO v3), OneRoster 1.1 read APIs, signed credentials and
// deactivation webhooks, launch buttons for a person, and fault injection
// for tests.
//
// The simulator is a library first: tests of other packages start it
// in-process with simtest.NewServer, and cmd/platformsim is a thin binary over it.
// All state lives in memory behind one mutex; cryptography (signing id_tokens
// and webhooks) always runs outside that lock so concurrent logins do not
// queue behind each other.
package platformsim

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Lifetimes: the platform documents 3-minute access tokens; codes and
// id_tokens are short like a real OP's.
const (
	CodeLifetime        = 60 * time.Second
	AccessTokenLifetime = 180 * time.Second
	IDTokenLifetime     = 300 * time.Second
)

// DefaultClientID is the client id every simulated tenant shares unless its
// spec says otherwise: one platform application has one clientId for every
// school, with a different secret and password per school.
const DefaultClientID = "partner-app"

// ErrUnknownTenant is returned by methods given a tenant id the simulator
// does not know.
var ErrUnknownTenant = errors.New("platformsim: unknown tenant")

// Config configures a simulator. The zero value works; New fills defaults.
type Config struct {
	// BaseURL is the simulator's own public base URL, which is the partner
	// server's UNTIS_API_URL (e.g. http://127.0.0.1:8081). It may be set
	// later with SetBaseURL, since httptest picks the port.
	BaseURL string
	// PartnerURL is the partner server's base URL (e.g.
	// http://localhost:8080). The only accepted redirect_uri is
	// PartnerURL+RedirectPath; webhooks go to PartnerURL plus their paths.
	PartnerURL string
	// RedirectPath is the SSO redirect path configured in PAM; default "/launch".
	RedirectPath string
	// CredentialsPath and DeactivationPath are the webhook paths; defaults
	// "/webhooks/credentials" and "/webhooks/deactivation".
	CredentialsPath  string
	DeactivationPath string
	// CalendarPath is the Calendar-Path the timetable view posts to; default
	// DefaultCalendarPath (the partner server's route).
	CalendarPath string
	// WebhookKey signs webhooks (SHA256withRSA). If nil, a default key
	// is used that every simulator of this process shares (generating RSA
	// keys is slow), unless FreshKeys is set.
	WebhookKey *rsa.PrivateKey
	// SigningKey signs id_tokens: *rsa.PrivateKey (RS256) or a P-256
	// *ecdsa.PrivateKey (ES256). If nil, a default RSA key is used that
	// every simulator of this process shares, unless FreshKeys is set.
	SigningKey crypto.Signer
	// FreshKeys makes New generate a webhook key and a signing key of its
	// own for whichever of WebhookKey and SigningKey is nil, instead of
	// the per-process defaults. A test that needs "a webhook signed by
	// another platform" or "an id_token from another platform" sets it
	// (or passes its own keys): two simulators with default keys sign
	// alike. It costs two RSA key generations (~100 ms).
	FreshKeys bool
	// Now is the clock; default time.Now. Advance moves the simulator's
	// clock on top of it.
	Now func() time.Time
	// HTTPClient sends webhooks; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives the simulator's logs; default slog.Default().
	Logger *slog.Logger
	// IncludeIssParam adds the RFC 9207 iss parameter to the authorization
	// response. Off by default: the real platform is not known to send it.
	IncludeIssParam bool
	// DemoSeed, when set, makes SeedDemo derive the demo schools' secret and
	// password from it instead of drawing random ones, so a restarted
	// simulator (make run) keeps the credentials the partner stored.
	DemoSeed []byte
	// TokenLifetime is how long access tokens live (expires_in); default
	// AccessTokenLifetime, the platform's documented 3 minutes.
	TokenLifetime time.Duration
	// StateFile, when set, is where the simulator keeps each school's app status and current
	// credentials across restarts (JSON, 0600, written after every lifecycle change); SeedDemo
	// restores the demo schools from it. A file that does not parse makes New fail.
	StateFile string
}

// Sim is a simulated Untis Platform. It is safe for concurrent use.
type Sim struct {
	redirectPath     string
	credentialsPath  string
	deactivationPath string
	calendarPath     string
	webhookKey       *rsa.PrivateKey
	webhookPubB64    string
	clock            func() time.Time
	client           *http.Client
	log              *slog.Logger
	includeIss       bool
	demoSeed         []byte
	tokenLifetime    time.Duration
	stateFile        string
	saved            map[string]savedTenant // the state file as New read it
	stateMu          sync.Mutex             // serialises writes of the state file

	baseURL    atomic.Pointer[string]
	partnerURL atomic.Pointer[string]
	offset     atomic.Int64 // nanoseconds added to clock by Advance
	keys       atomic.Pointer[keySet]
	tokenDelay atomic.Int64 // nanoseconds

	// rotateMu serialises key rotations so two concurrent rotations cannot
	// lose each other's key; readers never take it.
	rotateMu sync.Mutex

	mu      sync.Mutex
	tenants map[string]*tenant
	order   []string // tenant ids in the order they were added
	codes   map[string]*authCode
	tokens  map[string]*accessToken
	// idTokens are the issued id_tokens by jti.
	idTokens map[string]*accessToken
	issued   int // tokens and codes issued since the last sweep
	faults   faultState
	stats    statCounters
	calls    callLog

	handler http.Handler
}

// New returns a simulator with no tenants; add them with AddTenant or SeedDemo.
func New(cfg Config) (*Sim, error) {
	s := &Sim{
		redirectPath:     orDefault(cfg.RedirectPath, "/launch"),
		credentialsPath:  orDefault(cfg.CredentialsPath, "/webhooks/credentials"),
		deactivationPath: orDefault(cfg.DeactivationPath, "/webhooks/deactivation"),
		calendarPath:     orDefault(cfg.CalendarPath, DefaultCalendarPath),
		clock:            cfg.Now,
		client:           cfg.HTTPClient,
		log:              cfg.Logger,
		includeIss:       cfg.IncludeIssParam,
		demoSeed:         cfg.DemoSeed,
		tokenLifetime:    cfg.TokenLifetime,
		stateFile:        cfg.StateFile,
		tenants:          make(map[string]*tenant),
		codes:            make(map[string]*authCode),
		tokens:           make(map[string]*accessToken),
		idTokens:         make(map[string]*accessToken),
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.tokenLifetime <= 0 {
		s.tokenLifetime = AccessTokenLifetime
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 10 * time.Second}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.faults.init()
	s.stats.init()
	if s.stateFile != "" {
		var err error
		if s.saved, err = loadState(s.stateFile); err != nil {
			return nil, err
		}
	}

	var err error
	s.webhookKey = cfg.WebhookKey
	switch {
	case s.webhookKey != nil:
	case cfg.FreshKeys:
		if s.webhookKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("platformsim: generate webhook key: %w", err)
		}
	default:
		if s.webhookKey, err = defaultWebhookKey(); err != nil {
			return nil, err
		}
	}
	if s.webhookPubB64, err = PublicKeyBase64(&s.webhookKey.PublicKey); err != nil {
		return nil, err
	}

	signer := cfg.SigningKey
	switch {
	case signer != nil:
	case cfg.FreshKeys:
		if signer, err = GenerateSigningKey(RS256); err != nil {
			return nil, err
		}
	default:
		if signer, err = defaultSigningKey(); err != nil {
			return nil, err
		}
	}
	key, err := newSigningKey(signer)
	if err != nil {
		return nil, err
	}
	s.keys.Store(newKeySet(key, nil))

	if cfg.BaseURL != "" {
		if err := checkAbsURL(cfg.BaseURL); err != nil {
			return nil, fmt.Errorf("platformsim: base URL: %w", err)
		}
	}
	partner := orDefault(cfg.PartnerURL, "http://localhost:8080")
	if err := checkAbsURL(partner); err != nil {
		return nil, fmt.Errorf("platformsim: partner URL: %w", err)
	}
	s.SetBaseURL(cfg.BaseURL)
	s.SetPartnerURL(partner)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the simulator's HTTP handler: the platform APIs, the pages
// for a person and the JSON control API.
func (s *Sim) Handler() http.Handler { return s.handler }

// SetBaseURL sets the simulator's public base URL (the server's
// UNTIS_API_URL). Issuers and hrefs are derived from it at request time, so
// it may change after tenants were added.
func (s *Sim) SetBaseURL(u string) {
	u = strings.TrimRight(u, "/")
	s.baseURL.Store(&u)
}

// SetPartnerURL sets the partner server's base URL, which decides the only
// accepted redirect_uri, the webhook targets and the launch URLs.
func (s *Sim) SetPartnerURL(u string) {
	u = strings.TrimRight(u, "/")
	s.partnerURL.Store(&u)
}

// BaseURL returns the simulator's public base URL.
func (s *Sim) BaseURL() string { return *s.baseURL.Load() }

// PartnerURL returns the partner server's base URL.
func (s *Sim) PartnerURL() string { return *s.partnerURL.Load() }

// RedirectURI is the one redirect_uri the simulated PAM configuration
// accepts: PartnerURL + RedirectPath.
func (s *Sim) RedirectURI() string { return s.PartnerURL() + s.redirectPath }

// Issuer returns the issuer of tenantID's id_tokens:
// BaseURL + "/WebUntis/api/sso/v3/" + tenantID.
func (s *Sim) Issuer(tenantID string) string {
	return s.BaseURL() + ssoPrefix + tenantID
}

// Now returns the simulator's clock: Config.Now plus everything Advance added.
func (s *Sim) Now() time.Time {
	return s.clock().Add(time.Duration(s.offset.Load()))
}

// Advance moves the simulator's clock forward by d, so tests can expire
// codes and tokens without sleeping.
func (s *Sim) Advance(d time.Duration) { s.offset.Add(int64(d)) }

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

func checkAbsURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}
