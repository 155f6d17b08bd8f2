package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/internalapi"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// listener is one HTTP server on its listener.
type listener struct {
	srv *http.Server
	ln  net.Listener
}

// listenInternal opens the internal API's listener (INTERNAL_LISTEN_ADDR), or returns nil when it
// is off. It is a listener of its own, never the public one: the partner's app reaches it on a
// private address.
func listenInternal(cfg *config.Config, st *store.Store, pc *platform.Clients, reg *metrics.Registry, log *slog.Logger) (*listener, error) {
	if cfg.InternalListenAddr == "" {
		return nil, nil
	}
	api, err := internalapi.New(internalapi.Config{
		Store: st, Platform: pc, APIURL: cfg.UntisAPIURL, Tokens: cfg.InternalAPITokens,
		WritePaths: cfg.InternalWritePaths, MaxBody: cfg.InternalMaxBody, Logger: log, Metrics: reg,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.InternalListenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (%s): %w", cfg.InternalListenAddr, config.EnvInternalListenAddr, err)
	}
	log.Info("internal API listening", "addr", ln.Addr().String(), "write_rules", cfg.InternalWritePaths.Len())
	return &listener{srv: internalapi.NewHTTPServer(api.Handler(), log), ln: ln}, nil
}

// serveAll serves the public listener and, when it is on, the internal one, until ctx ends; then
// both drain with the same plan (the internal API keeps serving through the delay, as the app's
// requests still come). A failure of either stops the other.
func serveAll(ctx context.Context, public listener, internal *listener, plan httpserver.ShutdownPlan) error {
	if internal == nil {
		return httpserver.Serve(ctx, public.srv, public.ln, plan)
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	internalErr := make(chan error, 1)
	go func() {
		err := httpserver.Serve(ctx, internal.srv, internal.ln, httpserver.ShutdownPlan{Delay: plan.Delay, Timeout: plan.Timeout})
		if err != nil && !errors.Is(err, httpserver.ErrDrainTimeout) {
			err = fmt.Errorf("internal API: %w", err)
			stop()
		}
		internalErr <- err
	}()
	err := httpserver.Serve(ctx, public.srv, public.ln, plan)
	stop()
	ierr := <-internalErr
	switch {
	case err != nil && !errors.Is(err, httpserver.ErrDrainTimeout):
		return err
	case ierr != nil && !errors.Is(ierr, httpserver.ErrDrainTimeout):
		return ierr
	case err != nil:
		return err
	}
	return ierr
}
