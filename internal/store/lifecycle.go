package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The school lifecycle, written in one durable transaction per change: the webhook's receipt (when
// a webhook caused it), the change itself, the event for the partner's app (events.go), an audit
// event, and a tenant_changed notification so every replica drops its cached tokens and verifiers
// for the school (and its event workers look for the new event).
//
//	(unknown) ──CREATED/REACTIVATED/RESET/manual──▶ pending_setup ──setup saved──▶ active
//	      └───────────────────────────────────────────────────────────────────────▶ active (no setup fields)
//	active/pending_setup ──DEACTIVATION──▶ deactivated ──CREATED/REACTIVATED/manual──▶ pending_setup/active
//	any known ──DELETION──▶ deleted (row kept, everything else of the school gone) ──CREATED…──▶ …

// Receipt identifies one verified webhook body in the ledger.
type Receipt struct {
	TenantID   string
	BodySHA256 []byte
	EventType  string
}

// TenantInfo is what the credentials webhook says about the school: stored and shown to
// operators, never used for an access decision.
type TenantInfo struct {
	Name                              string // only the deprecated v1 payload names the school
	Host, Country, Region, Language   string
	ActivatorEmail, ActivatorUsername string
	SchoolEmail, SchoolPhone          string
}

// SetupCheck reports whether a school's stored setup answers complete its setup. nil means the
// deployment has no setup fields: every school is complete.
type SetupCheck func(answers map[string]string) bool

// Outcome is what a lifecycle change did.
type Outcome struct {
	// Duplicate: the ledger already held this exact body; nothing changed.
	Duplicate bool
	// Ignored names why a verified event changed nothing but the ledger and the audit trail
	// (e.g. a RESET for a deactivated school); "" when it was applied.
	Ignored       string
	PreviousState string // "" for a school we did not know
	State         string // the school's state afterwards ("" if still unknown)
	Version       int    // the credentials version stored, 0 if none
	// SessionsEnded and SignInsEnded count the sessions and pending sign-ins a deactivation or
	// deletion ended.
	SessionsEnded, SignInsEnded int64
}

// Sources of credentials.
const (
	SourceWebhook  = "webhook"
	SourceManual   = "manual"   // the school admin on /activate
	SourceOperator = "operator" // an operator in the console or on the command line
)

// ErrEndedByOperator refuses manual activation of a school an operator deactivated.
var ErrEndedByOperator = errors.New("the school was deactivated by an operator")

// errDuplicate rolls back a transaction whose receipt already existed.
var errDuplicate = errors.New("duplicate webhook")

// ReceiveCredentials applies a verified credentials webhook (CREATED, REACTIVATED or RESET):
// receipt, new sealed credentials version, state, informational fields, audit event. A body
// already in the ledger changes nothing (Outcome.Duplicate). CREATED and REACTIVATED make the
// school active, or pending setup while its setup is incomplete; an active school stays active.
// RESET replaces the credentials of an active or pending school and keeps its state; for a
// deactivated or deleted school it is ignored (only a new activation brings a school back); for a
// school we never heard of it activates, since the platform vouches for it.
func (s *Store) ReceiveCredentials(ctx context.Context, rc Receipt, c Credentials, info TenantInfo, setup SetupCheck) (Outcome, error) {
	c.Source = SourceWebhook
	sealedSecret, sealedPassword, err := s.sealCredentials(rc.TenantID, c)
	if err != nil {
		return Outcome{}, err
	}
	var out Outcome
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := insertReceipt(ctx, tx, rc); err != nil {
			return err
		}
		prev, err := lockTenant(ctx, tx, rc.TenantID)
		if err != nil {
			return err
		}
		out.PreviousState = prev
		if rc.EventType == "RESET" && (prev == StateDeactivated || prev == StateDeleted) {
			out.State, out.Ignored = prev, "the school is "+prev+"; a RESET does not bring it back"
			if err := markWebhook(ctx, tx, rc); err != nil {
				return err
			}
			return audit(ctx, tx, rc.TenantID, "webhook", "webhook.ignored", map[string]any{
				"event": rc.EventType, "reason": out.Ignored, "receipt": receiptRef(rc)})
		}
		out.State, out.Version, err = s.storeCredentials(ctx, tx, rc.TenantID, prev, c, sealedSecret, sealedPassword, &info, setup)
		if err != nil {
			return err
		}
		if err := markWebhook(ctx, tx, rc); err != nil {
			return err
		}
		if err := insertCredentialsEvent(ctx, tx, rc.TenantID, prev, out.State, SourceWebhook); err != nil {
			return err
		}
		if err := audit(ctx, tx, rc.TenantID, "webhook", "credentials.stored", map[string]any{
			"event": rc.EventType, "previous_state": prev, "state": out.State, "credentials_version": out.Version,
			"client_id": c.ClientID, "source": SourceWebhook, "receipt": receiptRef(rc)}); err != nil {
			return err
		}
		return notifyTenantChanged(ctx, tx, rc.TenantID)
	})
	if errors.Is(err, errDuplicate) {
		return Outcome{Duplicate: true}, nil
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("receive %s for tenant %s: %w", rc.EventType, rc.TenantID, err)
	}
	return out, nil
}

// ActivateWithCredentials stores credentials that were proved with the platform (manual entry on
// /activate, the console, or `server activate`) as a new version and makes the school known (or
// known again): active, or pending setup while its setup is incomplete; an active school stays
// active. The audit event names the actor and, when the school had credentials, which source they
// replace. It returns the credentials' version and the school's state.
func (s *Store) ActivateWithCredentials(ctx context.Context, tenantID string, c Credentials, actor string, setup SetupCheck) (int, string, error) {
	sealedSecret, sealedPassword, err := s.sealCredentials(tenantID, c)
	if err != nil {
		return 0, "", err
	}
	var (
		version int
		state   string
	)
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		prev, err := lockTenant(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		if c.Source == SourceManual && prev == StateDeactivated {
			// A school an operator ended stays ended until the platform (a new activation
			// webhook) or an operator brings it back; whoever holds its leaked credentials must
			// not undo the operator's decision from the public activation page.
			var actor string
			err := tx.QueryRow(ctx, `SELECT COALESCE((SELECT actor FROM audit_events WHERE tenant_id = $1
				AND action IN ('tenant.deactivated', 'tenant.deleted') ORDER BY id DESC LIMIT 1), '')`, tenantID).Scan(&actor)
			if err != nil {
				return err
			}
			if strings.HasPrefix(actor, "operator ") {
				return ErrEndedByOperator
			}
		}
		var replaced string
		if err := tx.QueryRow(ctx, `SELECT COALESCE((SELECT source FROM tenant_credentials WHERE tenant_id = $1
			ORDER BY version DESC LIMIT 1), '')`, tenantID).Scan(&replaced); err != nil {
			return err
		}
		if state, version, err = s.storeCredentials(ctx, tx, tenantID, prev, c, sealedSecret, sealedPassword, nil, setup); err != nil {
			return err
		}
		if err := insertCredentialsEvent(ctx, tx, tenantID, prev, state, c.Source); err != nil {
			return err
		}
		// Never a secret value in the audit trail: who, what, which version and client id.
		detail := map[string]any{"previous_state": prev, "state": state, "credentials_version": version,
			"client_id": c.ClientID, "source": c.Source, "proved": "client-credentials token"}
		if replaced != "" {
			detail["replaces_source"] = replaced
		}
		if err := audit(ctx, tx, tenantID, actor, "credentials.stored", detail); err != nil {
			return err
		}
		return notifyTenantChanged(ctx, tx, tenantID)
	})
	if err != nil {
		return 0, "", fmt.Errorf("activate tenant %s: %w", tenantID, err)
	}
	return version, state, nil
}

// storeCredentials writes the tenant row (created if prev is "") in its new state and the next
// credentials version. The tenant's row is locked by the caller (lockTenant). New credentials
// clear a failing mark: they are a new chance.
func (s *Store) storeCredentials(ctx context.Context, tx pgx.Tx, tenantID, prev string, c Credentials,
	sealedSecret, sealedPassword []byte, info *TenantInfo, setup SetupCheck) (string, int, error) {
	state := prev
	if prev != StateActive {
		complete, err := setupComplete(ctx, tx, tenantID, setup)
		if err != nil {
			return "", 0, err
		}
		state = StatePendingSetup
		if complete {
			state = StateActive
		}
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO tenants (tenant_id, state) VALUES ($1, $2)
		ON CONFLICT (tenant_id) DO UPDATE SET
			state = EXCLUDED.state,
			state_changed_at = CASE WHEN tenants.state <> EXCLUDED.state THEN now() ELSE tenants.state_changed_at END,
			credentials_failing_since = NULL, credentials_failure_reason = '',
			updated_at = now()`, tenantID, state); err != nil {
		return "", 0, err
	}
	if info != nil {
		if _, err := tx.Exec(ctx, `
			UPDATE tenants SET
				name = CASE WHEN $2 <> '' THEN $2 ELSE name END,
				host = $3, country = $4, region = $5, language = $6,
				activator_email = $7, activator_username = $8, school_email = $9, school_phone = $10
			WHERE tenant_id = $1`, tenantID, info.Name, info.Host, info.Country, info.Region, info.Language,
			info.ActivatorEmail, info.ActivatorUsername, info.SchoolEmail, info.SchoolPhone); err != nil {
			return "", 0, err
		}
	}
	version, err := insertCredentials(ctx, tx, tenantID, c, sealedSecret, sealedPassword)
	if err != nil {
		return "", 0, err
	}
	return state, version, nil
}

// setupComplete reads the school's setup answers and asks check.
func setupComplete(ctx context.Context, tx pgx.Tx, tenantID string, check SetupCheck) (bool, error) {
	if check == nil {
		return true, nil
	}
	answers, err := readSetupAnswers(ctx, tx, tenantID)
	if err != nil {
		return false, err
	}
	return check(answers), nil
}

// ReceiveDeactivation applies a verified deactivation webhook: DEACTIVATION (deletion false) or
// DELETION. See EndTenant for what each does. A body already in the ledger changes nothing, unless
// the school was activated again since (see reviveReceipt); a school we never knew is only
// recorded.
func (s *Store) ReceiveDeactivation(ctx context.Context, rc Receipt, deletion bool, reasonType, reasonText string) (Outcome, error) {
	var out Outcome
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		repeated := false
		if err := insertReceipt(ctx, tx, rc); errors.Is(err, errDuplicate) {
			if err := reviveReceipt(ctx, tx, rc); err != nil {
				return err
			}
			repeated = true
		} else if err != nil {
			return err
		}
		detail := map[string]any{"event": rc.EventType, "reason_type": reasonType, "reason_text": reasonText, "receipt": receiptRef(rc)}
		if repeated {
			// The same bytes as an earlier deactivation, after a reactivation: a genuine
			// repetition, or a replay. The audit trail says so either way.
			detail["repeated_body"] = true
		}
		var err error
		out, err = endTenant(ctx, tx, rc.TenantID, deletion, "webhook", detail)
		if err != nil {
			return err
		}
		// Stamp the receipt while the school's row is locked: reviveReceipt compares it with
		// credentials written under the same lock, so the order is the order of the lock,
		// whatever the order the transactions started in (now() is their start).
		if _, err := tx.Exec(ctx, `UPDATE webhook_receipts SET received_at = clock_timestamp() WHERE tenant_id = $1 AND body_sha256 = $2`,
			rc.TenantID, rc.BodySHA256); err != nil {
			return err
		}
		if out.Ignored != "" {
			return nil
		}
		return markWebhook(ctx, tx, rc)
	})
	if errors.Is(err, errDuplicate) {
		return Outcome{Duplicate: true}, nil
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("receive %s for tenant %s: %w", rc.EventType, rc.TenantID, err)
	}
	return out, nil
}

// EndTenant deactivates a school (an operator's decision in the console), as a DEACTIVATION
// webhook would: credentials wiped, sessions and pending sign-ins deleted, every replica's cached
// tokens dropped. The school's users and setup answers stay, for a reactivation. With deletion,
// also everything else of the school (users, setup answers, informational fields), except the
// audit trail and the webhook ledger; the tenant row stays, in state deleted. An unknown school
// is ErrNotFound.
func (s *Store) EndTenant(ctx context.Context, tenantID string, deletion bool, actor string, detail map[string]any) (Outcome, error) {
	var out Outcome
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = endTenant(ctx, tx, tenantID, deletion, actor, detail)
		if err == nil && out.PreviousState == "" {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("end tenant %s: %w", tenantID, err)
	}
	return out, nil
}

func endTenant(ctx context.Context, tx pgx.Tx, tenantID string, deletion bool, actor string, detail map[string]any) (Outcome, error) {
	if detail == nil {
		detail = map[string]any{}
	}
	action := "tenant.deactivated"
	if deletion {
		action = "tenant.deleted"
	}
	// FOR UPDATE waits for sign-ins in progress (CreateLogin holds the row FOR SHARE): their
	// sessions are then deleted below, and later ones see the new state and write nothing.
	prev, err := lockTenant(ctx, tx, tenantID)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{PreviousState: prev}
	if prev == "" {
		out.Ignored = "unknown school"
		detail["ignored"] = out.Ignored
		return out, audit(ctx, tx, tenantID, actor, action, detail)
	}
	state := StateDeactivated
	if deletion || prev == StateDeleted {
		state = StateDeleted
	}
	out.State = state
	stmts := []string{
		`DELETE FROM sessions WHERE tenant_id = $1`,
		`DELETE FROM auth_flows WHERE tenant_id = $1`,
		`DELETE FROM tenant_credentials WHERE tenant_id = $1`,
	}
	if state == StateDeleted {
		stmts = append(stmts,
			`DELETE FROM users WHERE tenant_id = $1`,
			`DELETE FROM tenant_settings WHERE tenant_id = $1`,
			`UPDATE tenants SET name = '', country = '', region = '', language = '', host = '',
				activator_email = '', activator_username = '', school_email = '', school_phone = ''
			WHERE tenant_id = $1`,
			purgeEventsSQL)
	}
	counts := map[string]int64{}
	for _, q := range stmts {
		tag, err := tx.Exec(ctx, q, tenantID)
		if err != nil {
			return Outcome{}, err
		}
		if tag.Delete() {
			counts[deletedTable(q)] = tag.RowsAffected()
		}
	}
	if _, err := tx.Exec(ctx, `
		UPDATE tenants SET state = $2,
			state_changed_at = CASE WHEN state <> $2 THEN now() ELSE state_changed_at END,
			credentials_failing_since = NULL, credentials_failure_reason = '', updated_at = now()
		WHERE tenant_id = $1`, tenantID, state); err != nil {
		return Outcome{}, err
	}
	if state != prev {
		// A repeated deactivation, or a deletion of a deleted school, tells the app nothing new.
		if err := insertEndEvent(ctx, tx, tenantID, prev, state, actor, detail); err != nil {
			return Outcome{}, err
		}
	}
	out.SessionsEnded, out.SignInsEnded = counts["sessions"], counts["auth_flows"]
	detail["previous_state"], detail["state"], detail["deleted"] = prev, state, counts
	if err := audit(ctx, tx, tenantID, actor, action, detail); err != nil {
		return Outcome{}, err
	}
	return out, notifyTenantChanged(ctx, tx, tenantID)
}

// deletedTable names the table of a "DELETE FROM t WHERE ..." statement, for the audit detail.
func deletedTable(q string) string {
	var t string
	_, _ = fmt.Sscanf(q, "DELETE FROM %s", &t)
	return t
}

// insertReceipt records the body in the ledger, or returns errDuplicate when it is there
// already. A concurrent delivery of the same body waits on the primary key until the first
// commits, then sees it: exactly one applies.
func insertReceipt(ctx context.Context, tx pgx.Tx, rc Receipt) error {
	tag, err := tx.Exec(ctx, `INSERT INTO webhook_receipts (tenant_id, body_sha256, event_type) VALUES ($1, $2, $3)
		ON CONFLICT DO NOTHING`, rc.TenantID, rc.BodySHA256, rc.EventType)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return errDuplicate
	}
	return nil
}

// reviveReceipt decides about a deactivation body the ledger already holds. The platform's
// deactivation bodies carry no date or id: a school deactivated, reactivated and deactivated again
// sends the very same bytes twice. So a known deactivation body is a duplicate (errDuplicate) only
// while the school has had no new credentials since it was received; after a reactivation it is a
// new deactivation, and its receipt is renewed. A replayed deactivation can only ever take access
// away, never grant it; credentials bodies stay duplicates forever, so an old CREATED never
// revives a school. Concurrent deliveries queue on the school's row lock taken here, and the
// later ones find the renewed receipt.
func reviveReceipt(ctx context.Context, tx pgx.Tx, rc Receipt) error {
	if _, err := lockTenant(ctx, tx, rc.TenantID); err != nil {
		return err
	}
	var newer bool
	err := tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM tenant_credentials c WHERE c.tenant_id = $1 AND c.created_at >
		               (SELECT received_at FROM webhook_receipts WHERE tenant_id = $1 AND body_sha256 = $2))`,
		rc.TenantID, rc.BodySHA256).Scan(&newer)
	if err != nil {
		return err
	}
	if !newer {
		return errDuplicate
	}
	_, err = tx.Exec(ctx, `UPDATE webhook_receipts SET event_type = $3 WHERE tenant_id = $1 AND body_sha256 = $2`,
		rc.TenantID, rc.BodySHA256, rc.EventType)
	return err // the caller stamps received_at once it has applied the deactivation
}

// markWebhook records on the school which webhook changed it last (the console shows it).
func markWebhook(ctx context.Context, tx pgx.Tx, rc Receipt) error {
	_, err := tx.Exec(ctx, `UPDATE tenants SET last_webhook_at = now(), last_webhook_event = $2 WHERE tenant_id = $1`,
		rc.TenantID, rc.EventType)
	return err
}

// lockTenant locks the school's row for the rest of tx and returns its state ("" when unknown).
func lockTenant(ctx context.Context, tx pgx.Tx, tenantID string) (string, error) {
	var state string
	err := tx.QueryRow(ctx, `SELECT state FROM tenants WHERE tenant_id = $1 FOR UPDATE`, tenantID).Scan(&state)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return state, err
}

// audit writes one audit event. detail must never hold a secret value.
func audit(ctx context.Context, tx pgx.Tx, tenantID, actor, action string, detail map[string]any) error {
	b, err := json.Marshal(detail)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO audit_events (tenant_id, actor, action, detail) VALUES ($1, $2, $3, $4)`,
		tenantID, actor, action, b)
	return err
}

// receiptRef is a short reference to a receipt for the audit trail (a prefix of the body's
// SHA-256; the body itself, which holds secrets, is never kept).
func receiptRef(rc Receipt) string {
	return hex.EncodeToString(rc.BodySHA256[:min(8, len(rc.BodySHA256))])
}
