// Package httpserver is the server's HTTP surface: routes.go lists every route; this file holds
// the Server type, its dependencies and the serve-until-cancelled loop.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/text/language"

	"github.com/untis-partner/server/internal/calendar"
	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
	"github.com/untis-partner/server/web"
)

// Deps are what the HTTP layer needs from the rest of the server.
type Deps struct {
	Store *store.Store
	// SSO and Sessions sign users in; Platform reads what the app page shows (school, lesson).
	SSO      *sso.Service
	Sessions *session.Manager
	Platform *platform.Clients
	// Onboard runs the school lifecycle (webhooks, setup, manual activation, the console's
	// actions); Webhooks verifies the platform's signatures; Operators signs the console in.
	Onboard        *onboard.Service
	Webhooks       *webhook.Verifier
	Operators      *operator.Manager
	Logger         *slog.Logger
	Metrics        *metrics.Registry
	TrustedProxies []netip.Prefix
	EmbedMode      bool
	// PlatformOrigins may frame the app in embed mode (config.Config.PlatformOrigins).
	PlatformOrigins []string
	// PublicOrigin is PUBLIC_URL's scheme://host[:port]; HTTPS is true when it is https (pages
	// then carry HSTS).
	PublicOrigin string
	HTTPS        bool
	Version      string
	// Now is the clock of the rate limits (time.Now when nil; tests move it).
	Now func() time.Time
	// LaunchLimits bound the sign-ins that /launch starts (config.Config's LAUNCH_LIMIT_*).
	LaunchLimits LaunchLimits
	// Brand names the app on every page (APP_NAME, APP_LOGO_URL, APP_ACCENT_COLOR); an empty
	// name is "Partner App".
	Brand Branding
	// SchoolZone is the time zone of a school whose country names none (SCHOOL_TIMEZONE;
	// Europe/Vienna when nil).
	SchoolZone *time.Location
	// Catalog holds the pages' words (nil: the shipped catalogs of web/locales).
	Catalog *i18n.Catalog

	// The gateway (issue 13). Identities builds the identity headers of forward-auth and of the
	// proxy; JWKS serves the keys of their assertion (nil: neither is offered). Proxy, when set,
	// puts the partner's app behind the sign-in (UPSTREAM_URL): every path the server does not
	// reserve goes to it (New completes it with the server's error pages, request ids, trusted
	// proxies and logger). Landing picks where a sign-in lands.
	Identities *gateway.Identities
	JWKS       http.Handler
	Proxy      *gateway.ProxyConfig
	Landing    gateway.Landing
	// EventsTarget is where the lifecycle events go, as the console shows it (EVENTS_URL without
	// its query; "" when unset).
	EventsTarget string

	// Calendar answers the platform's Calendar API (issue 14). nil: one that verifies with
	// Webhooks and answers every active school with an empty calendar (no app to ask).
	Calendar *calendar.Service
}

// Server holds the handlers' dependencies and the readiness state.
type Server struct {
	store           *store.Store
	sso             *sso.Service
	sessions        *session.Manager
	platform        *platform.Clients
	onboard         *onboard.Service
	webhooks        *webhook.Verifier
	operators       *operator.Manager
	origin          string // our own origin (PUBLIC_URL)
	platformOrigins []string
	log             *slog.Logger
	metrics         *metrics.Registry
	trusted         []netip.Prefix
	embedMode       bool
	version         string
	csp             string // Content-Security-Policy of every page
	cspNoFrame      string // ... of the pages that are never framed (console, activation)
	https           bool
	pages           map[language.Tag]*template.Template // one set per language
	catalog         *i18n.Catalog
	brand           Branding
	schoolZone      *time.Location
	names           *rosterNames
	httpm           httpMetrics
	webhookCount    *metrics.CounterVec
	// crossOrigin refuses state-changing requests a browser sends from another site (every form
	// is checked by it, besides its CSRF token).
	crossOrigin *http.CrossOriginProtection
	identities  *gateway.Identities
	jwks        http.Handler
	proxy       *gateway.Proxy
	landing     gateway.Landing
	calendar    *calendar.Service
	nameMu      sync.Mutex
	nameAsked   map[string]time.Time // when each school's name was last looked up (learnSchoolName)

	now          func() time.Time
	launchLimits launchLimiters
	eventsTarget string

	draining atomic.Bool // set once shutdown has begun: /readyz answers 503
}

// New builds a Server. It panics only on programming errors (templates that do not parse, a
// proxy without an upstream).
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.NewRegistry()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Server{
		store:           d.Store,
		sso:             d.SSO,
		sessions:        d.Sessions,
		platform:        d.Platform,
		onboard:         d.Onboard,
		webhooks:        d.Webhooks,
		operators:       d.Operators,
		origin:          d.PublicOrigin,
		platformOrigins: d.PlatformOrigins,
		log:             d.Logger,
		metrics:         d.Metrics,
		trusted:         d.TrustedProxies,
		embedMode:       d.EmbedMode,
		version:         d.Version,
		csp:             contentSecurityPolicy(d.EmbedMode, d.PlatformOrigins, d.Brand.LogoURL),
		cspNoFrame:      contentSecurityPolicy(false, nil, d.Brand.LogoURL),
		https:           d.HTTPS,
		catalog:         d.Catalog,
		brand:           d.Brand,
		schoolZone:      d.SchoolZone,
		now:             d.Now,
		identities:      d.Identities,
		jwks:            d.JWKS,
		landing:         d.Landing,
		eventsTarget:    d.EventsTarget,
	}
	if s.catalog == nil {
		cat, err := i18n.Load(web.Locales())
		if err != nil {
			panic(err) // the embedded catalogs are fixed at build time; their tests load them
		}
		s.catalog = cat
	}
	pages, err := pageTemplates(s.catalog)
	if err != nil {
		panic(err)
	}
	s.pages = pages
	if s.brand.Name == "" {
		s.brand.Name = "Partner App"
	}
	s.brand.Theme = s.brand.Accent != ""
	if s.schoolZone == nil {
		s.schoolZone = viennaOrUTC()
	}
	s.names = newRosterNames(d.Now)
	s.launchLimits = newLaunchLimiters(d.LaunchLimits, d.Now, d.Metrics)
	s.httpm = newHTTPMetrics(d.Metrics)
	s.webhookCount = d.Metrics.NewCounterVec("webhooks_received_total",
		"Platform webhooks by event type and outcome (processed, duplicate, ignored, bad_signature, malformed, ...).", "event", "outcome")
	if s.webhooks == nil {
		s.webhooks = webhook.NewVerifier(nil) // no key: every webhook is refused
	}
	s.crossOrigin = http.NewCrossOriginProtection()
	if d.PublicOrigin != "" {
		// Behind a proxy the Host header may not be the public one.
		_ = s.crossOrigin.AddTrustedOrigin(d.PublicOrigin)
	}
	s.calendar = d.Calendar
	if s.calendar == nil && d.Store != nil {
		c, err := calendar.New(calendar.Config{Store: d.Store, Verifier: s.webhooks, Logger: d.Logger, Metrics: d.Metrics})
		if err != nil {
			panic(err) // a programming error: both are given
		}
		s.calendar = c
	}
	if d.Proxy != nil {
		cfg := *d.Proxy
		cfg.Fail, cfg.RequestID, cfg.Trusted, cfg.Logger = s.upstreamFailed, RequestID, d.TrustedProxies, d.Logger
		p, err := gateway.NewProxy(cfg)
		if err != nil {
			panic(err) // a programming error: run.go always gives the upstream and public URL
		}
		s.proxy = p
	}
	if d.Store != nil {
		registerPoolMetrics(d.Metrics, d.Store)
		registerTenantMetrics(d.Metrics, d.Store)
	}
	return s
}

// viennaOrUTC is SCHOOL_TIMEZONE's default, Europe/Vienna (UTC only where no zone data exists;
// cmd/server embeds it).
func viennaOrUTC() *time.Location {
	if loc, err := time.LoadLocation("Europe/Vienna"); err == nil {
		return loc
	}
	return time.UTC
}

// BeginShutdown makes /readyz answer 503, so a load balancer stops sending new requests.
func (s *Server) BeginShutdown() { s.draining.Store(true) }

// NewHTTPServer returns an http.Server with every timeout set: a slow or stalled client must not
// hold a connection (and its goroutine) forever.
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// ShutdownPlan says how Serve stops once its context is cancelled.
type ShutdownPlan struct {
	// Begin runs first (it turns /readyz to 503).
	Begin func()
	// Delay keeps serving, with readiness failing, so a load balancer can notice and stop
	// sending new requests before the listener closes.
	Delay time.Duration
	// Timeout bounds the drain of in-flight requests after the listener closed.
	Timeout time.Duration
}

// ErrDrainTimeout reports that requests were still running when the drain timeout ran out.
var ErrDrainTimeout = errors.New("drain timed out; remaining connections were closed")

// Serve serves on ln until ctx is cancelled, then follows plan: readiness off, a delay while
// still serving, then no new connections and a drain of the requests in flight.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, plan ShutdownPlan) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	if plan.Begin != nil {
		plan.Begin()
	}
	if plan.Delay > 0 {
		select {
		case <-time.After(plan.Delay):
		case err := <-errc:
			return fmt.Errorf("http server: %w", err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), plan.Timeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		<-errc
		if errors.Is(err, context.DeadlineExceeded) {
			return ErrDrainTimeout
		}
		return fmt.Errorf("http server: drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
