package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ActivateWithCredentials makes the tenant known (or known again) in the given state with a new
// version of sealed credentials, and records who did it in the audit trail, in one durable
// transaction. Every replica hears of the change. A school already active stays active. It
// returns the credentials' version and the school's state.
func (s *Store) ActivateWithCredentials(ctx context.Context, tenantID, state string, c Credentials, actor string) (int, string, error) {
	sealedSecret, sealedPassword, err := s.sealCredentials(tenantID, c)
	if err != nil {
		return 0, "", err
	}
	var version int
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// The state actually set is returned below (an active school stays active).
		if err := tx.QueryRow(ctx, `
			INSERT INTO tenants (tenant_id, state) VALUES ($1, $2)
			ON CONFLICT (tenant_id) DO UPDATE SET
				-- New credentials for a school that finished its setup keep it active.
				state = CASE WHEN tenants.state = 'active' THEN 'active' ELSE EXCLUDED.state END,
				state_changed_at = CASE WHEN tenants.state NOT IN ('active', EXCLUDED.state) THEN now() ELSE tenants.state_changed_at END,
				updated_at = now()
			RETURNING state`, tenantID, state).Scan(&state); err != nil {
			return err
		}
		var err error
		if version, err = insertCredentials(ctx, tx, tenantID, c, sealedSecret, sealedPassword); err != nil {
			return err
		}
		// Never a secret value in the audit trail: who, what, which version and client id.
		detail, _ := json.Marshal(map[string]any{"state": state, "credentials_version": version, "client_id": c.ClientID, "source": c.Source})
		if _, err := tx.Exec(ctx, `INSERT INTO audit_events (tenant_id, actor, action, detail) VALUES ($1, $2, 'credentials.stored', $3)`,
			tenantID, actor, detail); err != nil {
			return err
		}
		return notifyTenantChanged(ctx, tx, tenantID)
	})
	if err != nil {
		return 0, "", fmt.Errorf("activate tenant %s: %w", tenantID, err)
	}
	return version, state, nil
}
