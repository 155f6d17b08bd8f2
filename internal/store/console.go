package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// What the operator console reads. Secrets never leave these queries: credentials are described
// by version, source and date, never by value.

// CredentialsMeta describes a school's current credentials without their secrets.
type CredentialsMeta struct {
	Version   int
	ClientID  string
	Source    string
	CreatedAt time.Time
}

// TenantSummary is a school as the console lists it.
type TenantSummary struct {
	Tenant
	Credentials *CredentialsMeta // nil when the school has none
	Users       int
	Sessions    int // live sessions
}

// summarySelect reads a school for the console: its row, its current credentials' description
// and its user and live-session counts ($1 is now). The caller appends WHERE, ORDER and LIMIT.
const summarySelect = `
	SELECT ` + tenantColumns + `,
	       c.version, c.client_id, c.source, c.created_at,
	       (SELECT count(*) FROM users u WHERE u.tenant_id = t.tenant_id),
	       (SELECT count(*) FROM sessions x WHERE x.tenant_id = t.tenant_id AND x.expires_at > $1 AND x.idle_expires_at > $1)
	FROM tenants t
	LEFT JOIN LATERAL (SELECT version, client_id, source, created_at FROM tenant_credentials
	                   WHERE tenant_id = t.tenant_id ORDER BY version DESC LIMIT 1) c ON true`

// ListTenants returns up to limit schools whose id sorts after `after` (keyset paging), with
// their credentials' description and their user and live-session counts.
func (s *Store) ListTenants(ctx context.Context, after string, limit int, now time.Time) ([]TenantSummary, error) {
	out, err := s.summaries(ctx, summarySelect+` WHERE t.tenant_id > $2 ORDER BY t.tenant_id LIMIT $3`, now, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	return out, nil
}

// TenantSummary returns one school as ListTenants describes it, or ErrNotFound.
func (s *Store) TenantSummary(ctx context.Context, tenantID string, now time.Time) (TenantSummary, error) {
	out, err := s.summaries(ctx, summarySelect+` WHERE t.tenant_id = $2`, now, tenantID)
	if err != nil {
		return TenantSummary{}, fmt.Errorf("tenant %s: %w", tenantID, err)
	}
	if len(out) == 0 {
		return TenantSummary{}, ErrNotFound
	}
	return out[0], nil
}

func (s *Store) summaries(ctx context.Context, query string, args ...any) ([]TenantSummary, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanSummary)
}

func scanSummary(rows pgx.CollectableRow) (TenantSummary, error) {
	var (
		ts       TenantSummary
		version  *int
		clientID *string
		source   *string
		created  *time.Time
	)
	if err := rows.Scan(append(ts.fields(), &version, &clientID, &source, &created, &ts.Users, &ts.Sessions)...); err != nil {
		return TenantSummary{}, err
	}
	if version != nil {
		ts.Credentials = &CredentialsMeta{Version: *version, ClientID: *clientID, Source: *source, CreatedAt: *created}
	}
	return ts, nil
}

// AuditEvent is one entry of a school's audit trail.
type AuditEvent struct {
	At     time.Time
	Actor  string
	Action string
	Detail map[string]any
}

// AuditTrail returns the school's newest audit events, newest first ("" is the trail of events
// that concern no school, such as operator accounts).
func (s *Store) AuditTrail(ctx context.Context, tenantID string, limit int) ([]AuditEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT at, actor, action, detail FROM audit_events
		WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2`, tenantID, limit)
	if err != nil {
		return nil, fmt.Errorf("audit trail of tenant %s: %w", tenantID, err)
	}
	var (
		out    []AuditEvent
		e      AuditEvent
		detail []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&e.At, &e.Actor, &e.Action, &detail}, func() error {
		e.Detail = nil
		if err := json.Unmarshal(detail, &e.Detail); err != nil {
			return errors.New("audit detail is not JSON")
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("audit trail of tenant %s: %w", tenantID, err)
	}
	return out, nil
}

// AuditOperator records an operator's action that changes no school row (a refused manual entry,
// a sign-in), under the school it concerns ("" for none).
func (s *Store) AuditOperator(ctx context.Context, tenantID, actor, action string, detail map[string]any) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error { return audit(ctx, tx, tenantID, actor, action, detail) })
	if err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// CountTenantsByState returns how many schools are in each state.
func (s *Store) CountTenantsByState(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT state, count(*) FROM tenants GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count tenants: %w", err)
	}
	counts := map[string]int{}
	var (
		state string
		n     int
	)
	_, err = pgx.ForEachRow(rows, []any{&state, &n}, func() error {
		counts[state] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count tenants: %w", err)
	}
	return counts, nil
}
