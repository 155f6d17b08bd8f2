package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ListSchools returns up to limit schools whose id sorts after `after` (keyset paging, in id
// order), only those in one of states when states is not empty. It reads the schools' rows
// alone, for the internal API's list (the console's ListTenants also counts users and sessions).
func (s *Store) ListSchools(ctx context.Context, after string, limit int, states []string) ([]Tenant, error) {
	if states == nil {
		states = []string{}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT `+tenantColumns+` FROM tenants t
		WHERE t.tenant_id > $1 AND (cardinality($2::text[]) = 0 OR t.state = ANY($2::text[]))
		ORDER BY t.tenant_id LIMIT $3`, after, states, limit)
	if err != nil {
		return nil, fmt.Errorf("list schools: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Tenant, error) {
		var t Tenant
		err := row.Scan(t.fields()...)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list schools: %w", err)
	}
	return out, nil
}
