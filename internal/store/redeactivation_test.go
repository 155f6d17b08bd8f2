package store_test

import (
	"context"
	"crypto/sha256"
	"testing"

	"github.com/untis-partner/server/internal/store"
)

// The platform's deactivation bodies carry no date: deactivate, reactivate, deactivate sends the
// same bytes twice. The second must deactivate again, while a plain redelivery stays a duplicate
// and an old credentials body stays a duplicate forever.
func TestRepeatedDeactivationBodyAfterReactivation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	receipt := func(event, body string) store.Receipt {
		sum := sha256.Sum256([]byte(body))
		return store.Receipt{TenantID: "7001", BodySHA256: sum[:], EventType: event}
	}
	creds := func(pw string) store.Credentials {
		return store.Credentials{ClientID: "app", Secret: "s-" + pw, Password: pw}
	}
	state := func() string {
		t.Helper()
		tn, err := s.Tenant(ctx, "7001")
		if err != nil {
			t.Fatal(err)
		}
		return tn.State
	}
	deactivation := receipt("DEACTIVATION", `{"tenantId":"7001","eventType":"DEACTIVATION","reasonType":"NO_REASON"}`)

	if _, err := s.ReceiveCredentials(ctx, receipt("CREATED", "created"), creds("p1"), store.TenantInfo{}, nil); err != nil {
		t.Fatal(err)
	}
	out, err := s.ReceiveDeactivation(ctx, deactivation, false, "NO_REASON", "")
	if err != nil || out.Duplicate || state() != store.StateDeactivated {
		t.Fatalf("first deactivation: %+v, %v, state %s", out, err, state())
	}
	// A redelivery right after: a duplicate.
	if out, err := s.ReceiveDeactivation(ctx, deactivation, false, "NO_REASON", ""); err != nil || !out.Duplicate {
		t.Fatalf("redelivery: %+v, %v; want a duplicate", out, err)
	}
	// The old CREATED body replayed: still a duplicate, the school stays deactivated.
	if out, err := s.ReceiveCredentials(ctx, receipt("CREATED", "created"), creds("p1"), store.TenantInfo{}, nil); err != nil || !out.Duplicate {
		t.Fatalf("replayed CREATED: %+v, %v; want a duplicate", out, err)
	}
	if state() != store.StateDeactivated {
		t.Fatalf("a replayed CREATED revived the school: %s", state())
	}
	// Reactivated, then the same deactivation bytes again: a new deactivation.
	if _, err := s.ReceiveCredentials(ctx, receipt("REACTIVATED", "reactivated"), creds("p2"), store.TenantInfo{}, nil); err != nil || state() != store.StateActive {
		t.Fatalf("reactivation: %v, state %s", err, state())
	}
	out, err = s.ReceiveDeactivation(ctx, deactivation, false, "NO_REASON", "")
	if err != nil || out.Duplicate || state() != store.StateDeactivated {
		t.Fatalf("second deactivation with the same body: %+v, %v, state %s", out, err, state())
	}
	if _, err := s.CurrentCredentials(ctx, "7001"); err != store.ErrNotFound {
		t.Fatalf("credentials after the second deactivation: %v, want ErrNotFound", err)
	}
	if out, err := s.ReceiveDeactivation(ctx, deactivation, false, "NO_REASON", ""); err != nil || !out.Duplicate {
		t.Fatalf("redelivery of the second: %+v, %v; want a duplicate", out, err)
	}
}
