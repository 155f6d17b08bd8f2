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
	ID           int64
	Email        string
	PasswordHash string
	LastLoginAt  *time.Time
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

// ScopeConsoleAccount is the scope of the console's sign-in limit per account and client network
// (internal/operator): a password reset and `server operator unlock` empty its buckets.
const ScopeConsoleAccount = "console-account"

// UpsertOperator creates the operator account, or resets its password: the account's sign-in
// limits are emptied on every network and every console session of the account ends. It reports whether the
// account is new. The audit trail (under no school) records it.
func (s *Store) UpsertOperator(ctx context.Context, email, passwordHash string) (bool, error) {
	var created bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `
			INSERT INTO operators (email, password_hash) VALUES ($1, $2)
			ON CONFLICT (email) DO UPDATE SET password_hash = EXCLUDED.password_hash, updated_at = now()
			RETURNING id, (xmax = 0)`, email, passwordHash).Scan(&id, &created); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM attempt_buckets WHERE scope = $1 AND subject = $2`, ScopeConsoleAccount, limitHash(email)); err != nil {
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
	err := s.pool.QueryRow(ctx, `SELECT id, email, password_hash, last_login_at
		FROM operators WHERE email = $1`, email).Scan(&o.ID, &o.Email, &o.PasswordHash, &o.LastLoginAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Operator{}, ErrNotFound
	}
	if err != nil {
		return Operator{}, fmt.Errorf("operator: %w", err)
	}
	return o, nil
}

// RecordOperatorSignIn notes an operator's successful sign-in.
func (s *Store) RecordOperatorSignIn(ctx context.Context, id int64, now time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE operators SET last_login_at = $2 WHERE id = $1`, id, now); err != nil {
		return fmt.Errorf("operator sign-in: %w", err)
	}
	return nil
}

// UnlockOperator empties the sign-in limits of the operator with that (lower-case) e-mail address
// on every network (`server operator unlock`), and reports how many networks were held back. The
// audit trail (under no school) records it. An unknown address is ErrNotFound.
func (s *Store) UnlockOperator(ctx context.Context, email string) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `SELECT id FROM operators WHERE email = $1`, email).Scan(&id); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM attempt_buckets WHERE scope = $1 AND subject = $2`, ScopeConsoleAccount, limitHash(email))
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		return audit(ctx, tx, "", "cli", "operator.unlocked", map[string]any{"operator": email, "networks": n})
	})
	if err != nil {
		return 0, fmt.Errorf("unlock operator: %w", err)
	}
	return n, nil
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
