package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// HitLimit counts one attempt against the rate limit bucket (scope, key) in fixed windows of the
// given length, and returns the attempts in the current window, this one included. Every replica
// shares the counters. The key (an IP address, a tenant id, an e-mail address) is kept only as a
// SHA-256.
func (s *Store) HitLimit(ctx context.Context, scope, key string, window time.Duration, now time.Time) (int, error) {
	sum := sha256.Sum256([]byte(key))
	bucket := scope + ":" + hex.EncodeToString(sum[:16])
	start := now.Truncate(window)
	var hits int
	// A durable write is not needed: a counter lost in a crash only grants a few more attempts.
	err := s.relaxed.QueryRow(ctx, `
		INSERT INTO attempt_limits (bucket, window_start, hits) VALUES ($1, $2, 1)
		ON CONFLICT (bucket) DO UPDATE SET
			-- Only a later window starts the count again: a replica whose clock is a little
			-- behind counts into the current window instead of resetting it.
			hits = CASE WHEN EXCLUDED.window_start > attempt_limits.window_start THEN 1 ELSE attempt_limits.hits + 1 END,
			window_start = GREATEST(attempt_limits.window_start, EXCLUDED.window_start)
		RETURNING hits`, bucket, start).Scan(&hits)
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", scope, err)
	}
	return hits, nil
}
