package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/untis-partner/server/internal/store"
)

// TestTenantEnding: who ended a school is read from the newest ending event of its own trail,
// only while the school is ended; another school's events never count.
func TestTenantEnding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	if _, err := s.TenantEnding(ctx, "7101"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown school: %v, want ErrNotFound", err)
	}
	receive := func(tid, event, body string) {
		t.Helper()
		sum := sha256.Sum256([]byte(body))
		rc := store.Receipt{TenantID: tid, BodySHA256: sum[:], EventType: event}
		var err error
		switch event {
		case "DEACTIVATION", "DELETION":
			_, err = s.ReceiveDeactivation(ctx, rc, event == "DELETION", "NO_REASON", "")
		default:
			_, err = s.ReceiveCredentials(ctx, rc, store.Credentials{ClientID: "app", Secret: "s-" + body, Password: "p-" + body}, store.TenantInfo{}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	check := func(tid string, want store.Ending) {
		t.Helper()
		got, err := s.TenantEnding(ctx, tid)
		if err != nil || got != want {
			t.Errorf("school %s: %+v (%v), want %+v", tid, got, err, want)
		}
	}

	receive("7101", "CREATED", "a1")
	check("7101", store.Ending{State: store.StateActive})
	receive("7101", "DEACTIVATION", "a2")
	check("7101", store.Ending{State: store.StateDeactivated, Ended: true})
	receive("7101", "REACTIVATED", "a3")
	check("7101", store.Ending{State: store.StateActive})
	if _, err := s.EndTenant(ctx, "7101", false, "operator ops@partner.example", nil); err != nil {
		t.Fatal(err)
	}
	check("7101", store.Ending{State: store.StateDeactivated, Ended: true, ByOperator: true})
	// The platform deletes it after the operator's deactivation: now the platform ended it.
	receive("7101", "DELETION", "a4")
	check("7101", store.Ending{State: store.StateDeleted, Ended: true, Deletion: true})

	// Another school's operator ending does not leak into this one's.
	receive("7102", "CREATED", "b1")
	if _, err := s.EndTenant(ctx, "7102", true, "operator ops@partner.example", nil); err != nil {
		t.Fatal(err)
	}
	check("7102", store.Ending{State: store.StateDeleted, Ended: true, ByOperator: true, Deletion: true})
	receive("7103", "CREATED", "c1")
	receive("7103", "DEACTIVATION", "c2")
	check("7103", store.Ending{State: store.StateDeactivated, Ended: true})
	// A school set deactivated without a trail (data from before the audit trail): not known.
	if err := s.UpsertTenant(ctx, "7104", store.StateDeactivated, ""); err != nil {
		t.Fatal(err)
	}
	check("7104", store.Ending{State: store.StateDeactivated})
}
