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
	"sync/atomic"
	"time"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// Deps are what the HTTP layer needs from the rest of the server.
type Deps struct {
	Store          *store.Store
	Logger         *slog.Logger
	Metrics        *metrics.Registry
	TrustedProxies []netip.Prefix
	EmbedMode      bool
	Version        string
}

// Server holds the handlers' dependencies and the readiness state.
type Server struct {
	store     *store.Store
	log       *slog.Logger
	metrics   *metrics.Registry
	trusted   []netip.Prefix
	embedMode bool
	version   string
	pages     *template.Template
	httpm     httpMetrics

	draining atomic.Bool // set once shutdown has begun: /readyz answers 503
}

// New builds a Server. It panics only on programming errors (templates that do not parse).
func New(d Deps) *Server {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.NewRegistry()
	}
	s := &Server{
		store:     d.Store,
		log:       d.Logger,
		metrics:   d.Metrics,
		trusted:   d.TrustedProxies,
		embedMode: d.EmbedMode,
		version:   d.Version,
		pages:     web.Templates(),
	}
	s.httpm = newHTTPMetrics(d.Metrics)
	if d.Store != nil {
		registerPoolMetrics(d.Metrics, d.Store)
	}
	return s
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

// Serve serves on ln until ctx is cancelled, then stops taking new requests and drains the ones
// in flight for up to drainTimeout. beforeDrain runs first (it flips readiness).
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drainTimeout time.Duration, beforeDrain func()) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	if beforeDrain != nil {
		beforeDrain()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("http server: drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	return nil
}
