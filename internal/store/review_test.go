package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// The public activation page must not undo an operator's deactivation (leaked credentials stay
// valid at the platform); a platform reactivation, or an operator, may bring the school back, and
// a school the platform deactivated may be activated by hand (onboarding scenario 3).
func TestManualActivationAfterAnOperatorsDeactivation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	manual := store.Credentials{ClientID: "app", Secret: "s", Password: "p", Source: store.SourceManual}
	operator := manual
	operator.Source = store.SourceOperator

	lcCredentialsEvent(t, s, "A", "CREATED", "a-created", nil)
	if _, err := s.EndTenant(ctx, "A", false, "operator ops@example.com", nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.ActivateWithCredentials(ctx, "A", manual, "activation page", nil); !errors.Is(err, store.ErrEndedByOperator) {
		t.Fatalf("manual activation after an operator's deactivation: %v, want ErrEndedByOperator", err)
	}
	if got := lcState(t, s, "A"); got != store.StateDeactivated || lcVersions(t, s, "A") != 0 {
		t.Fatalf("school %q with %d credentials after a refused activation", got, lcVersions(t, s, "A"))
	}
	if _, state, err := s.ActivateWithCredentials(ctx, "A", operator, "operator ops@example.com", nil); err != nil || state != store.StateActive {
		t.Fatalf("an operator's activation: %v, state %q", err, state)
	}

	lcCredentialsEvent(t, s, "B", "CREATED", "b-created", nil)
	lcEndEvent(t, s, "B", "b-deactivation", false)
	if _, state, err := s.ActivateWithCredentials(ctx, "B", manual, "activation page", nil); err != nil || state != store.StateActive {
		t.Fatalf("manual activation after the platform's deactivation: %v, state %q", err, state)
	}
}

// A refusal of version 1 that waits for a RESET storing version 2 must not mark version 2
// failing once the RESET commits.
func TestFailingMarkWaitsForARacingReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "T", "CREATED", "created", nil)

	// The RESET holds the school's row while the mark is attempted.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM tenants WHERE tenant_id = 'T' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO tenant_credentials (tenant_id, version, client_id, secret_sealed, password_sealed, source)
		SELECT tenant_id, 2, client_id, secret_sealed, password_sealed, source FROM tenant_credentials WHERE tenant_id = 'T' AND version = 1`); err != nil {
		t.Fatal(err)
	}
	type result struct {
		marked bool
		err    error
	}
	done := make(chan result, 1)
	go func() {
		marked, err := s.MarkCredentialsFailing(ctx, "T", 1, "refused", time.Now())
		done <- result{marked, err}
	}()
	lcWaitForLockWaiters(t, s, 1)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.marked {
		t.Fatalf("mark of version 1 after version 2 committed: marked=%v err=%v; want nothing marked", r.marked, r.err)
	}
	tn, err := s.Tenant(ctx, "T")
	if err != nil || tn.CredentialsFailingSince != nil {
		t.Fatalf("school marked failing: %+v, %v", tn.CredentialsFailingSince, err)
	}
	// A deactivated school is not marked either.
	lcEndEvent(t, s, "T", "deactivation", false)
	if marked, err := s.MarkCredentialsFailing(ctx, "T", 2, "refused", time.Now()); err != nil || marked {
		t.Fatalf("mark of a deactivated school: marked=%v err=%v", marked, err)
	}
}

// A refusal of the credentials a deactivation wiped must not mark the ones a reactivation
// stored after it: version numbers are never given twice.
func TestFailingMarkOfWipedCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "T", "CREATED", "created", nil)
	old, err := s.ActiveCredentials(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	lcEndEvent(t, s, "T", "deactivation", false)
	out := lcCredentialsEvent(t, s, "T", "REACTIVATED", "reactivated", nil)
	if out.Version == old.Version {
		t.Fatalf("the reactivation's credentials got version %d again", out.Version)
	}
	if marked, err := s.MarkCredentialsFailing(ctx, "T", old.Version, "refused", time.Now()); err != nil || marked {
		t.Fatalf("a late refusal of the wiped version %d marked the new credentials: %v %v", old.Version, marked, err)
	}
}
