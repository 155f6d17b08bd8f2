// Command platformsim runs the Untis Platform simulator: per-tenant SSO v3
// (discovery, JWKS, authorize, token), OneRoster 1.1, signed webhooks, a
// page with launch buttons and a JSON control API under /sim/api.
//
// Usage:
//
//	platformsim [flags]
//	platformsim webhook-public-key -webhook-key-file FILE
//
// Every flag falls back to an environment variable (SIM_ADDR, SIM_BASE_URL,
// SIM_PARTNER_URL, SIM_WEBHOOK_KEY_FILE, SIM_SIGNING_KEY_FILE,
// SIM_STATE_FILE, SIM_SIGNING_ALG, SIM_DEMO, SIM_LOG_LEVEL, SIM_CALENDAR_PATH).
package main

import (
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "platformsim:", err)
		os.Exit(1)
	}
}

// options are the simulator's settings after flags and environment.
type options struct {
	addr, baseURL, partnerURL      string
	webhookKeyFile, signingKeyFile string
	stateFile                      string
	calendarPath                   string
	signingAlg, logLevel           string
	demo                           bool
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := "platformsim"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	if len(args) > 0 && args[0] == "webhook-public-key" {
		return runWebhookPublicKey(args[1:], getenv, stdout, stderr)
	}

	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: platformsim [flags]           serve the simulator")
		fmt.Fprintln(stderr, "       platformsim webhook-public-key [-webhook-key-file F]")
		fmt.Fprintln(stderr, "                                   print the webhook key in UNTIS_WEBHOOK_KEYS form")
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	var o options
	fs.StringVar(&o.addr, "addr", envOr(getenv, "SIM_ADDR", "127.0.0.1:8081"), "listen address (SIM_ADDR)")
	fs.StringVar(&o.baseURL, "base-url", getenv("SIM_BASE_URL"), "public base URL, the server's UNTIS_API_URL (SIM_BASE_URL; default http://<addr>)")
	fs.StringVar(&o.partnerURL, "partner-url", envOr(getenv, "SIM_PARTNER_URL", "http://localhost:8080"), "the partner server's base URL (SIM_PARTNER_URL)")
	fs.StringVar(&o.webhookKeyFile, "webhook-key-file", getenv("SIM_WEBHOOK_KEY_FILE"), "PKCS#8 PEM RSA key that signs webhooks, created if missing; the demo schools' first credentials are derived from it (SIM_WEBHOOK_KEY_FILE; default: a new key and new credentials each start)")
	fs.StringVar(&o.signingKeyFile, "signing-key-file", getenv("SIM_SIGNING_KEY_FILE"), "PKCS#8 PEM key that signs id_tokens, created if missing (SIM_SIGNING_KEY_FILE; default: a new key each start)")
	fs.StringVar(&o.stateFile, "state-file", getenv("SIM_STATE_FILE"), "JSON file where each school's app status and current credentials survive restarts, as on the real platform (SIM_STATE_FILE; default: a restart forgets resets, reactivations and deactivations)")
	fs.StringVar(&o.calendarPath, "calendar-path", envOr(getenv, "SIM_CALENDAR_PATH", platformsim.DefaultCalendarPath), "the partner's Calendar-Path, which the timetable view asks (SIM_CALENDAR_PATH)")
	fs.StringVar(&o.signingAlg, "signing-alg", envOr(getenv, "SIM_SIGNING_ALG", platformsim.RS256), "id_token algorithm: RS256 or ES256 (SIM_SIGNING_ALG)")
	fs.StringVar(&o.logLevel, "log-level", envOr(getenv, "SIM_LOG_LEVEL", "info"), "debug, info, warn or error (SIM_LOG_LEVEL)")
	demoDefault, err := envBool(getenv, "SIM_DEMO", true)
	if err != nil {
		return err
	}
	fs.BoolVar(&o.demo, "demo", demoDefault, "seed the two demo schools 1001 and 1002 (SIM_DEMO)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return serve(ctx, o, stdout, stderr)
}

func serve(ctx context.Context, o options, stdout, stderr io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logHandler := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	logger := slog.New(logHandler)

	if !strings.HasPrefix(o.calendarPath, "/") {
		return fmt.Errorf("-calendar-path %q must start with /", o.calendarPath)
	}
	cfg := platformsim.Config{PartnerURL: o.partnerURL, Logger: logger, StateFile: o.stateFile, CalendarPath: o.calendarPath}
	if o.webhookKeyFile != "" {
		key, err := loadOrCreateKey(o.webhookKeyFile, platformsim.RS256)
		if err != nil {
			return fmt.Errorf("-webhook-key-file: %w", err)
		}
		cfg.WebhookKey = key.(*rsa.PrivateKey)
		// Derive the demo schools' first credentials from the key file, so that a restart
		// without a state file (-state-file) offers the credentials of the first activation.
		der, err := x509.MarshalPKCS8PrivateKey(cfg.WebhookKey)
		if err != nil {
			return fmt.Errorf("-webhook-key-file: %w", err)
		}
		seed := sha256.Sum256(der)
		cfg.DemoSeed = seed[:]
	}
	var err error
	switch {
	case o.signingKeyFile != "":
		if cfg.SigningKey, err = loadOrCreateKey(o.signingKeyFile, o.signingAlg); err != nil {
			return fmt.Errorf("-signing-key-file: %w", err)
		}
	case o.signingAlg != platformsim.RS256:
		// RS256 without a file uses the library's default key.
		if cfg.SigningKey, err = platformsim.GenerateSigningKey(o.signingAlg); err != nil {
			return fmt.Errorf("-signing-alg: %w", err)
		}
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	cfg.BaseURL = o.baseURL
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + reachableAddr(ln.Addr())
	}
	sim, err := platformsim.New(cfg)
	if err != nil {
		return err
	}
	if o.demo {
		sim.SeedDemo()
	}

	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		// Long enough for an injected token delay and a webhook to a slow
		// partner, short enough not to pin connections forever.
		WriteTimeout: 60 * time.Second,
		IdleTimeout:  120 * time.Second,
		ErrorLog:     slog.NewLogLogger(logHandler, slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	logger.Info("platformsim: serving", "url", cfg.BaseURL+"/", "partner_url", o.partnerURL,
		"signing_alg", sim.SigningAlgorithm(), "demo", o.demo)
	fmt.Fprintf(stdout, "Untis Platform simulator: open %s/ (UNTIS_API_URL=%s)\n", cfg.BaseURL, cfg.BaseURL)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("platformsim: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// runWebhookPublicKey prints the webhook key's public half in the form of
// the server's UNTIS_WEBHOOK_KEYS, creating the key file if needed, so a
// script can configure the server before the simulator runs.
func runWebhookPublicKey(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("platformsim webhook-public-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("webhook-key-file", getenv("SIM_WEBHOOK_KEY_FILE"), "PKCS#8 PEM RSA key file, created if missing (SIM_WEBHOOK_KEY_FILE)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if *file == "" {
		return errors.New("webhook-public-key: -webhook-key-file is required (a key without a file would change on every start)")
	}
	key, err := loadOrCreateKey(*file, platformsim.RS256)
	if err != nil {
		return fmt.Errorf("webhook-public-key: %w", err)
	}
	pub, err := platformsim.PublicKeyBase64(key.Public())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, pub)
	return err
}

// reachableAddr turns a listener address into one a browser can open:
// an unspecified host (":8081", "[::]:8081") becomes 127.0.0.1.
func reachableAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func envBool(getenv func(string) string, name string, def bool) (bool, error) {
	v := strings.TrimSpace(getenv(name))
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean", name, v)
	}
	return b, nil
}
