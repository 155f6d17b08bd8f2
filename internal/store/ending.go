package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Ending says who ended a school's use of the app, for the words a refused user reads: the
// platform (a DEACTIVATION or DELETION webhook, that is the school's WebUntis administrator) or
// one of our operators (the console). It is read from the audit trail.
type Ending struct {
	State      string // the school's state now
	Ended      bool   // the school is deactivated or deleted, and the trail says how
	ByOperator bool   // an operator ended it (else the platform did)
	Deletion   bool   // it was deleted, not only deactivated
}

// TenantEnding returns how the school came to be ended: its newest deactivation or deletion
// event, by insertion order. A school that is not ended (or whose trail has no ending) has
// Ended false. An unknown school is ErrNotFound.
func (s *Store) TenantEnding(ctx context.Context, tenantID string) (Ending, error) {
	var (
		e             Ending
		actor, action *string
	)
	err := s.pool.QueryRow(ctx, `
		SELECT t.state, ev.actor, ev.action FROM tenants t
		LEFT JOIN LATERAL (SELECT actor, action FROM audit_events
			WHERE tenant_id = t.tenant_id AND action IN ('tenant.deactivated', 'tenant.deleted')
			ORDER BY id DESC LIMIT 1) ev ON true
		WHERE t.tenant_id = $1`, tenantID).Scan(&e.State, &actor, &action)
	if errors.Is(err, pgx.ErrNoRows) {
		return Ending{}, ErrNotFound
	}
	if err != nil {
		return Ending{}, fmt.Errorf("how tenant %s ended: %w", tenantID, err)
	}
	if (e.State == StateDeactivated || e.State == StateDeleted) && actor != nil {
		e.Ended = true
		e.ByOperator = strings.HasPrefix(*actor, "operator ")
		e.Deletion = e.State == StateDeleted
	}
	return e, nil
}
