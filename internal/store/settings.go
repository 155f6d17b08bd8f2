package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
)

// SetupAnswers returns the school's answers to the setup fields (onboarding scenario 2), by field
// name.
func (s *Store) SetupAnswers(ctx context.Context, tenantID string) (map[string]string, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("setup answers of tenant %s: %w", tenantID, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	answers, err := readSetupAnswers(ctx, tx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("setup answers of tenant %s: %w", tenantID, err)
	}
	return answers, nil
}

func readSetupAnswers(ctx context.Context, tx pgx.Tx, tenantID string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT name, value FROM tenant_settings WHERE tenant_id = $1`, tenantID)
	if err != nil {
		return nil, err
	}
	answers := map[string]string{}
	var name, value string
	_, err = pgx.ForEachRow(rows, []any{&name, &value}, func() error {
		answers[name] = value
		return nil
	})
	return answers, err
}

// SaveSetup stores a school admin's setup answers (validated by the caller) and, when the school
// was pending setup and check says the answers now complete it, makes it active. Only a school
// that is pending setup or active takes answers; any other is ErrNotFound. The audit trail names
// the fields that changed, not their values. It returns the school's state afterwards.
func (s *Store) SaveSetup(ctx context.Context, tenantID string, answers map[string]string, actor string, check SetupCheck) (string, error) {
	var state string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		prev, err := lockTenant(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		if prev != StatePendingSetup && prev != StateActive {
			return ErrNotFound
		}
		old, err := readSetupAnswers(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		changed := []string{}
		for _, name := range slices.Sorted(maps.Keys(answers)) {
			v := answers[name]
			if cur, ok := old[name]; ok && cur == v {
				continue
			}
			changed = append(changed, name)
			if _, err := tx.Exec(ctx, `
				INSERT INTO tenant_settings (tenant_id, name, value, updated_by, updated_at) VALUES ($1, $2, $3, $4, now())
				ON CONFLICT (tenant_id, name) DO UPDATE SET value = EXCLUDED.value, updated_by = EXCLUDED.updated_by, updated_at = now()`,
				tenantID, name, v, actor); err != nil {
				return err
			}
			old[name] = v
		}
		state = prev
		if prev == StatePendingSetup && (check == nil || check(old)) {
			state = StateActive
			if _, err := tx.Exec(ctx, `UPDATE tenants SET state = 'active', state_changed_at = now(), updated_at = now() WHERE tenant_id = $1`, tenantID); err != nil {
				return err
			}
		}
		if len(changed) == 0 && state == prev {
			return nil
		}
		if err := insertSetupEvent(ctx, tx, tenantID, prev, state, old, changed); err != nil {
			return err
		}
		if err := audit(ctx, tx, tenantID, actor, "setup.saved", map[string]any{"fields": changed, "previous_state": prev, "state": state}); err != nil {
			return err
		}
		return notifyTenantChanged(ctx, tx, tenantID)
	})
	if errors.Is(err, ErrNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("save setup of tenant %s: %w", tenantID, err)
	}
	return state, nil
}
