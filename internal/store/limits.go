package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Limit is a leaky bucket of attempts: Burst attempts may come at once, and after that one more
// every Every (the bucket leaks one attempt per Every). Counters decay instead of starting over
// at a window's edge, so there is no moment at which a full burst is granted twice in a row.
type Limit struct {
	Scope string
	Burst int
	Every time.Duration
}

// Attempt counts one attempt of the client network against l's bucket of subject (an account's
// e-mail address, a school's tenant id; "" when the limit is per network alone) and returns 0
// when the attempt may go ahead, or how long the client must wait. Every replica shares the
// buckets. The subject and the network are kept only as SHA-256 prefixes. A refused attempt
// does not count: retrying instead of waiting gains nothing and costs nothing.
func (s *Store) Attempt(ctx context.Context, l Limit, subject, network string, now time.Time) (time.Duration, error) {
	if l.Burst <= 0 || l.Every <= 0 {
		return 0, nil
	}
	every := l.Every.Seconds()
	var (
		level   float64
		refused bool
	)
	// A durable write is not needed: a counter lost in a crash only grants a few more attempts.
	// The statement reads the old level and writes the new one under the row's lock, so
	// concurrent attempts each see the ones before them. (The SET expressions all read the old
	// row: decayed is its level after leaking until now.)
	const decayed = `GREATEST(0, b.level - GREATEST(0, extract(epoch FROM ($4::timestamptz - b.updated_at))::float8) / $5::float8)`
	err := s.relaxed.QueryRow(ctx, `
		INSERT INTO attempt_buckets AS b (scope, subject, network, level, updated_at)
		VALUES ($1, $2, $3, 1, $4)
		ON CONFLICT (scope, subject, network) DO UPDATE SET
			level = CASE WHEN `+decayed+` + 1 <= $6::float8 + 1e-9 THEN `+decayed+` + 1 ELSE `+decayed+` END,
			refused = `+decayed+` + 1 > $6::float8 + 1e-9,
			-- A replica whose clock is a little behind leaks nothing rather than moving time back.
			updated_at = GREATEST(b.updated_at, $4::timestamptz)
		RETURNING level, refused`, l.Scope, limitHash(subject), limitHash(network), now, every, float64(l.Burst)).Scan(&level, &refused)
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", l.Scope, err)
	}
	if !refused {
		return 0, nil
	}
	// The next attempt goes ahead once the level has leaked to Burst-1. (The level leaks in
	// floating point: the tolerance above keeps a hair over a whole number from counting.)
	wait := (level - float64(l.Burst-1)) * every
	return time.Duration(math.Ceil(wait)) * time.Second, nil
}

// ForgetAttempts empties one bucket: after a successful sign-in, the failures before it no
// longer count.
func (s *Store) ForgetAttempts(ctx context.Context, scope, subject, network string) error {
	if _, err := s.relaxed.Exec(ctx, `DELETE FROM attempt_buckets WHERE scope = $1 AND subject = $2 AND network = $3`,
		scope, limitHash(subject), limitHash(network)); err != nil {
		return fmt.Errorf("rate limit %s: forget: %w", scope, err)
	}
	return nil
}

// ClearAttempts empties every bucket of subject in scope, from every network (an operator's
// `server operator unlock`), and reports how many there were.
func (s *Store) ClearAttempts(ctx context.Context, scope, subject string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM attempt_buckets WHERE scope = $1 AND subject = $2`, scope, limitHash(subject))
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: clear: %w", scope, err)
	}
	return tag.RowsAffected(), nil
}

// limitHash is what a bucket keeps of a key: 128 bits of its SHA-256 ("" stays "").
func limitHash(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

// ErrInvalidText is text the database cannot store: a NUL byte, or bytes that are not UTF-8.
// Callers check input before it reaches a query; IsInvalidText also recognises the database's
// own refusal, so that such input is answered as bad input (400), never as an outage.
var ErrInvalidText = errors.New("text with a NUL byte or invalid UTF-8")

// IsInvalidText reports whether err is ErrInvalidText or PostgreSQL refusing text for its
// encoding: 22021 character_not_in_repertoire (a NUL byte or invalid UTF-8 in a text value) or
// 22P05 untranslatable_character (\u0000 in a jsonb value).
func IsInvalidText(err error) bool {
	if errors.Is(err, ErrInvalidText) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05")
}
