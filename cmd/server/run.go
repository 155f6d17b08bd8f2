package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/calendar"
	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/events"
	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage: server [command]

commands:
  serve                 migrate the schema up, then serve HTTP until SIGINT/SIGTERM (default)
  migrate up            apply every pending migration
  migrate down N        roll back N migrations
  migrate version       print the schema version
  migrate force V       record version V without running anything (after repairing a failed migration)
  rotate-keys           re-encrypt every stored secret under the active ENCRYPTION_KEYS key
  rotate-identity-key   add a new signing key for X-Untis-Identity now (the old one stays published)
  check-tenant ID       fetch a token with school ID's stored credentials and read it from OneRoster
  activate ID           prove school ID's credentials (JSON on stdin) with the platform, then store them
  operator add EMAIL    create a console operator, or reset their password (read from stdin)
  operator unlock EMAIL lift the console's sign-in limits of an operator on every network
  events list           lifecycle events for the partner's app that are pending or failed
  events retry ID|--failed  send events again (an id from the list, or every failed one)
  healthcheck           exit 0 when the server on LISTEN_ADDR answers /healthz (for HEALTHCHECK)
  version               print the build version

Configuration comes from the environment; see README.md.`

// run is the whole program: main only supplies the process's context, arguments, environment
// and streams, so tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			return fmt.Errorf("serve takes no arguments\n%s", usage)
		}
		return serve(ctx, getenv, stderr)
	case "migrate":
		return migrateCmd(ctx, args, getenv, stdout)
	case "rotate-keys":
		return rotateKeys(ctx, getenv, stdout)
	case "rotate-identity-key":
		return rotateIdentityKey(ctx, getenv, stdout)
	case "check-tenant":
		return checkTenant(ctx, args, getenv, stdout, stderr)
	case "activate":
		return activate(ctx, args, getenv, stdin, stdout, stderr)
	case "operator":
		return operatorCmd(ctx, args, getenv, stdin, stdout)
	case "events":
		return eventsCmd(ctx, args, getenv, stdout)
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "version":
		fmt.Fprintln(stdout, version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
}

func loadConfig(getenv func(string) string, required ...string) (*config.Config, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, err
	}
	if err := cfg.Require(required...); err != nil {
		return nil, err
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func serve(ctx context.Context, getenv func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(getenv, config.EnvDatabaseURL, config.EnvWebhookKeys, config.EnvEncryptionKeys)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	log.Info("starting", append([]any{"version", version}, attrsToAny(cfg.Describe())...)...)
	for _, w := range cfg.Warnings() {
		log.Warn("configuration: " + w)
	}

	if err := migrateUp(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, cfg.Keyring, store.Options{MaxConns: cfg.DatabaseMaxConns})
	if err != nil {
		return err
	}
	defer st.Close()

	reg := metrics.NewRegistry()
	platformClients, err := platform.New(platform.Config{
		BaseURL: cfg.UntisAPIURL, Store: st, Logger: log, Metrics: reg,
	})
	if err != nil {
		return err
	}
	signIn, err := sso.New(sso.Config{
		APIURL: cfg.UntisAPIURL, RedirectURL: cfg.RedirectURL(), Store: st, Platform: platformClients,
		Logger: log, Metrics: reg,
	})
	if err != nil {
		return err
	}
	sessions := session.New(session.Config{
		Store: st, Embed: cfg.EmbedMode, IdleTimeout: cfg.SessionIdleTimeout, MaxAge: cfg.SessionMaxAge, Logger: log,
		CacheTTL: cfg.SessionCacheTTL, Metrics: reg,
	})
	// The identity the gateway and forward-auth give the app, with its signed assertion; the
	// signing keys are shared by every replica (in the store) and rotate on their own.
	signer, err := newSigner(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	identities := gateway.NewIdentities(gateway.IdentitiesConfig{Signer: signer, Setup: st, Logger: log})
	var proxy *gateway.ProxyConfig
	if cfg.Gateway() {
		proxy = &gateway.ProxyConfig{
			Upstream: cfg.UpstreamURL, PublicURL: cfg.PublicURL, Public: cfg.PublicPaths, MaxBody: cfg.GatewayMaxBody,
			UpstreamTimeout: cfg.UpstreamTimeout, IdleTimeout: cfg.GatewayIdleTimeout,
		}
		log.Info("gateway mode: every path the server does not reserve goes to the app",
			"upstream", cfg.UpstreamURL.String(), "public_paths", cfg.PublicPaths.Len())
	}
	// Credential changes made by any replica drop this replica's cached tokens and discovery at
	// once. The listener outlives ctx (cancelled at the first signal) so that it keeps working
	// while the server drains; it stops when serve returns. So does the sweeper of expired
	// sign-in flows and sessions.
	background, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	// The school lifecycle events for the partner's app: delivered to EVENTS_URL (when set) by
	// every replica, woken by the same listener; the outbox is swept either way.
	eventWorker, err := events.New(events.Config{
		Store: st, URL: cfg.EventsURL, Secrets: cfg.EventsSecrets, Timeout: cfg.EventsTimeout,
		RetryFor: cfg.EventsRetryFor, Keep: cfg.EventsRetention, Logger: log, Metrics: reg,
		UserAgent: "untis-partner-server/" + version,
	})
	if err != nil {
		stopBackground()
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		platformClients.Listen(background, signIn.ChangeHandler(), sessions.ChangeHandler(), identities.ChangeHandler(), eventWorker.ChangeHandler())
	})
	wg.Go(func() { signer.Run(background) })
	wg.Go(func() { sessions.RunSweeper(background, sweepInterval) })
	wg.Go(func() { signIn.RefreshKeys(background) })
	wg.Go(func() { eventWorker.Run(background) })
	defer func() {
		stopBackground()
		wg.Wait()
	}()

	// The platform's Calendar API: in gateway mode the app is asked for each user's events.
	verifier := webhook.NewVerifier(cfg.WebhookKeys)
	cal, err := calendar.New(calendar.Config{
		Store: st, Verifier: verifier, Upstream: cfg.UpstreamURL, UpstreamPath: cfg.CalendarUpstreamPath,
		Identities: identities, PublicURL: cfg.PublicURL, Timeout: cfg.CalendarTimeout, MaxBytes: cfg.CalendarMaxBytes,
		MaxEvents: cfg.CalendarMaxEvents, MaxDays: cfg.CalendarMaxDays, Logger: log, Metrics: reg,
	})
	if err != nil {
		return err
	}
	srv := httpserver.New(httpserver.Deps{
		Store:           st,
		SSO:             signIn,
		Sessions:        sessions,
		Platform:        platformClients,
		Onboard:         onboard.New(st, platformClients, cfg.SetupFields, log, signIn.Invalidate, sessions.InvalidateTenant),
		Webhooks:        verifier,
		Operators:       operator.New(operator.Config{Store: st, Logger: log}),
		Logger:          log,
		Metrics:         reg,
		TrustedProxies:  cfg.TrustedProxies,
		EmbedMode:       cfg.EmbedMode,
		PlatformOrigins: cfg.PlatformOrigins,
		PublicOrigin:    cfg.PublicURL.Scheme + "://" + cfg.PublicURL.Host,
		HTTPS:           cfg.PublicURL.Scheme == "https",
		Version:         version,
		LaunchLimits:    httpserver.LaunchLimits{PerClient: cfg.LaunchLimitPerClient, PerSchool: cfg.LaunchLimitPerSchool},
		Brand:           httpserver.Branding{Name: cfg.AppName, LogoURL: cfg.AppLogoURL, Accent: cfg.AppAccentColor},
		SchoolZone:      cfg.SchoolTimezone,
		Identities:      identities,
		JWKS:            signer,
		Proxy:           proxy,
		Landing:         cfg.LandingPaths,
		EventsTarget:    eventsTarget(cfg),
		Calendar:        cal,
	})
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (%s): %w", cfg.ListenAddr, config.EnvListenAddr, err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "public_url", cfg.PublicURL.String())
	internal, err := listenInternal(cfg, st, platformClients, reg, log)
	if err != nil {
		ln.Close()
		return err
	}
	err = serveAll(ctx, listener{httpserver.NewHTTPServer(srv.Handler(), log), ln}, internal, httpserver.ShutdownPlan{
		Delay:   cfg.ShutdownDelay,
		Timeout: cfg.ShutdownTimeout,
		Begin: func() {
			log.Info("shutting down: /readyz answers 503; draining after the delay",
				"delay", cfg.ShutdownDelay, "timeout", cfg.ShutdownTimeout)
			srv.BeginShutdown()
		},
	})
	if errors.Is(err, httpserver.ErrDrainTimeout) {
		// The process was asked to stop and it stops: connections still open after the
		// timeout were closed. Say so, but it is not a failure of the program.
		log.Warn("stopped before every request finished", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// eventsTarget is EVENTS_URL as the console shows it: without its query, which may hold a token.
func eventsTarget(cfg *config.Config) string {
	if cfg.EventsURL == nil {
		return ""
	}
	u := *cfg.EventsURL
	u.RawQuery = ""
	return u.String()
}

// sweepInterval is how often expired sign-in flows and sessions are deleted: a flow row lives at
// most its 10 minutes and this much more (the delete is one indexed range scan).
const sweepInterval = 30 * time.Second

func migrateUp(ctx context.Context, databaseURL string) error {
	m, err := store.NewMigrator(ctx, databaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Up()
}

func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := loadConfig(getenv, config.EnvDatabaseURL)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		return errors.New("usage: server migrate up|down N|version|force V")
	}
	m, err := store.NewMigrator(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer m.Close()
	switch {
	case args[0] == "up" && len(args) == 1:
		if err := m.Up(); err != nil {
			return err
		}
	case args[0] == "down" && len(args) == 2:
		n, err := strconv.Atoi(args[1])
		if err != nil || n <= 0 {
			return fmt.Errorf("migrate down: N must be a positive number, got %q", args[1])
		}
		if err := m.Down(n); err != nil {
			return err
		}
	case args[0] == "force" && len(args) == 2:
		v, err := strconv.Atoi(args[1])
		if err != nil || v < 0 {
			return fmt.Errorf("migrate force: V must be a migration number (0 for none), got %q", args[1])
		}
		if err := m.Force(v); err != nil {
			return err
		}
	case args[0] == "version" && len(args) == 1:
	default:
		return errors.New("usage: server migrate up|down N|version|force V")
	}
	v, dirty, ok, err := m.Version()
	if err != nil {
		return err
	}
	switch {
	case !ok:
		fmt.Fprintln(stdout, "schema version: none (empty database)")
	case dirty:
		fmt.Fprintf(stdout, "schema version: %d (dirty: a migration failed half-way; repair the schema, then run `migrate force N` with the last complete version)\n", v)
	default:
		fmt.Fprintf(stdout, "schema version: %d\n", v)
	}
	return nil
}

// openSecretStore is the start of every one-shot command that reads or writes sealed secrets:
// the configuration they need and a small store. The caller closes the store.
func openSecretStore(ctx context.Context, getenv func(string) string) (*config.Config, *store.Store, error) {
	cfg, err := loadConfig(getenv, config.EnvDatabaseURL, config.EnvEncryptionKeys)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, cfg.Keyring, store.Options{MaxConns: 2})
	if err != nil {
		return nil, nil, err
	}
	return cfg, st, nil
}

// openStore is openSecretStore for the one-shot commands that touch no sealed secret (events,
// operator add and unlock): only DATABASE_URL is required. The caller closes the store.
func openStore(ctx context.Context, getenv func(string) string) (*config.Config, *store.Store, error) {
	cfg, err := loadConfig(getenv, config.EnvDatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, nil, store.Options{MaxConns: 2})
	if err != nil {
		return nil, nil, err
	}
	return cfg, st, nil
}

func rotateKeys(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, st, err := openSecretStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Fprintf(stdout, "re-encrypting under key %q (keys known: %v)\n", cfg.Keyring.ActiveID(), cfg.Keyring.IDs())
	report, err := st.RotateKeys(ctx, 500, func(c store.ColumnRotation) {
		fmt.Fprintf(stdout, "  %s: %d scanned, %d rotated so far\n", c.Column, c.Scanned, c.Rotated)
	})
	fmt.Fprint(stdout, report.String())
	if err != nil {
		return fmt.Errorf("rotate-keys stopped (rerun it to resume): %w", err)
	}
	if n := report.Unreadable(); n > 0 {
		return fmt.Errorf("rotate-keys: %d values could not be opened with the configured keys; keep their old key in ENCRYPTION_KEYS and rerun", n)
	}
	fmt.Fprintln(stdout, "done: every stored secret is under the active key; older keys may now be removed from ENCRYPTION_KEYS")
	return nil
}

// newSigner reads (or creates) the identity assertion's signing keys.
func newSigner(ctx context.Context, cfg *config.Config, st *store.Store, log *slog.Logger) (*assertion.Signer, error) {
	return assertion.New(ctx, assertion.Config{
		Store: st, Issuer: cfg.PublicURL.String(), Audience: cfg.IdentityAudience,
		TTL: cfg.IdentityTTL, RotateEvery: cfg.IdentityKeyRotation, Logger: log,
	})
}

// rotateIdentityKey adds a new signing key for X-Untis-Identity at once (after a suspected
// leak, or to try rotation). Running servers publish it at their next refresh and sign with it
// from the time printed; the old key stays published until the assertions it signed expired.
func rotateIdentityKey(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, st, err := openSecretStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	signer, err := newSigner(ctx, cfg, st, nil)
	if err != nil {
		return fmt.Errorf("rotate-identity-key: %w (has the server run its migrations?)", err)
	}
	old := signer.KeyID()
	kid, from, err := signer.Rotate(ctx)
	if err != nil {
		return fmt.Errorf("rotate-identity-key: %w", err)
	}
	fmt.Fprintf(stdout, "new identity key %s: published in the JWKS now, signs from %s (in %s, once every replica has read it)\n",
		kid, from.UTC().Format(time.RFC3339), time.Until(from).Round(time.Second))
	fmt.Fprintf(stdout, "the previous key %s stays published until the assertions it signed have expired\n", old)
	return nil
}

// healthcheck lets a container's HEALTHCHECK probe the server without a shell or curl in the
// image: it asks the local listener for /healthz.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("healthcheck: %s: %w", config.EnvListenAddr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+port+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)
	}
	return nil
}

func attrsToAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}
