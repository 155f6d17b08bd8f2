package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// tenantChannel is the PostgreSQL notification channel on which every replica hears that a
// tenant's credentials or state changed, so that it drops what it caches for that tenant (tokens,
// verifiers) at once instead of when the cache entry expires.
const tenantChannel = "tenant_changed"

// notifyTenantChanged queues a notification that is delivered when tx commits, and only then:
// a rolled-back change tells nobody.
func notifyTenantChanged(ctx context.Context, tx pgx.Tx, tenantID string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, tenantChannel, tenantID); err != nil {
		return fmt.Errorf("notify change of tenant %s: %w", tenantID, err)
	}
	return nil
}

// TenantChangeHandler receives the changes ListenTenantChanges hears.
type TenantChangeHandler struct {
	// Changed is called with the id of a tenant whose credentials or state changed.
	Changed func(tenantID string)
	// Resync is called whenever notifications may have been missed (on every connect, the
	// first one included): the handler must then forget everything it caches.
	Resync func()
	// Disconnected, if set, is called when the connection is lost or the listener stops.
	Disconnected func()
}

// ListenTenantChanges listens for tenant changes on a connection of its own (not one of the
// pool's) until ctx ends. A lost connection is re-established with a capped backoff, and Resync
// is called after each connect because notifications sent while disconnected are gone.
func (s *Store) ListenTenantChanges(ctx context.Context, log *slog.Logger, h TenantChangeHandler) {
	const minWait, maxWait = 250 * time.Millisecond, 30 * time.Second
	wait := minWait
	for ctx.Err() == nil {
		connected, err := s.listenOnce(ctx, h)
		if connected && h.Disconnected != nil {
			h.Disconnected()
		}
		if ctx.Err() != nil {
			return
		}
		if connected {
			wait = minWait // a connection that worked starts the backoff anew
		}
		log.Warn("tenant change listener lost its connection; caches are flushed on reconnect",
			"err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// listenOnce runs one connection's life; connected reports whether LISTEN took effect.
func (s *Store) listenOnce(ctx context.Context, h TenantChangeHandler) (connected bool, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+tenantChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	h.Resync()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return true, nil
			}
			return true, fmt.Errorf("wait for notification: %w", err)
		}
		if n.Channel == tenantChannel {
			h.Changed(n.Payload)
		}
	}
}
