package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Operator is one of the partner's own staff, who use the console (/admin).
type Operator struct {
	ID             int64
	Email          string
	PasswordHash   string
	FailedAttempts int
	LockedUntil    *time.Time
	LastLoginAt    *time.Time
}

// OperatorSession is a signed-in console browser.
type OperatorSession struct {
	IDHash        []byte
	OperatorID    int64
	Email         string
	CSRFToken     []byte
	LastSeenAt    time.Time
	IdleExpiresAt time.Time
	ExpiresAt     time.Time
}

// UpsertOperator creates the operator account, or resets its password: the failure count and
// any lock are cleared and every console session of the account ends. It reports whether the
// account is new. The audit trail (under no school) records it.
func (s *Store) UpsertOperator(ctx context.Context, email, passwordHash string) (bool, error) {
	var created bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `
			INSERT INTO operators (email, password_hash) VALUES ($1, $2)
			ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash,
				failed_attempts = 0, locked_until = NULL, updated_at = now()
			RETURNING id, (xmax = 0)`, email, passwordHash).Scan(&id, &created); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM operator_sessions WHERE operator_id = $1`, id); err != nil {
			return err
		}
		action := "operator.password_reset"
		if created {
			action = "operator.added"
		}
		return audit(ctx, tx, "", "cli", action, map[string]any{"operator": email})
	})
	if err != nil {
		return false, fmt.Errorf("add operator: %w", err)
	}
	return created, nil
}

// OperatorByEmail returns the operator with that (lower-case) e-mail address, or ErrNotFound.
func (s *Store) OperatorByEmail(ctx context.Context, email string) (Operator, error) {
	var o Operator
	err := s.pool.QueryRow(ctx, `SELECT id, email, password_hash, failed_attempts, locked_until, last_login_at
		FROM operators WHERE email = $1`, email).Scan(&o.ID, &o.Email, &o.PasswordHash, &o.FailedAttempts, &o.LockedUntil, &o.LastLoginAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Operator{}, ErrNotFound
	}
	if err != nil {
		return Operator{}, fmt.Errorf("operator: %w", err)
	}
	return o, nil
}

// ErrLocked is returned by BeginOperatorAttempt while the account is locked.
type ErrLocked struct{ Until time.Time }

func (e *ErrLocked) Error() string {
	return "operator account locked until " + e.Until.Format(time.RFC3339)
}

// BeginOperatorAttempt counts a sign-in attempt before its password is checked, so that parallel
// guesses cannot outrun the lock: the attempt that makes freeAttempts failures in a row locks the
// account for lockFor(failures) (its own check still runs; the ones after it are refused). A
// locked account is *ErrLocked, its counter does not move and its password is not checked.
// SucceedOperatorAttempt resets the count.
func (s *Store) BeginOperatorAttempt(ctx context.Context, id int64, now time.Time, freeAttempts int, lockFor func(failures int) time.Duration) error {
	// The lock's length for the failures that lock: freeAttempts, freeAttempts+1, ... (the last
	// one holds for any more).
	lengths := make([]float64, 12)
	for k := range lengths {
		lengths[k] = lockFor(freeAttempts + k).Seconds()
	}
	var wasLocked *time.Time
	// One statement: the row lock orders concurrent attempts, and each sees the count and the
	// lock the one before it wrote.
	err := s.pool.QueryRow(ctx, `
		UPDATE operators o SET
			failed_attempts = CASE WHEN b.locked THEN o.failed_attempts ELSE o.failed_attempts + 1 END,
			locked_until = CASE
				WHEN b.locked THEN o.locked_until
				WHEN o.failed_attempts + 1 >= $3 THEN $2::timestamptz + make_interval(secs =>
					($4::float8[])[least(o.failed_attempts + 2 - $3, cardinality($4::float8[]))])
				ELSE o.locked_until END,
			updated_at = now()
		FROM (SELECT id, COALESCE(locked_until > $2::timestamptz, false) AS locked, locked_until
		      FROM operators WHERE id = $1 FOR UPDATE) b
		WHERE o.id = b.id
		RETURNING CASE WHEN b.locked THEN b.locked_until END`, id, now, freeAttempts, lengths).Scan(&wasLocked)
	if err != nil {
		return fmt.Errorf("operator sign-in attempt: %w", err)
	}
	if wasLocked != nil {
		return &ErrLocked{Until: *wasLocked}
	}
	return nil
}

// SucceedOperatorAttempt records a successful sign-in: the failure count and lock are cleared.
func (s *Store) SucceedOperatorAttempt(ctx context.Context, id int64, now time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE operators SET failed_attempts = 0, locked_until = NULL, last_login_at = $2 WHERE id = $1`, id, now)
	if err != nil {
		return fmt.Errorf("operator sign-in: %w", err)
	}
	return nil
}

// CreateOperatorSession stores a new console session.
func (s *Store) CreateOperatorSession(ctx context.Context, os OperatorSession) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO operator_sessions (id_hash, operator_id, csrf_token, last_seen_at, idle_expires_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, os.IDHash, os.OperatorID, os.CSRFToken, os.LastSeenAt, os.IdleExpiresAt, os.ExpiresAt)
	if err != nil {
		return fmt.Errorf("create console session: %w", err)
	}
	return nil
}

// OperatorSessionByID returns the live console session with that id hash, or ErrNotFound.
func (s *Store) OperatorSessionByID(ctx context.Context, idHash []byte, now time.Time) (OperatorSession, error) {
	var os OperatorSession
	err := s.pool.QueryRow(ctx, `
		SELECT s.id_hash, s.operator_id, o.email, s.csrf_token, s.last_seen_at, s.idle_expires_at, s.expires_at
		FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
		WHERE s.id_hash = $1 AND s.expires_at > $2 AND s.idle_expires_at > $2`, idHash, now).Scan(
		&os.IDHash, &os.OperatorID, &os.Email, &os.CSRFToken, &os.LastSeenAt, &os.IdleExpiresAt, &os.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return OperatorSession{}, ErrNotFound
	}
	if err != nil {
		return OperatorSession{}, fmt.Errorf("console session: %w", err)
	}
	return os, nil
}

// TouchOperatorSession moves a console session's idle expiry (never past its absolute expiry).
func (s *Store) TouchOperatorSession(ctx context.Context, idHash []byte, now, idleExpiresAt time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE operator_sessions SET last_seen_at = $2, idle_expires_at = LEAST($3, expires_at) WHERE id_hash = $1`,
		idHash, now, idleExpiresAt)
	if err != nil {
		return fmt.Errorf("touch console session: %w", err)
	}
	return nil
}

// DeleteOperatorSession ends a console session.
func (s *Store) DeleteOperatorSession(ctx context.Context, idHash []byte) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM operator_sessions WHERE id_hash = $1`, idHash); err != nil {
		return fmt.Errorf("end console session: %w", err)
	}
	return nil
}
