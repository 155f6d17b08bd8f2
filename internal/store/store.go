// Package store is the server's PostgreSQL store: one Store type over a pgx pool, with its
// methods split by entity into files (tenants.go, rotate.go, ...). Tenant-owned rows are always
// read and written with their tenant id in the WHERE clause; "not found" and "belongs to another
// tenant" are the same ErrNotFound.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/untis-partner/server/internal/secret"
)

// ErrNotFound is returned when a row does not exist, or exists for another tenant.
var ErrNotFound = errors.New("not found")

// Store is the database handle the rest of the server uses.
type Store struct {
	pool *pgxpool.Pool
	// relaxed is a second pool whose connections run with synchronous_commit=off. It writes only
	// rows whose loss in a database crash means at most a new sign-in (login flows, sessions and
	// the user profiles cached with them), so the login path waits for no WAL flush. Commits are
	// visible to every other connection at once, as usual; only their durability is deferred by
	// a fraction of a second. Credentials, receipts and audit events never go through it.
	relaxed *pgxpool.Pool
	keyring *secret.Keyring
}

// Options tune the pools.
type Options struct {
	// MaxConns bounds each of the two pools (connections are opened on demand).
	MaxConns int32
}

// Open connects to PostgreSQL and checks the connection. The keyring seals and opens the secret
// columns; it may be nil for commands that touch no secret (migrate, operator add).
func Open(ctx context.Context, databaseURL string, keyring *secret.Keyring, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		// pgx's parse errors may quote the URL, password included: keep only our own words.
		return nil, errors.New("store: DATABASE_URL is not a valid connection string")
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "untis-partner-server"
	relaxedCfg := cfg.Copy()
	relaxedCfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	relaxedCfg.ConnConfig.RuntimeParams["application_name"] = "untis-partner-server sessions"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: create pool: %w", err)
	}
	relaxed, err := pgxpool.NewWithConfig(ctx, relaxedCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: create session pool: %w", err)
	}
	s := &Store{pool: pool, relaxed: relaxed, keyring: keyring}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Ping(pingCtx); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: connect: %w", err)
	}
	return s, nil
}

// Close releases every connection.
func (s *Store) Close() {
	s.pool.Close()
	s.relaxed.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.pool.Ping(ctx)
}

// Pool exposes the pool to the few places that need raw access (tests, metrics).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.pool, fn)
}

// HashID is what the store keeps of an id the browser holds (a flow's or a session's): its
// SHA-256, so the table alone opens no session.
func HashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

// Columns whose values are sealed. The name is part of the AEAD additional data, so a ciphertext
// copied to another column (or another tenant's row) does not open.
const (
	ColCredentialSecret   = "tenant_credentials.secret"
	ColCredentialPassword = "tenant_credentials.password"
	ColFlowPKCEVerifier   = "auth_flows.pkce_verifier"
)

func (s *Store) seal(plaintext, tenantID, column string) ([]byte, error) {
	if s.keyring == nil {
		return nil, errors.New("store: no encryption keyring configured")
	}
	return s.keyring.Seal([]byte(plaintext), tenantID, column)
}

func (s *Store) open(sealed []byte, tenantID, column string) (string, error) {
	if s.keyring == nil {
		return "", errors.New("store: no encryption keyring configured")
	}
	b, err := s.keyring.Open(sealed, tenantID, column)
	if err != nil {
		return "", fmt.Errorf("store: open %s of tenant %s: %w", column, tenantID, err)
	}
	return string(b), nil
}
