package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runUpstream is "loadgen upstream": a trivial upstream that answers every request with 200
// "ok", so that a benchmark of the gateway needs no other program. It serves until ctx ends.
func runUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:3001", "the address to listen on")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen upstream: unexpected arguments: %v\n", fs.Args())
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen upstream:", err)
		return 1
	}
	fmt.Fprintf(stdout, "loadgen upstream: listening on http://%s (200 \"ok\" for every request)\n", ln.Addr())
	if err := serveUpstream(ctx, ln); err != nil {
		fmt.Fprintln(stderr, "loadgen upstream:", err)
		return 1
	}
	return 0
}

// upstreamHandler answers 200 "ok" after reading (and dropping) the request body, so that a
// proxied upload is measured too.
func upstreamHandler(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["Content-Length"] = []string{"3"}
	_, _ = io.WriteString(w, "ok\n")
}

// serveUpstream serves upstreamHandler on ln until ctx ends, then shuts down gracefully.
func serveUpstream(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           http.HandlerFunc(upstreamHandler),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
