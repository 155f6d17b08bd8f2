// Command exampleapp serves the partner's app of the demo (internal/exampleapp): a small web app
// that runs behind the server's gateway (UPSTREAM_URL), shows who is signed in from the
// X-Untis-* headers, verifies the X-Untis-Identity JWT against the gateway's JWKS, lists the
// teachers of the user's school through the server's platform API, receives the school
// lifecycle events, and has a WebSocket echo.
//
//	INTERNAL_API_TOKEN=... EVENTS_SECRET=whsec_... exampleapp -addr 127.0.0.1:8082 \
//	    -issuer http://localhost:8080 -api-url http://127.0.0.1:8083
//
// -issuer is the gateway's PUBLIC_URL; -audience defaults to it (as the gateway's
// IDENTITY_JWT_AUDIENCE does) and -jwks-url to its /.well-known/jwks.json. The secrets come from
// the environment (INTERNAL_API_TOKEN, EVENTS_SECRET) or from files (-api-token-file,
// -events-secret-file), never from a flag's value, which any user of the machine sees in ps.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/untis-partner/server/internal/exampleapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// options is the command line.
type options struct {
	addr                        string
	app                         exampleapp.Config
	apiTokenFile, eventsSecretF string
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("exampleapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8082", "the address to listen on (the gateway's UPSTREAM_URL points here)")
	fs.StringVar(&o.app.Issuer, "issuer", "http://localhost:8080", "the iss the identity token must have: the gateway's PUBLIC_URL")
	fs.StringVar(&o.app.Audience, "audience", "", "the aud the identity token must have: the gateway's IDENTITY_JWT_AUDIENCE (default: -issuer, the gateway's default)")
	fs.StringVar(&o.app.JWKSURL, "jwks-url", "", "the gateway's JWKS (default: -issuer + /.well-known/jwks.json)")
	fs.StringVar(&o.app.APIURL, "api-url", "", "the server's platform API (its INTERNAL_LISTEN_ADDR, e.g. http://127.0.0.1:8083); the token comes from INTERNAL_API_TOKEN or -api-token-file. Empty: no teachers page")
	fs.StringVar(&o.apiTokenFile, "api-token-file", "", "a file holding the platform API's token (instead of INTERNAL_API_TOKEN)")
	fs.DurationVar(&o.app.APITimeout, "api-timeout", 10*time.Second, "how long one call to the platform API may take")
	fs.StringVar(&o.eventsSecretF, "events-secret-file", "", "a file holding the events' Standard Webhooks secret (instead of EVENTS_SECRET)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var err error
	if o.app.APIToken, err = secretFrom(getenv, "INTERNAL_API_TOKEN", "-api-token-file", o.apiTokenFile); err != nil {
		return o, err
	}
	if o.app.EventsSecret, err = secretFrom(getenv, "EVENTS_SECRET", "-events-secret-file", o.eventsSecretF); err != nil {
		return o, err
	}
	return o, nil
}

// secretFrom reads a secret from the environment variable env or from file (one of them).
func secretFrom(getenv func(string) string, env, flagName, file string) (string, error) {
	v := strings.TrimSpace(getenv(env))
	if file == "" {
		return v, nil
	}
	if v != "" {
		return "", fmt.Errorf("both %s and %s are set; set only one", env, flagName)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "exampleapp:", err)
		return 2
	}
	o.app.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	h, err := exampleapp.New(o.app)
	if err != nil {
		fmt.Fprintln(stderr, "exampleapp:", err)
		return 2
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		fmt.Fprintln(stderr, "exampleapp:", err)
		return 1
	}
	fmt.Fprintf(stdout, "exampleapp: listening on http://%s (%s)\n", ln.Addr(), o.app.Settings())
	if err := serve(ctx, ln, h); err != nil {
		fmt.Fprintln(stderr, "exampleapp:", err)
		return 1
	}
	return 0
}

// serve serves h on ln until ctx ends, then drains for up to 5 s. WebSockets are hijacked
// connections, which Shutdown does not wait for; their request contexts end with the server's
// base context.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	base, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	srv := &http.Server{
		Handler: h,
		// No ReadTimeout: its deadline would stay on a hijacked WebSocket connection.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	cancel() // ends the sockets
	shut, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Shutdown(shut); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
