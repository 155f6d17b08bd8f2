package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrFlowExpired is returned when a login flow was found, and consumed, after its expiry.
var ErrFlowExpired = errors.New("login flow expired")

// Flow is one login attempt: what /launch remembers until the platform sends the browser back.
// The browser holds only the random id whose SHA-256 is IDHash.
type Flow struct {
	IDHash       []byte
	TenantID     string
	State        string
	Nonce        string
	PKCEVerifier string // plaintext only in memory; sealed in the table
	ReturnTo     string
	Launch       map[string]string
	CreatedAt    time.Time
	ExpiresAt    time.Time
}

// CreateFlow stores a login attempt. The tenant must exist.
func (s *Store) CreateFlow(ctx context.Context, f Flow) error {
	sealed, err := s.seal(f.PKCEVerifier, f.TenantID, ColFlowPKCEVerifier)
	if err != nil {
		return err
	}
	launch, err := json.Marshal(nonNilMap(f.Launch))
	if err != nil {
		return fmt.Errorf("create login flow: %w", err)
	}
	_, err = s.relaxed.Exec(ctx, `
		INSERT INTO auth_flows (id_hash, tenant_id, state, nonce, pkce_verifier_sealed, return_to, launch, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		f.IDHash, f.TenantID, f.State, f.Nonce, sealed, f.ReturnTo, launch, f.CreatedAt, f.ExpiresAt)
	if err != nil {
		return fmt.Errorf("create login flow for tenant %s: %w", f.TenantID, err)
	}
	return nil
}

// ConsumeFlow deletes the flow with the given id hash and returns it: a flow is used at most
// once, even by two callbacks racing each other. A flow past its expiry is deleted too and
// reported as ErrFlowExpired; an unknown one as ErrNotFound.
func (s *Store) ConsumeFlow(ctx context.Context, idHash []byte, now time.Time) (Flow, error) {
	var (
		f      Flow
		sealed []byte
		launch []byte
	)
	err := s.relaxed.QueryRow(ctx, `
		DELETE FROM auth_flows WHERE id_hash = $1
		RETURNING id_hash, tenant_id, state, nonce, pkce_verifier_sealed, return_to, launch, created_at, expires_at`,
		idHash).Scan(&f.IDHash, &f.TenantID, &f.State, &f.Nonce, &sealed, &f.ReturnTo, &launch, &f.CreatedAt, &f.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Flow{}, ErrNotFound
	}
	if err != nil {
		return Flow{}, fmt.Errorf("consume login flow: %w", err)
	}
	if err := json.Unmarshal(launch, &f.Launch); err != nil {
		return Flow{}, fmt.Errorf("consume login flow of tenant %s: launch context: %w", f.TenantID, err)
	}
	if !now.Before(f.ExpiresAt) {
		return f, ErrFlowExpired
	}
	if f.PKCEVerifier, err = s.open(sealed, f.TenantID, ColFlowPKCEVerifier); err != nil {
		return Flow{}, err
	}
	return f, nil
}

// ConsumeFlowByState deletes the flow that carries state and returns it without its verifier. It
// serves a callback that arrived without the flow cookie: that flow can no longer complete, but
// its launch context lets the user start again in a new tab.
func (s *Store) ConsumeFlowByState(ctx context.Context, state string) (Flow, error) {
	var (
		f      Flow
		launch []byte
	)
	err := s.relaxed.QueryRow(ctx, `
		DELETE FROM auth_flows WHERE state = $1
		RETURNING tenant_id, return_to, launch, created_at, expires_at`,
		state).Scan(&f.TenantID, &f.ReturnTo, &launch, &f.CreatedAt, &f.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Flow{}, ErrNotFound
	}
	if err != nil {
		return Flow{}, fmt.Errorf("consume login flow by state: %w", err)
	}
	if err := json.Unmarshal(launch, &f.Launch); err != nil {
		return Flow{}, fmt.Errorf("consume login flow of tenant %s: launch context: %w", f.TenantID, err)
	}
	return f, nil
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
