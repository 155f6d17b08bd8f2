// Package config reads the server's configuration from the environment, as contract.md names it.
//
// Every option is declared once in the options table below, with its default, whether it is a
// secret (masked wherever configuration is printed) and whether it may come from a NAME_FILE.
// A value that is present is always validated; whether a value is required depends on the command
// (serve needs everything, migrate only the database), so Load parses and Require checks.
package config

import (
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/untis-partner/server/internal/events"
	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/internalapi"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/setup"
)

// Names of the environment variables (contract.md, "Configuration").
const (
	EnvDatabaseURL        = "DATABASE_URL"
	EnvListenAddr         = "LISTEN_ADDR"
	EnvPublicURL          = "PUBLIC_URL"
	EnvUntisAPIURL        = "UNTIS_API_URL"
	EnvWebhookKeys        = "UNTIS_WEBHOOK_KEYS"
	EnvEncryptionKeys     = "ENCRYPTION_KEYS"
	EnvSetupFieldsFile    = "SETUP_FIELDS_FILE"
	EnvEmbedMode          = "EMBED_MODE"
	EnvTrustedProxies     = "TRUSTED_PROXIES"
	EnvLogLevel           = "LOG_LEVEL"
	EnvLogFormat          = "LOG_FORMAT"
	EnvPlatformOrigins    = "PLATFORM_ORIGINS"
	EnvShutdownTimeout    = "SHUTDOWN_TIMEOUT"
	EnvShutdownDelay      = "SHUTDOWN_DELAY"
	EnvDatabaseMaxConns   = "DATABASE_MAX_CONNS"
	EnvSessionIdleTimeout = "SESSION_IDLE_TIMEOUT"
	EnvSessionMaxAge      = "SESSION_MAX_AGE"
	EnvLaunchLimitClient  = "LAUNCH_LIMIT_PER_CLIENT"
	EnvLaunchLimitSchool  = "LAUNCH_LIMIT_PER_SCHOOL"
	EnvSessionCacheTTL    = "SESSION_CACHE_TTL"
	EnvAppName            = "APP_NAME"
	EnvAppLogoURL         = "APP_LOGO_URL"
	EnvAppAccentColor     = "APP_ACCENT_COLOR"
	EnvSchoolTimezone     = "SCHOOL_TIMEZONE"

	// The gateway (issue 13): the partner's app behind the sign-in.
	EnvUpstreamURL         = "UPSTREAM_URL"
	EnvGatewayPublicPaths  = "GATEWAY_PUBLIC_PATHS"
	EnvGatewayMaxBody      = "GATEWAY_MAX_BODY"
	EnvUpstreamTimeout     = "UPSTREAM_TIMEOUT"
	EnvGatewayIdleTimeout  = "GATEWAY_IDLE_TIMEOUT"
	EnvGatewayLandingPaths = "GATEWAY_LANDING_PATHS"
	EnvIdentityJWTAudience = "IDENTITY_JWT_AUDIENCE"
	EnvIdentityJWTTTL      = "IDENTITY_JWT_TTL"
	EnvIdentityKeyRotation = "IDENTITY_KEY_ROTATION"
	EnvEventsURL           = "EVENTS_URL"
	EnvEventsSecret        = "EVENTS_SECRET"
	EnvEventsTimeout       = "EVENTS_TIMEOUT"
	EnvEventsRetryFor      = "EVENTS_RETRY_FOR"
	EnvEventsRetention     = "EVENTS_RETENTION"

	// The platform API for the partner's app (issue 14), on a listener of its own.
	EnvInternalListenAddr = "INTERNAL_LISTEN_ADDR"
	EnvInternalAPIToken   = "INTERNAL_API_TOKEN"
	EnvInternalWritePaths = "INTERNAL_API_WRITE_PATHS"
	EnvInternalMaxBody    = "INTERNAL_API_MAX_BODY"

	// The Calendar API (issue 14): how the partner's app is asked for a user's events.
	EnvCalendarUpstreamPath = "CALENDAR_UPSTREAM_PATH"
	EnvCalendarTimeout      = "CALENDAR_TIMEOUT"
	EnvCalendarMaxBytes     = "CALENDAR_MAX_BYTES"
	EnvCalendarMaxEvents    = "CALENDAR_MAX_EVENTS"
	EnvCalendarMaxDays      = "CALENDAR_MAX_DAYS"
)

// Config is the validated configuration.
type Config struct {
	DatabaseURL     string
	ListenAddr      string
	PublicURL       *url.URL
	UntisAPIURL     *url.URL
	WebhookKeys     []*rsa.PublicKey
	Keyring         *secret.Keyring
	SetupFieldsFile string
	// SetupFields are the fields of SETUP_FIELDS_FILE, checked at start (nil when unset).
	SetupFields    setup.Fields
	EmbedMode      bool
	TrustedProxies []netip.Prefix
	LogLevel       slog.Level
	LogFormat      string // "json" or "text"

	// Operational knobs beyond contract.md, all with safe defaults.

	// PlatformOrigins are the browser origins of the Untis Platform (WebUntis pages): the only
	// origins allowed to frame the app in embed mode (and, later, to call the logout path
	// cross-origin). Entries are "scheme://host[:port]", where the host may start with "*."
	// for any subdomain. The UNTIS_API_URL origin is always included.
	PlatformOrigins []string
	// ShutdownDelay is how long /readyz answers 503 while the server still serves, before it
	// stops accepting connections: the time a load balancer needs to notice.
	ShutdownDelay      time.Duration
	ShutdownTimeout    time.Duration
	DatabaseMaxConns   int32
	SessionIdleTimeout time.Duration
	SessionMaxAge      time.Duration
	// LaunchLimitPerClient and LaunchLimitPerSchool bound the sign-ins /launch starts (each
	// stores a flow row) per minute, per client network and per school, on each replica: a burst
	// of that many, refilled evenly over a minute. 0 turns a limit off.
	LaunchLimitPerClient int
	LaunchLimitPerSchool int
	// SessionCacheTTL is how long a session read from the database may answer later requests
	// from memory (revoked on every replica through LISTEN/NOTIFY; 0 turns the cache off).
	SessionCacheTTL time.Duration

	// AppName names the app on every page (title and header); AppLogoURL is an optional logo
	// (https or a path on this server) and AppAccentColor an optional #rrggbb for buttons and
	// links.
	AppName        string
	AppLogoURL     string
	AppAccentColor string
	// SchoolTimezone is the time zone of a school whose country names none (the credentials
	// webhook's "country" picks the zone otherwise: AT Europe/Vienna, DE Europe/Berlin, ...).
	SchoolTimezone *time.Location
	// The gateway. UpstreamURL nil is the built-in app; forward-auth and the identity keys work
	// in both modes.
	UpstreamURL        *url.URL
	PublicPaths        gateway.PathRules
	GatewayMaxBody     int64         // 0: no limit
	UpstreamTimeout    time.Duration // 0: no limit
	GatewayIdleTimeout time.Duration // 0: no limit
	LandingPaths       gateway.Landing
	// IdentityAudience is the aud of X-Untis-Identity (default: PUBLIC_URL).
	IdentityAudience    string
	IdentityTTL         time.Duration
	IdentityKeyRotation time.Duration

	// EventsURL is where the school lifecycle events go (nil: nowhere; they are kept for
	// EventsRetryFor). EventsSecrets sign them (Standard Webhooks; required with EventsURL).
	EventsURL     *url.URL
	EventsSecrets []events.Secret
	// EventsTimeout bounds one delivery attempt; EventsRetryFor is how long an event is retried
	// before it is marked failed; EventsRetention how long delivered and failed events are kept.
	EventsTimeout   time.Duration
	EventsRetryFor  time.Duration
	EventsRetention time.Duration
	// The internal API. InternalListenAddr "" turns it off; when set, InternalAPITokens holds at
	// least one token (the first is current; more are accepted while the app changes over).
	InternalListenAddr string
	InternalAPITokens  []string
	InternalWritePaths internalapi.WriteRules
	InternalMaxBody    int64 // 0: no limit
	// The Calendar API. The app (UPSTREAM_URL) is asked at CalendarUpstreamPath; its answer must
	// arrive within CalendarTimeout and be at most CalendarMaxBytes with CalendarMaxEvents events
	// (0: no bound); a request may cover at most CalendarMaxDays days (0: no bound).
	CalendarUpstreamPath string
	CalendarTimeout      time.Duration
	CalendarMaxBytes     int64
	CalendarMaxEvents    int
	CalendarMaxDays      int

	raw map[string]string // as given, for Describe
}

// Error is a configuration problem; it always names the variable.
type Error struct {
	Var string
	Msg string
}

func (e *Error) Error() string { return "config: " + e.Var + ": " + e.Msg }

type option struct {
	name     string
	def      string
	secret   bool // masked in Describe
	fromFile bool // NAME_FILE accepted
	apply    func(c *Config, v string) error
	// describe, when set, prints the parsed value instead of the raw one (e.g. long keys).
	describe func(c *Config) string
}

// options is the single table of every setting the server reads.
var options = []option{
	{name: EnvDatabaseURL, secret: true, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		// Both forms libpq knows: a postgres:// URL or "host=... dbname=..." keywords. The
		// parser's own error may quote the value, password included, so it is not passed on.
		if !plausibleConnString(v) {
			return errors.New("is not a PostgreSQL connection string (postgres://user:password@host:5432/db or host=... dbname=...)")
		}
		if _, err := pgconn.ParseConfig(v); err != nil {
			return errors.New("is not a valid PostgreSQL connection string (postgres://user:password@host:5432/db or host=... dbname=...)")
		}
		c.DatabaseURL = v
		return nil
	}},
	{name: EnvListenAddr, def: ":8080", apply: func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("must be host:port or :port (%v)", err)
		}
		c.ListenAddr = v
		return nil
	}},
	{name: EnvPublicURL, def: "http://localhost:8080", apply: func(c *Config, v string) error {
		u, err := parseBaseURL(v)
		c.PublicURL = u
		return err
	}},
	{name: EnvUntisAPIURL, def: "https://api.webuntis.com", apply: func(c *Config, v string) error {
		u, err := parseBaseURL(v)
		c.UntisAPIURL = u
		return err
	}},
	{name: EnvWebhookKeys, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		keys, err := ParseWebhookKeys(v)
		c.WebhookKeys = keys
		return err
	}, describe: func(c *Config) string {
		// Public keys are not secret, but a fingerprint is what an operator compares with the
		// key Untis publishes, and it keeps the start-up line short.
		fps := make([]string, len(c.WebhookKeys))
		for i, k := range c.WebhookKeys {
			fps[i] = keyFingerprint(k)
		}
		return fmt.Sprintf("%d key(s), SHA-256 %s", len(fps), strings.Join(fps, ", "))
	}},
	{name: EnvEncryptionKeys, secret: true, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		kr, err := secret.ParseKeyring(v)
		if err != nil {
			return err
		}
		c.Keyring = kr
		return nil
	}},
	{name: EnvSetupFieldsFile, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		b, err := os.ReadFile(v)
		if err != nil {
			return fmt.Errorf("cannot read the file: %w", errors.Unwrap(err))
		}
		fields, err := setup.Parse(b)
		if err != nil {
			return fmt.Errorf("%s: %w", v, err)
		}
		c.SetupFieldsFile, c.SetupFields = v, fields
		return nil
	}},
	{name: EnvEmbedMode, def: "false", apply: func(c *Config, v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return errors.New("must be true or false")
		}
		c.EmbedMode = b
		return nil
	}},
	{name: EnvTrustedProxies, apply: func(c *Config, v string) error {
		for _, s := range splitList(v) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				addr, aerr := netip.ParseAddr(s)
				if aerr != nil {
					return fmt.Errorf("%q is not a CIDR (e.g. 10.0.0.0/8) or an IP address", s)
				}
				p = netip.PrefixFrom(addr, addr.BitLen())
			}
			// Peers are compared unmapped (gateway.ClientIP), so ::ffff:a.b.c.d/n is a.b.c.d/(n-96).
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			c.TrustedProxies = append(c.TrustedProxies, p.Masked())
		}
		return nil
	}},
	{name: EnvLogLevel, def: "info", apply: func(c *Config, v string) error {
		levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
		l, ok := levels[strings.ToLower(v)]
		if !ok {
			return errors.New("must be debug, info, warn or error")
		}
		c.LogLevel = l
		return nil
	}},
	{name: EnvLogFormat, def: "json", apply: func(c *Config, v string) error {
		if v != "json" && v != "text" {
			return errors.New("must be json or text")
		}
		c.LogFormat = v
		return nil
	}},
	{name: EnvPlatformOrigins, def: "https://*.webuntis.com", apply: func(c *Config, v string) error {
		for _, o := range splitList(v) {
			norm, err := parseOriginPattern(o)
			if err != nil {
				return err
			}
			c.PlatformOrigins = append(c.PlatformOrigins, norm)
		}
		return nil
	}},
	{name: EnvShutdownTimeout, def: "20s", apply: durationOption(func(c *Config) *time.Duration { return &c.ShutdownTimeout })},
	{name: EnvShutdownDelay, def: "5s", apply: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("must be a duration such as 0s or 5s")
		}
		c.ShutdownDelay = d
		return nil
	}},
	{name: EnvSessionIdleTimeout, def: "2h", apply: durationOption(func(c *Config) *time.Duration { return &c.SessionIdleTimeout })},
	{name: EnvSessionMaxAge, def: "12h", apply: durationOption(func(c *Config) *time.Duration { return &c.SessionMaxAge })},
	{name: EnvSessionCacheTTL, def: "10s", apply: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		// Notifications revoke the copies; the TTL only bounds what is never notified, so a
		// long one buys little and risks much.
		if err != nil || d < 0 || d > 5*time.Minute {
			return errors.New("must be a duration from 0s (no cache) to 5m, such as 10s")
		}
		c.SessionCacheTTL = d
		return nil
	}},
	{name: EnvDatabaseMaxConns, def: "20", apply: func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 || n > 1000 {
			return errors.New("must be a whole number from 2 to 1000")
		}
		c.DatabaseMaxConns = int32(n)
		return nil
	}},
	// The defaults let a whole school of 1,500 users behind one NAT address launch at the same
	// moment (per client), and every user of such a school launch twice within a minute from
	// anywhere (per school); README.md "Configuration" says why.
	{name: EnvLaunchLimitClient, def: "1500", apply: limitOption(func(c *Config) *int { return &c.LaunchLimitPerClient })},
	{name: EnvLaunchLimitSchool, def: "3000", apply: limitOption(func(c *Config) *int { return &c.LaunchLimitPerSchool })},
	{name: EnvAppName, def: "Partner App", apply: func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v == "" || utf8.RuneCountInString(v) > 60 || strings.ContainsFunc(v, unicode.IsControl) {
			return errors.New("must be a name of 1 to 60 characters without control characters")
		}
		c.AppName = v
		return nil
	}},
	{name: EnvAppLogoURL, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if !validLogoURL(v) {
			return errors.New("must be an https:// URL (no user info) or a path on this server starting with one /")
		}
		c.AppLogoURL = v
		return nil
	}},
	{name: EnvAppAccentColor, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if !accentColor.MatchString(v) {
			return errors.New("must be a colour as #rrggbb, such as #0b6bcb")
		}
		c.AppAccentColor = strings.ToLower(v)
		return nil
	}},
	{name: EnvSchoolTimezone, def: "Europe/Vienna", apply: func(c *Config, v string) error {
		loc, err := time.LoadLocation(v)
		if err != nil || v == "" || v == "Local" {
			return errors.New("must be an IANA time zone such as Europe/Vienna")
		}
		c.SchoolTimezone = loc
		return nil
	}},
	{name: EnvUpstreamURL, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := parseBaseURL(v)
		c.UpstreamURL = u
		return err
	}},
	{name: EnvGatewayPublicPaths, apply: func(c *Config, v string) error {
		rules, err := gateway.ParsePathRules(v)
		c.PublicPaths = rules
		return err
	}},
	{name: EnvGatewayMaxBody, def: "32MiB", apply: sizeOption(func(c *Config) *int64 { return &c.GatewayMaxBody })},
	{name: EnvUpstreamTimeout, def: "30s", apply: durationLimitOption(func(c *Config) *time.Duration { return &c.UpstreamTimeout })},
	{name: EnvGatewayIdleTimeout, def: "60s", apply: durationLimitOption(func(c *Config) *time.Duration { return &c.GatewayIdleTimeout })},
	{name: EnvGatewayLandingPaths, apply: func(c *Config, v string) error {
		l, err := gateway.ParseLanding(v)
		c.LandingPaths = l
		return err
	}},
	{name: EnvIdentityJWTAudience, apply: func(c *Config, v string) error {
		if len(v) > 512 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return errors.New("must be a short string without control characters (usually the app's URL)")
		}
		c.IdentityAudience = v
		return nil
	}},
	{name: EnvIdentityJWTTTL, def: "5m", apply: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > 5*time.Minute {
			return errors.New("must be a duration from 10s to 5m (the assertion is short-lived)")
		}
		c.IdentityTTL = d
		return nil
	}},
	{name: EnvIdentityKeyRotation, def: "168h", apply: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Hour {
			return errors.New("must be a duration of at least 1h, such as 168h (a week)")
		}
		c.IdentityKeyRotation = d
		return nil
	}},
	{name: EnvEventsURL, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := parseEventsURL(v)
		c.EventsURL = u
		return err
	}, describe: func(c *Config) string {
		// A receiver may take a token in its query: shown as present, never as its value.
		u := *c.EventsURL
		if u.RawQuery != "" {
			u.RawQuery = "(query hidden)"
		}
		return u.String()
	}},
	{name: EnvEventsSecret, secret: true, fromFile: true, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		secrets, err := events.ParseSecrets(v)
		c.EventsSecrets = secrets
		return err
	}},
	{name: EnvEventsTimeout, def: "10s", apply: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 5*time.Minute {
			return errors.New("must be a duration from 1s to 5m, such as 10s")
		}
		c.EventsTimeout = d
		return nil
	}},
	{name: EnvEventsRetryFor, def: "72h", apply: durationOption(func(c *Config) *time.Duration { return &c.EventsRetryFor })},
	{name: EnvEventsRetention, def: "720h", apply: durationOption(func(c *Config) *time.Duration { return &c.EventsRetention })},
	{name: EnvInternalListenAddr, apply: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("must be host:port or :port, such as 127.0.0.1:8082 (%v)", err)
		}
		c.InternalListenAddr = v
		return nil
	}},
	{name: EnvInternalAPIToken, secret: true, fromFile: true, apply: func(c *Config, v string) error {
		for _, t := range splitList(v) {
			if len(t) < 32 || strings.ContainsFunc(t, func(r rune) bool { return r <= 0x20 || r >= 0x7f }) {
				return errors.New("each token must be at least 32 visible ASCII characters, such as the output of: head -c 32 /dev/urandom | base64")
			}
			c.InternalAPITokens = append(c.InternalAPITokens, t)
		}
		return nil
	}},
	{name: EnvInternalWritePaths, apply: func(c *Config, v string) error {
		rules, err := internalapi.ParseWriteRules(v)
		c.InternalWritePaths = rules
		return err
	}},
	{name: EnvInternalMaxBody, def: "1MiB", apply: sizeOption(func(c *Config) *int64 { return &c.InternalMaxBody })},
	{name: EnvCalendarUpstreamPath, def: "/untis/calendar", apply: func(c *Config, v string) error {
		u, err := url.Parse(v)
		if err != nil || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || u.Path != v || len(v) > 256 ||
			strings.Contains("/"+v+"/", "/../") || strings.Contains("/"+v+"/", "/./") {
			return errors.New("must be a plain path of the app, such as /untis/calendar (no query, no . or .. segments)")
		}
		c.CalendarUpstreamPath = v
		return nil
	}},
	{name: EnvCalendarTimeout, def: "5s", apply: func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		// The answer to the platform must be written before the server's 30 s write timeout.
		if err != nil || d < 100*time.Millisecond || d > 25*time.Second {
			return errors.New("must be a duration from 100ms to 25s, such as 5s (the platform is answered within the server's 30 s write timeout)")
		}
		c.CalendarTimeout = d
		return nil
	}},
	{name: EnvCalendarMaxBytes, def: "5MiB", apply: sizeOption(func(c *Config) *int64 { return &c.CalendarMaxBytes })},
	{name: EnvCalendarMaxEvents, def: "5000", apply: countOption("events", func(c *Config) *int { return &c.CalendarMaxEvents })},
	{name: EnvCalendarMaxDays, def: "62", apply: countOption("days", func(c *Config) *int { return &c.CalendarMaxDays })},
}

// accentColor is APP_ACCENT_COLOR's form: the value goes into a style sheet, so nothing else
// may pass.
var accentColor = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// validLogoURL accepts an https URL with a host and no user info, or a path on this server
// (one leading slash). Pages load it as an image, so the Content-Security-Policy's img-src
// names its origin.
func validLogoURL(v string) bool {
	if len(v) > 2048 || strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '\\' }) {
		return false
	}
	if strings.HasPrefix(v, "/") {
		return !strings.HasPrefix(v, "//")
	}
	u, err := url.Parse(v)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.User == nil
}

// Load reads every option through getenv (os.Getenv in production, a map in tests). Values that
// are present are validated; Require says which ones a command cannot do without.
func Load(getenv func(string) string) (*Config, error) {
	c := &Config{raw: map[string]string{}}
	for _, o := range options {
		v, err := lookup(getenv, o)
		if err != nil {
			return nil, err
		}
		c.raw[o.name] = v
		if v == "" {
			v = o.def
		}
		if err := o.apply(c, v); err != nil {
			return nil, &Error{Var: o.name, Msg: err.Error()}
		}
	}
	// The platform's API origin is a platform origin too (with the simulator it is the only one).
	api := c.UntisAPIURL.Scheme + "://" + c.UntisAPIURL.Host
	if !slices.Contains(c.PlatformOrigins, api) {
		c.PlatformOrigins = append(c.PlatformOrigins, api)
	}
	if c.SessionMaxAge < c.SessionIdleTimeout {
		return nil, &Error{Var: EnvSessionMaxAge, Msg: "must not be shorter than " + EnvSessionIdleTimeout}
	}
	if err := c.checkGateway(); err != nil {
		return nil, err
	}
	if c.EventsURL != nil && len(c.EventsSecrets) == 0 {
		return nil, &Error{Var: EnvEventsSecret, Msg: "is required when " + EnvEventsURL + " is set (also accepted as " +
			EnvEventsSecret + "_FILE): the events are signed with it; make one with: echo whsec_$(head -c 32 /dev/urandom | base64)"}
	}
	if err := c.checkInternal(); err != nil {
		return nil, err
	}
	return c, nil
}

// checkInternal checks the internal API's settings against each other: a listener needs a token
// (an open API would hand every school's data to whoever reaches it), and never shares the
// public listener's port.
func (c *Config) checkInternal() error {
	if c.InternalListenAddr == "" {
		if c.InternalWritePaths.Len() > 0 {
			return &Error{Var: EnvInternalWritePaths, Msg: "is set but " + EnvInternalListenAddr + " is not (write paths are the internal API's)"}
		}
		return nil
	}
	if len(c.InternalAPITokens) == 0 {
		return &Error{Var: EnvInternalAPIToken, Msg: "is required when " + EnvInternalListenAddr +
			" is set (also accepted as " + EnvInternalAPIToken + "_FILE); make one with: head -c 32 /dev/urandom | base64"}
	}
	ih, ip, _ := net.SplitHostPort(c.InternalListenAddr)
	lh, lp, _ := net.SplitHostPort(c.ListenAddr)
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	if ip == lp && ip != "0" && (strings.EqualFold(ih, lh) || wildcard(ih) || wildcard(lh)) {
		return &Error{Var: EnvInternalListenAddr, Msg: "uses the port of " + EnvListenAddr + "; the internal API needs a listener of its own, such as 127.0.0.1:8082"}
	}
	return nil
}

// checkGateway checks the gateway settings against each other, and fills in the audience.
func (c *Config) checkGateway() error {
	if c.IdentityAudience == "" {
		c.IdentityAudience = c.PublicURL.String()
	}
	if c.UpstreamURL == nil {
		if c.PublicPaths.Len() > 0 {
			return &Error{Var: EnvGatewayPublicPaths, Msg: "is set but " + EnvUpstreamURL + " is not (public paths are the app's, behind the gateway)"}
		}
		return nil
	}
	up := c.UpstreamURL
	port := up.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[up.Scheme]
	}
	_, listenPort, _ := net.SplitHostPort(c.ListenAddr)
	if strings.EqualFold(up.Host, c.PublicURL.Host) && up.Scheme == c.PublicURL.Scheme ||
		isLoopbackHost(up.Hostname()) && port == listenPort {
		return &Error{Var: EnvUpstreamURL, Msg: "is the server itself (" + EnvPublicURL + "); it must be the partner app's own address, such as http://127.0.0.1:3000"}
	}
	return nil
}

// Gateway reports whether the server runs in front of an app (UPSTREAM_URL is set).
func (c *Config) Gateway() bool { return c.UpstreamURL != nil }

// Require reports the first of the named variables that has no value.
func (c *Config) Require(names ...string) error {
	for _, n := range names {
		missing := false
		switch n {
		case EnvDatabaseURL:
			missing = c.DatabaseURL == ""
		case EnvWebhookKeys:
			missing = len(c.WebhookKeys) == 0
		case EnvEncryptionKeys:
			missing = c.Keyring == nil
		default:
			missing = c.raw[n] == ""
		}
		if missing {
			return &Error{Var: n, Msg: "is required (also accepted as " + n + "_FILE)"}
		}
	}
	return nil
}

// String and LogValue show the configuration as Describe does, secrets masked, so printing or
// logging a Config by accident cannot leak the database password or the encryption keys.
func (c *Config) String() string {
	var b strings.Builder
	b.WriteString("config{")
	for i, a := range c.Describe() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a.Key + "=" + a.Value.String())
	}
	b.WriteByte('}')
	return b.String()
}

// LogValue implements slog.LogValuer.
func (c *Config) LogValue() slog.Value { return slog.GroupValue(c.Describe()...) }

// GoString covers %#v.
func (c *Config) GoString() string { return c.String() }

// RedirectURL is the OIDC redirect_uri: PUBLIC_URL + /launch.
func (c *Config) RedirectURL() string { return c.PublicURL.String() + "/launch" }

// Describe lists the effective configuration with secrets masked, for the start-up log line.
func (c *Config) Describe() []slog.Attr {
	attrs := make([]slog.Attr, 0, len(options))
	for _, o := range options {
		v := c.raw[o.name]
		switch {
		case v != "" && o.describe != nil:
			v = o.describe(c)
		case v == "" && o.def != "":
			v = o.def
		case v != "" && o.secret:
			v = "(set, " + strconv.Itoa(len(v)) + " chars)"
		case v == "":
			v = "(unset)"
		}
		attrs = append(attrs, slog.String(o.name, v))
	}
	return attrs
}

func lookup(getenv func(string) string, o option) (string, error) {
	v := getenv(o.name)
	if !o.fromFile {
		return strings.TrimSpace(v), nil
	}
	file := getenv(o.name + "_FILE")
	if file == "" {
		return strings.TrimSpace(v), nil
	}
	if v != "" {
		return "", &Error{Var: o.name, Msg: "set both " + o.name + " and " + o.name + "_FILE; set only one"}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		// The path is not a secret; the error names it so an operator can fix the mount.
		return "", &Error{Var: o.name + "_FILE", Msg: fmt.Sprintf("cannot read %s: %v", file, errors.Unwrap(err))}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// ParseWebhookKeys parses UNTIS_WEBHOOK_KEYS: comma-separated base64 X.509 SubjectPublicKeyInfo
// RSA keys without PEM armour (the form the Untis developer docs publish).
func ParseWebhookKeys(v string) ([]*rsa.PublicKey, error) {
	var keys []*rsa.PublicKey
	for i, s := range splitList(v) {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("key %d is not base64 (give the X.509 SubjectPublicKeyInfo without PEM armour)", i+1)
		}
		pub, err := x509.ParsePKIXPublicKey(der)
		if err != nil {
			return nil, fmt.Errorf("key %d is not an X.509 public key: %v", i+1, err)
		}
		rk, ok := pub.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("key %d is not an RSA key", i+1)
		}
		if rk.N.BitLen() < 2048 {
			return nil, fmt.Errorf("key %d is %d bits; at least 2048 are required", i+1, rk.N.BitLen())
		}
		keys = append(keys, rk)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys given")
	}
	return keys, nil
}

// plausibleConnString screens what pgconn would accept too generously: it takes unknown keywords
// as server settings, so "garbage:x=y" would pass. A URL must be postgres:// or postgresql://;
// keyword form must use plain lower-case keywords, as libpq's do.
func plausibleConnString(v string) bool {
	if strings.Contains(v, "://") {
		return strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")
	}
	for _, field := range strings.Fields(v) {
		key, _, ok := strings.Cut(field, "=")
		if !ok {
			continue // a value with spaces inside quotes; pgconn checks the quoting
		}
		if key == "" || strings.Trim(key, "abcdefghijklmnopqrstuvwxyz_") != "" {
			return false
		}
	}
	return strings.Contains(v, "=")
}

// Warnings are settings that work but are probably not what production wants.
func (c *Config) Warnings() []string {
	var w []string
	if c.PublicURL.Scheme != "https" && !isLoopbackHost(c.PublicURL.Hostname()) {
		w = append(w, EnvPublicURL+" is not https: browsers drop the server's Secure (__Host-) cookies on plain http, so sign-in will fail for users")
	}
	if c.EventsURL != nil && c.EventsURL.Scheme != "https" && !isLoopbackHost(c.EventsURL.Hostname()) {
		w = append(w, EnvEventsURL+" is not https: the school events (names, setup answers) cross the network unencrypted; "+
			"the signature proves where they come from, not who reads them")
	}
	return w
}

func isLoopbackHost(h string) bool {
	h = strings.ToLower(h)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// parseOriginPattern checks one PLATFORM_ORIGINS entry and returns it normalised.
func parseOriginPattern(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", fmt.Errorf("%q is not an origin such as https://*.webuntis.com or https://school.webuntis.com", o)
	}
	host := u.Host
	if strings.Contains(strings.TrimPrefix(host, "*."), "*") {
		return "", fmt.Errorf("%q: a wildcard may only stand for the leftmost label (*.example.com)", o)
	}
	if rest, ok := strings.CutPrefix(u.Hostname(), "*."); ok && !strings.Contains(rest, ".") {
		return "", fmt.Errorf("%q: a wildcard must stand under a registered domain (*.example.com), not a whole top-level domain", o)
	}
	// The entry goes verbatim into the Content-Security-Policy header, and url.Parse lets
	// characters such as ; and ' through in a host: accept only DNS names, IP literals and a port.
	if !validOriginHost(u) {
		return "", fmt.Errorf("%q is not an origin such as https://*.webuntis.com or https://school.webuntis.com", o)
	}
	return u.Scheme + "://" + strings.ToLower(host), nil
}

// validOriginHost accepts host[:port] where host is a DNS name (optionally "*." first; "_" is
// allowed, as in container host names) or an IP literal, and the port, if any, is 1-65535.
func validOriginHost(u *url.URL) bool {
	if strings.HasSuffix(u.Host, ":") {
		return false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return false
		}
	}
	name := u.Hostname()
	if a, err := netip.ParseAddr(name); err == nil {
		return a.Zone() == ""
	}
	for _, label := range strings.Split(strings.TrimPrefix(name, "*."), ".") {
		if label == "" || strings.Trim(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

// keyFingerprint is the first 8 bytes of the SHA-256 of the key's SubjectPublicKeyInfo, in hex.
func keyFingerprint(k *rsa.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "?"
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

func parseBaseURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("must be an absolute http:// or https:// URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("must not contain a query, fragment or user info")
	}
	// Its origin goes into headers (CSP frame-ancestors, later CORS): only a DNS name or an IP.
	if strings.Contains(u.Host, "*") || !validOriginHost(u) {
		return nil, errors.New("has a host that is not a DNS name or an IP address")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// parseEventsURL checks EVENTS_URL: an absolute http(s) URL of a DNS name or an IP, without user
// info (a password there would be printed with the URL) or fragment; a path and a query are kept.
func parseEventsURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("must be an absolute http:// or https:// URL, such as https://app.example.com/untis/events")
	}
	if u.User != nil || u.Fragment != "" {
		return nil, errors.New("must not contain user info or a fragment (the events are signed with EVENTS_SECRET)")
	}
	if strings.Contains(u.Host, "*") || !validOriginHost(u) {
		return nil, errors.New("has a host that is not a DNS name or an IP address")
	}
	return u, nil
}

func durationOption(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("must be a positive duration such as 30s, 15m or 2h")
		}
		*field(c) = d
		return nil
	}
}

// durationLimitOption reads a duration that bounds something, where 0 turns the bound off.
func durationLimitOption(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return errors.New("must be a duration such as 30s or 2m (0 turns the limit off)")
		}
		*field(c) = d
		return nil
	}
}

// limitOption reads a rate limit: a whole number of requests per minute, 0 for no limit.
func limitOption(field func(*Config) *int) func(*Config, string) error {
	return countOption("requests per minute", field)
}

// countOption reads a bound on a count of things, 0 for no bound.
func countOption(what string, field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10_000_000 {
			return fmt.Errorf("must be a whole number of %s (0 turns the limit off)", what)
		}
		*field(c) = n
		return nil
	}
}

// sizeOption reads a bound on a size in bytes (parseSize), 0 for no bound.
func sizeOption(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := parseSize(v)
		*field(c) = n
		return err
	}
}

// parseSize reads a byte count: a whole number, optionally with B, KiB, MiB or GiB.
func parseSize(v string) (int64, error) {
	num := strings.TrimRight(v, "BKMGikbmg ")
	unit := strings.TrimSpace(v[len(num):])
	mult := int64(1)
	switch strings.ToLower(unit) {
	case "", "b":
	case "kib":
		mult = 1 << 10
	case "mib":
		mult = 1 << 20
	case "gib":
		mult = 1 << 30
	default:
		return 0, errors.New("must be a size such as 32MiB, 512KiB, 1GiB or a number of bytes (0 turns the limit off)")
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, errors.New("must be a size such as 32MiB, 512KiB, 1GiB or a number of bytes (0 turns the limit off)")
	}
	return n * mult, nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
