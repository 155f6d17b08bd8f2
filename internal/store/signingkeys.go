package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ColSigningKey is the sealed private half of an identity-assertion signing key. These keys
// belong to no school: they are sealed with tenant id "".
const ColSigningKey = "signing_keys.private_key"

// SigningKey is one key of the identity assertion (internal/assertion). PrivateKey is PKCS #8
// DER, opened.
type SigningKey struct {
	KID        string
	Alg        string
	PrivateKey []byte
	CreatedAt  time.Time
	SignsFrom  time.Time
	// RetiresAt is when the key leaves the JWKS; zero while it is the newest key.
	RetiresAt time.Time
}

// SigningKeys returns the keys still published at now (not yet retired), newest first.
func (s *Store) SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error) {
	return s.signingKeys(ctx, s.pool, now)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) signingKeys(ctx context.Context, q querier, now time.Time) ([]SigningKey, error) {
	rows, err := q.Query(ctx, `
		SELECT kid, alg, private_key_sealed, created_at, signs_from, retires_at
		FROM signing_keys WHERE retires_at IS NULL OR retires_at > $1
		ORDER BY signs_from DESC, created_at DESC`, now)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	defer rows.Close()
	var out []SigningKey
	for rows.Next() {
		var (
			k       SigningKey
			sealed  []byte
			retires *time.Time
		)
		if err := rows.Scan(&k.KID, &k.Alg, &sealed, &k.CreatedAt, &k.SignsFrom, &retires); err != nil {
			return nil, fmt.Errorf("signing keys: %w", err)
		}
		priv, err := s.open(sealed, "", ColSigningKey)
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.KID, err)
		}
		k.PrivateKey = []byte(priv)
		if retires != nil {
			k.RetiresAt = *retires
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	return out, nil
}

// ErrKeyNotDue is returned by AddSigningKey when due said no: another replica added a key first,
// or none is needed.
var ErrKeyNotDue = errors.New("no new signing key is due")

// AddSigningKey stores k as the newest signing key, if due (called with the published keys,
// newest first, under a lock that every replica takes for this) says one is needed. Every key
// without a retirement date is then given retireOthersAt: a key that stops signing stays
// published until the assertions it signed have expired. Keys retired before now are deleted.
func (s *Store) AddSigningKey(ctx context.Context, now time.Time, k SigningKey, retireOthersAt time.Time, due func([]SigningKey) bool) error {
	sealed, err := s.seal(string(k.PrivateKey), "", ColSigningKey)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx pgx.Tx) error {
		// One replica at a time decides: two replicas seeing the same old key must not both add
		// a successor.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('untis:signing_keys'))`); err != nil {
			return fmt.Errorf("lock signing keys: %w", err)
		}
		keys, err := s.signingKeys(ctx, tx, now)
		if err != nil {
			return err
		}
		if due != nil && !due(keys) {
			return ErrKeyNotDue
		}
		if _, err := tx.Exec(ctx, `DELETE FROM signing_keys WHERE retires_at <= $1`, now); err != nil {
			return fmt.Errorf("delete retired signing keys: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL`, retireOthersAt); err != nil {
			return fmt.Errorf("retire signing keys: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO signing_keys (kid, alg, private_key_sealed, created_at, signs_from)
			VALUES ($1, $2, $3, $4, $5)`, k.KID, k.Alg, sealed, k.CreatedAt, k.SignsFrom); err != nil {
			return fmt.Errorf("add signing key: %w", err)
		}
		return nil
	})
}
