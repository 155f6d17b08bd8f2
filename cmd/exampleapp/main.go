// Command exampleapp serves the partner's app of the demo (internal/exampleapp): a small web app
// that runs behind the server's gateway (UPSTREAM_URL), shows who is signed in from the
// X-Untis-* headers, verifies the X-Untis-Identity JWT against the gateway's JWKS and has a
// WebSocket echo.
//
//	exampleapp -addr 127.0.0.1:8082 -issuer http://localhost:8080
//
// -issuer is the gateway's PUBLIC_URL; -audience defaults to it (as the gateway's
// IDENTITY_JWT_AUDIENCE does) and -jwks-url to its /.well-known/jwks.json.
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
	"syscall"
	"time"

	"github.com/untis-partner/server/internal/exampleapp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options is the command line.
type options struct {
	addr string
	app  exampleapp.Config
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("exampleapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8082", "the address to listen on (the gateway's UPSTREAM_URL points here)")
	fs.StringVar(&o.app.Issuer, "issuer", "http://localhost:8080", "the iss the identity token must have: the gateway's PUBLIC_URL")
	fs.StringVar(&o.app.Audience, "audience", "", "the aud the identity token must have: the gateway's IDENTITY_JWT_AUDIENCE (default: -issuer, the gateway's default)")
	fs.StringVar(&o.app.JWKSURL, "jwks-url", "", "the gateway's JWKS (default: -issuer + /.well-known/jwks.json)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
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
