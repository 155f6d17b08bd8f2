package store

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// tenantChannel is the PostgreSQL notification channel on which every replica hears that a
// tenant's credentials or state changed, so that it drops what it caches for that tenant (tokens,
// verifiers) at once instead of when the cache entry expires.
const tenantChannel = "tenant_changed"

// sessionChannel carries the sessions whose cached copies are no longer right: a session that
// ended (sign-out, replaced by a new sign-in, swept) or whose user's profile changed, as the hex
// of its id hash; or "tenant:" and a tenant id for every session of that school (its name
// changed). The school's state and credentials travel on tenantChannel.
const sessionChannel = "session_changed"

// tenantSessionsPrefix starts a sessionChannel payload that names a tenant, not one session.
const tenantSessionsPrefix = "tenant:"

// listenerApplicationName names the listener's connection in pg_stat_activity.
const listenerApplicationName = "untis-partner-server tenant listener"

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
	// SessionChanged, if set, is called with the id hash of a session that ended or whose
	// user's profile changed: a cached copy of it must go. Only when it or TenantSessionsChanged
	// is set does the listener hear sessionChannel.
	SessionChanged func(idHash []byte)
	// TenantSessionsChanged, if set, is called with a tenant whose sessions all changed (not its
	// state or credentials: those call Changed).
	TenantSessionsChanged func(tenantID string)
	// PingEvery is how long a quiet connection waits before it is pinged; default 30 s.
	PingEvery time.Duration
	// EventsQueued, if set, is called when an operator queued lifecycle events again (a retry),
	// so the event workers look at once. New events come with a Changed of their school.
	EventsQueued func()
}

// Also returns a handler that calls h and then each of others (their PingEvery is ignored), so
// one listener connection serves every cache of a replica.
func (h TenantChangeHandler) Also(others ...TenantChangeHandler) TenantChangeHandler {
	all := append([]TenantChangeHandler{h}, others...)
	combined := TenantChangeHandler{
		Changed: func(id string) {
			for _, x := range all {
				if x.Changed != nil {
					x.Changed(id)
				}
			}
		},
		Resync: func() {
			for _, x := range all {
				if x.Resync != nil {
					x.Resync()
				}
			}
		},
		Disconnected: func() {
			for _, x := range all {
				if x.Disconnected != nil {
					x.Disconnected()
				}
			}
		},
		EventsQueued: func() {
			for _, x := range all {
				if x.EventsQueued != nil {
					x.EventsQueued()
				}
			}
		},
		PingEvery: h.PingEvery,
	}
	// The session callbacks stay nil when no handler has one, so that a listener without a
	// session cache does not wake up for every sign-out.
	for _, x := range all {
		if x.SessionChanged != nil || x.TenantSessionsChanged != nil {
			combined.SessionChanged = func(idHash []byte) {
				for _, x := range all {
					if x.SessionChanged != nil {
						x.SessionChanged(idHash)
					}
				}
			}
			combined.TenantSessionsChanged = func(id string) {
				for _, x := range all {
					if x.TenantSessionsChanged != nil {
						x.TenantSessionsChanged(id)
					}
				}
			}
			break
		}
	}
	return combined
}

func (h TenantChangeHandler) hearsSessions() bool {
	return h.SessionChanged != nil || h.TenantSessionsChanged != nil
}

// sessionChanged dispatches a sessionChannel payload. A payload that is neither form (none of
// ours) is ignored.
func (h TenantChangeHandler) sessionChanged(payload string) {
	if id, ok := strings.CutPrefix(payload, tenantSessionsPrefix); ok {
		if h.TenantSessionsChanged != nil {
			h.TenantSessionsChanged(id)
		}
		return
	}
	idHash, err := hex.DecodeString(payload)
	if err != nil || len(idHash) != 32 || h.SessionChanged == nil {
		return
	}
	h.SessionChanged(idHash)
}

func (h TenantChangeHandler) pingEvery() time.Duration {
	if h.PingEvery > 0 {
		return h.PingEvery
	}
	return 30 * time.Second
}

// ListenTenantChanges listens for tenant changes on a connection of its own (not one of the
// pool's) until ctx ends. A lost connection is re-established with a capped backoff, and Resync
// is called after each connect because notifications sent while disconnected are gone.
func (s *Store) ListenTenantChanges(ctx context.Context, log *slog.Logger, h TenantChangeHandler) {
	const minWait, maxWait = 250 * time.Millisecond, 30 * time.Second
	wait := minWait
	for ctx.Err() == nil {
		start := time.Now()
		connected, err := s.listenOnce(ctx, h)
		if connected && h.Disconnected != nil {
			h.Disconnected()
		}
		if ctx.Err() != nil {
			return
		}
		// Only a connection that lasted starts the backoff anew: one that drops at once would
		// otherwise flush every cache (Resync) four times a second.
		if connected && time.Since(start) >= h.pingEvery() {
			wait = minWait
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
	// Named apart from the pool's connections, so an operator can tell it in pg_stat_activity.
	cfg.RuntimeParams["application_name"] = listenerApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+tenantChannel+"; LISTEN "+eventsChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	if h.hearsSessions() {
		if _, err := conn.Exec(ctx, "LISTEN "+sessionChannel); err != nil {
			return false, fmt.Errorf("listen: %w", err)
		}
	}
	h.Resync()
	for {
		// Wake up now and then to ping: a half-open TCP connection would otherwise look like a
		// quiet one while every notification is lost.
		waitCtx, cancel := context.WithTimeout(ctx, h.pingEvery())
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			switch n.Channel {
			case tenantChannel:
				h.Changed(n.Payload)
			case sessionChannel:
				h.sessionChanged(n.Payload)
			case eventsChannel:
				if h.EventsQueued != nil {
					h.EventsQueued()
				}
			}
		case ctx.Err() != nil:
			return true, nil
		case waitCtx.Err() != nil:
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for notification: %w", err)
		}
	}
}
