// Package ratelimit is an in-memory token bucket per key, for limits on a hot path that must not
// cost a database write: the sign-ins /launch starts, per client network and per school. Each
// replica keeps its own buckets, so N replicas admit up to N times a limit; that still bounds
// what a client can make the server store, which is what these limits are for. Limits that stop
// guessing across replicas are kept in PostgreSQL instead (store.Attempt).
package ratelimit

import (
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the buckets a Limiter keeps. A client can make up keys (every IPv6 /64 is
// one), so the table must not grow without end; at about 150 bytes a bucket this is ~10 MB.
const DefaultMaxKeys = 65536

// Limiter admits at most a burst of PerMinute requests per key, refilled evenly over a minute. A
// nil *Limiter admits everything (a limit of 0 is off). It is safe for concurrent use.
type Limiter struct {
	capacity float64 // tokens: the burst
	rate     float64 // tokens per second
	now      func() time.Time
	maxKeys  int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens  float64
	at      time.Time // when tokens was last brought up to date
	refused bool      // the last request was refused
}

// New returns a Limiter of perMinute requests per key and minute, or nil when perMinute <= 0.
// now is its clock (time.Now when nil).
func New(perMinute int, now func() time.Time) *Limiter {
	if perMinute <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{
		capacity: float64(perMinute), rate: float64(perMinute) / 60, now: now,
		maxKeys: DefaultMaxKeys, buckets: map[string]*bucket{},
	}
}

// Decision is the answer to one request.
type Decision struct {
	Allowed bool
	// RetryAfter is how long a refused client should wait for the next token (whole seconds,
	// at least one).
	RetryAfter time.Duration
	// FirstRefusal is true for the first refusal after an admitted request: the one worth a log
	// line (a flood would otherwise write one per request).
	FirstRefusal bool
}

// Allow takes a token from key's bucket if it has one.
func (l *Limiter) Allow(key string) Decision {
	if l == nil {
		return Decision{Allowed: true}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.maxKeys {
			l.prune(now)
		}
		b = &bucket{tokens: l.capacity, at: now}
		l.buckets[key] = b
	}
	l.refill(b, now)
	if b.tokens >= 1 {
		b.tokens--
		b.refused = false
		return Decision{Allowed: true}
	}
	d := Decision{FirstRefusal: !b.refused}
	b.refused = true
	// (Less a hair, so that floating point does not turn an exact 3 s into 4.)
	d.RetryAfter = time.Duration(max(1, math.Ceil((1-b.tokens)/l.rate-1e-9))) * time.Second
	return d
}

func (l *Limiter) refill(b *bucket, now time.Time) {
	// A clock that went back refills nothing (and does not move the bucket's time back).
	if elapsed := now.Sub(b.at).Seconds(); elapsed > 0 {
		b.tokens = min(l.capacity, b.tokens+elapsed*l.rate)
		b.at = now
	}
}

// prune makes room: buckets that have refilled are the same as none and go first; if the table is
// still full (many clients are being held back at once), arbitrary buckets go until a tenth is
// free. Forgetting a bucket only ever lets its client in sooner, never locks anyone out.
func (l *Limiter) prune(now time.Time) {
	for k, b := range l.buckets {
		if l.refill(b, now); b.tokens >= l.capacity {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets { // map order is random
		if len(l.buckets) < l.maxKeys-l.maxKeys/10 {
			break
		}
		delete(l.buckets, k)
	}
}

// Len is the number of buckets kept (for tests and metrics).
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
