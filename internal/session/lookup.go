package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

// lookup returns the live session whose cookie holds id. A cached copy answers when the cache
// may be trusted, is fresh, and the copy is neither past its absolute expiry (then the session
// is over) nor idle by its own account (then the store decides: another replica may have seen
// activity the copy does not know of). Everything else reads the store.
func (m *Manager) lookup(ctx context.Context, id string) (*store.Session, error) {
	key := hashKey(id)
	now := m.now()
	c := m.cache
	if c == nil || !c.trusted.Load() {
		m.lookups.bypass.Inc()
		return m.load(ctx, &key, now, nil, cacheMark{})
	}
	if e := c.get(&key); e != nil && c.fresh(e, now) {
		s := e.s
		if !now.Before(s.ExpiresAt) {
			c.remove(&key, e)
			m.lookups.hit.Inc()
			return nil, ErrNoSession
		}
		if now.Before(s.IdleExpiresAt) {
			m.lookups.hit.Inc()
			if now.Sub(s.LastSeenAt) >= m.touchAfter && e.touching.CompareAndSwap(false, true) {
				return m.touchCached(ctx, &key, e, now), nil
			}
			return s, nil
		}
	}
	m.lookups.miss.Inc()
	return m.load(ctx, &key, now, c, c.mark(&key))
}

// hashKey is store.HashID as an array, which a map can key on without allocating.
func hashKey(id string) [32]byte {
	// Hashing from a stack buffer keeps the conversion of id from allocating; CookieID never
	// returns more than 128 bytes.
	var buf [128]byte
	if len(id) > len(buf) {
		return sha256.Sum256([]byte(id))
	}
	n := copy(buf[:], id)
	return sha256.Sum256(buf[:n])
}

// load reads the session from the store, records activity when it is due, and caches the
// session when c is set and nothing changed it since mk was taken.
func (m *Manager) load(ctx context.Context, key *[32]byte, now time.Time, c *cache, mk cacheMark) (*store.Session, error) {
	s, err := m.store.SessionByID(ctx, append([]byte(nil), key[:]...), now)
	if errors.Is(err, store.ErrNotFound) {
		if c != nil {
			c.forget(key) // a copy that outlived the session (idle, or deleted unnoticed)
		}
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	if now.Sub(s.LastSeenAt) >= m.touchAfter {
		m.touch(ctx, &s, now)
	}
	if c != nil {
		c.put(key, &s, now, mk)
	}
	return &s, nil
}

// touchCached records activity of a cached session (its caller alone, by e.touching) and
// replaces the cached copy with one that knows of it.
func (m *Manager) touchCached(ctx context.Context, key *[32]byte, e *cacheEntry, now time.Time) *store.Session {
	s := *e.s
	m.touch(ctx, &s, now)
	m.cache.replace(key, e, &s)
	return &s
}

// touch writes the session's activity back and moves s's idle expiry as the store did. When
// the write fails, the session is still valid and s's idle expiry stays (a cached copy must
// never believe in more time than the store gives); LastSeenAt moves anyway, so the next
// attempt waits touchAfter instead of every request of a failing database writing again.
func (m *Manager) touch(ctx context.Context, s *store.Session, now time.Time) {
	s.LastSeenAt = now
	idle := now.Add(m.idle)
	if err := m.store.TouchSession(ctx, s.IDHash, now, idle); err != nil {
		m.log.WarnContext(ctx, "session activity not recorded", "tenant_id", s.TenantID, "err", err)
		return
	}
	if idle.After(s.ExpiresAt) {
		idle = s.ExpiresAt // as the store's LEAST(idle, expires_at)
	}
	s.IdleExpiresAt = idle
}

// ChangeHandler keeps the session cache in step with every replica's changes; give it to the
// replica's listener (store.ListenTenantChanges, through platform.Clients.Listen). Until that
// listener has connected, and whenever it is disconnected, the cache is not used. Without a
// cache it is a handler that does nothing.
func (m *Manager) ChangeHandler() store.TenantChangeHandler {
	c := m.cache
	if c == nil {
		return store.TenantChangeHandler{Changed: func(string) {}, Resync: func() {}}
	}
	return store.TenantChangeHandler{
		Changed:               c.dropTenant,
		Resync:                func() { c.flush(true) },
		Disconnected:          func() { c.flush(false) },
		SessionChanged:        c.drop,
		TenantSessionsChanged: c.dropTenant,
	}
}

// InvalidateTenant forgets this replica's cached sessions of a school at once, after a change
// this replica made (the listener tells the other replicas, and this one, a moment later).
func (m *Manager) InvalidateTenant(tenantID string) {
	if m.cache != nil {
		m.cache.dropTenant(tenantID)
	}
}

func (m *Manager) registerMetrics(r *metrics.Registry) {
	if r == nil {
		// Counters nobody scrapes, so the lookup needs no nil checks.
		m.lookups.hit, m.lookups.miss, m.lookups.bypass = &metrics.Counter{}, &metrics.Counter{}, &metrics.Counter{}
		return
	}
	v := r.NewCounterVec("session_cache_lookups_total",
		"Session checks by result: hit (answered from memory), miss (read the store, then cached), bypass (read the store: the cache is off or its listener is not connected).", "result")
	m.lookups.hit, m.lookups.miss, m.lookups.bypass = v.With("hit"), v.With("miss"), v.With("bypass")
	r.NewGaugeFunc("session_cache_entries", "Sessions held in memory by this replica.", func() float64 {
		if m.cache == nil {
			return 0
		}
		return float64(m.cache.len())
	})
	r.NewGaugeFunc("session_cache_trusted",
		"1 while this replica answers session checks from memory (cache on, listener connected), else 0.", func() float64 {
			if m.cache != nil && m.cache.trusted.Load() {
				return 1
			}
			return 0
		})
}
