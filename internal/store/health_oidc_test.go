package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// TestOIDCSecretMark: a mark that the OIDC secret was refused is cleared only by a sign-in's
// accepted code exchange (ClearOIDCSecretRefused) of the newest credentials, never by a
// server-to-server success (ClearCredentialsFailing), which proves only the password; and the
// other way round.
func TestOIDCSecretMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t, key("k", 1)))
	if err := s.UpsertTenant(ctx, "a", store.StateActive, ""); err != nil {
		t.Fatal(err)
	}
	v1 := addCreds(t, s, "a", "p1")
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	oidcReason := store.OIDCSecretRefused + ": the token endpoint answered 401 invalid_client"
	marked := func() (bool, string) {
		t.Helper()
		tn, err := s.Tenant(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		return tn.CredentialsFailingSince != nil, tn.CredentialsFailureReason
	}

	if ok, err := s.MarkCredentialsFailing(ctx, "a", v1, oidcReason, at); !ok || err != nil {
		t.Fatalf("mark: %v %v", ok, err)
	}
	if err := s.ClearCredentialsFailing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if m, r := marked(); !m || r != oidcReason {
		t.Fatalf("a server-to-server success cleared the OIDC secret mark: %v %q", m, r)
	}
	if cleared, err := s.ClearOIDCSecretRefused(ctx, "b-unknown", v1); cleared || err != nil {
		t.Errorf("unknown tenant: %v %v", cleared, err)
	}
	if cleared, err := s.ClearOIDCSecretRefused(ctx, "a", v1); !cleared || err != nil {
		t.Fatalf("clear: %v %v", cleared, err)
	}
	if m, r := marked(); m || r != "" {
		t.Fatalf("after the clear: %v %q", m, r)
	}
	if cleared, _ := s.ClearOIDCSecretRefused(ctx, "a", v1); cleared {
		t.Error("a second clear reported a mark")
	}

	// A mark of the password is not cleared by a sign-in.
	if ok, _ := s.MarkCredentialsFailing(ctx, "a", v1, "a freshly fetched token was refused with 401", at); !ok {
		t.Fatal("password mark not written")
	}
	if cleared, err := s.ClearOIDCSecretRefused(ctx, "a", v1); cleared || err != nil {
		t.Errorf("a sign-in cleared the password's mark: %v %v", cleared, err)
	}
	if err := s.ClearCredentialsFailing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if m, _ := marked(); m {
		t.Error("the server-to-server success did not clear the password's mark")
	}

	// A sign-in that used older credentials does not clear the mark of newer ones.
	v2 := addCreds(t, s, "a", "p2")
	if ok, _ := s.MarkCredentialsFailing(ctx, "a", v2, oidcReason, at); !ok {
		t.Fatal("mark of v2 not written")
	}
	if cleared, _ := s.ClearOIDCSecretRefused(ctx, "a", v1); cleared {
		t.Error("a success with version 1 cleared the mark of version 2")
	}
	if cleared, _ := s.ClearOIDCSecretRefused(ctx, "a", v2); !cleared {
		t.Error("a success with version 2 did not clear its mark")
	}
}
