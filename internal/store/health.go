package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MarkCredentialsFailing records that the platform refused version credVersion of the tenant's
// credentials: the time of the first refusal is kept while the failure lasts, the reason is the
// newest one. The operator console and /metrics read it. Nothing is written when newer
// credentials have been stored since (a RESET that raced the refusal is not known to fail), when
// that version is gone (wiped by a deactivation), or when the school is no longer active or
// pending; it reports whether the mark was written.
func (s *Store) MarkCredentialsFailing(ctx context.Context, tenantID string, credVersion int, reason string, at time.Time) (bool, error) {
	var marked bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// First wait for any change of the school in progress (a RESET, a deactivation: they
		// hold the row): the statement after it then sees what they committed. In one statement,
		// the version check would keep the snapshot from before the wait.
		state, err := lockTenant(ctx, tx, tenantID)
		if err != nil || (state != StateActive && state != StatePendingSetup) {
			return err
		}
		tag, err := tx.Exec(ctx, `
			UPDATE tenants SET
				credentials_failing_since = COALESCE(credentials_failing_since, $3),
				credentials_failure_reason = $4,
				updated_at = now()
			WHERE tenant_id = $1
			  AND EXISTS (SELECT 1 FROM tenant_credentials WHERE tenant_id = $1 AND version = $2)
			  AND NOT EXISTS (SELECT 1 FROM tenant_credentials WHERE tenant_id = $1 AND version > $2)`,
			tenantID, credVersion, at, truncateReason(reason))
		marked = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("mark credentials of tenant %s failing: %w", tenantID, err)
	}
	return marked, nil
}

// OIDCSecretRefused begins the failure reason of a mark written because the platform's token
// endpoint refused the school's OIDC secret at a sign-in. Only a sign-in proves the secret, so
// only a sign-in clears such a mark (ClearOIDCSecretRefused); a client-credentials token, which
// proves the password, does not (ClearCredentialsFailing).
const OIDCSecretRefused = "the OIDC secret was refused"

// ClearCredentialsFailing removes the failing mark after the platform accepted the credentials
// again in a server-to-server call, unless the mark says the OIDC secret was refused (which
// such a call does not prove). It writes nothing when there is no such mark, so calling it after
// every recovery is cheap.
func (s *Store) ClearCredentialsFailing(ctx context.Context, tenantID string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE tenants SET credentials_failing_since = NULL, credentials_failure_reason = '', updated_at = now()
		WHERE tenant_id = $1 AND (credentials_failing_since IS NOT NULL OR credentials_failure_reason <> '')
		  AND NOT starts_with(credentials_failure_reason, $2)`, tenantID, OIDCSecretRefused)
	if err != nil {
		return fmt.Errorf("clear failing mark of tenant %s: %w", tenantID, err)
	}
	return nil
}

// ClearOIDCSecretRefused removes a mark that the OIDC secret was refused, after the platform
// accepted version credVersion of the credentials at a sign-in; not when newer credentials have
// been stored since (their secret is not proved). Other marks stay. It reports whether a mark
// was removed, and writes nothing when there is none.
func (s *Store) ClearOIDCSecretRefused(ctx context.Context, tenantID string, credVersion int) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE tenants SET credentials_failing_since = NULL, credentials_failure_reason = '', updated_at = now()
		WHERE tenant_id = $1 AND credentials_failing_since IS NOT NULL
		  AND starts_with(credentials_failure_reason, $3)
		  AND NOT EXISTS (SELECT 1 FROM tenant_credentials WHERE tenant_id = $1 AND version > $2)`,
		tenantID, credVersion, OIDCSecretRefused)
	if err != nil {
		return false, fmt.Errorf("clear the OIDC secret mark of tenant %s: %w", tenantID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// CountCredentialsFailing returns how many tenants that are not deactivated or deleted have
// failing credentials, for /metrics.
func (s *Store) CountCredentialsFailing(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FROM tenants
		WHERE credentials_failing_since IS NOT NULL AND state IN ('pending_setup', 'active')`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count tenants with failing credentials: %w", err)
	}
	return n, nil
}

// maxReasonLen bounds a failure reason: it quotes the platform, which we do not control.
const maxReasonLen = 500

func truncateReason(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	// Cut on a rune boundary so the column stays valid UTF-8.
	cut := maxReasonLen
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
