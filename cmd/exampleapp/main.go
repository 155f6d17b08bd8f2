// Command exampleapp is the partner's app of the demo: a small web app that runs behind the
// server's gateway (UPSTREAM_URL) and knows nothing of Untis, OpenID Connect or sessions. It
// shows who is signed in from the gateway's X-Untis-* headers, verifies the X-Untis-Identity
// JWT against the gateway's JWKS with go-jose, and has a WebSocket echo.
//
//	exampleapp -addr 127.0.0.1:3000 -jwks-url http://localhost:8080/.well-known/jwks.json \
//	    -issuer http://localhost:8080 -audience untis-partner-app
//
// Pages: / (and any other path) who is signed in; /public/ a page for GATEWAY_PUBLIC_PATHS;
// /healthz; /ws the echo.
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
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options is the command line.
type options struct {
	addr, jwksURL, issuer, audience string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("exampleapp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:3000", "the address to listen on (the gateway's UPSTREAM_URL points here)")
	fs.StringVar(&o.jwksURL, "jwks-url", "http://localhost:8080/.well-known/jwks.json", "the gateway's JWKS")
	fs.StringVar(&o.issuer, "issuer", "http://localhost:8080", "the iss the identity token must have (the gateway's PUBLIC_URL)")
	fs.StringVar(&o.audience, "audience", "untis-partner-app", "the aud the identity token must have (the gateway's audience setting)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if u, err := url.Parse(o.jwksURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return o, fmt.Errorf("-jwks-url %q is not an http(s) URL", o.jwksURL)
	}
	if o.issuer == "" || o.audience == "" {
		return o, errors.New("-issuer and -audience must not be empty")
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
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		fmt.Fprintln(stderr, "exampleapp:", err)
		return 1
	}
	a := &app{verifier: newVerifier(o.jwksURL, o.issuer, o.audience), log: log}
	fmt.Fprintf(stdout, "exampleapp: listening on http://%s (identity tokens from %s, iss %s, aud %s)\n",
		ln.Addr(), o.jwksURL, o.issuer, o.audience)
	if err := serve(ctx, ln, a.routes()); err != nil {
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
