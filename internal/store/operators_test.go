package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

func lcOperator(t *testing.T, s *store.Store, email string) store.Operator {
	t.Helper()
	o, err := s.OperatorByEmail(context.Background(), email)
	if err != nil {
		t.Fatalf("operator %s: %v", email, err)
	}
	return o
}

func lcOperatorSession(id string, operatorID int64, now time.Time) store.OperatorSession {
	return store.OperatorSession{IDHash: store.HashID(id), OperatorID: operatorID, CSRFToken: []byte("csrf-" + id),
		LastSeenAt: now, IdleExpiresAt: now.Add(30 * time.Minute), ExpiresAt: now.Add(8 * time.Hour)}
}

// lcConsole is a console sign-in limit per account and network.
var lcConsole = store.Limit{Scope: store.ScopeConsoleAccount, Burst: 2, Every: time.Hour}

func TestUpsertOperator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now().Truncate(time.Microsecond)
	if _, err := s.OperatorByEmail(ctx, "ops@example"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown operator: %v", err)
	}
	created, err := s.UpsertOperator(ctx, "ops@example", "hash-1")
	if err != nil || !created {
		t.Fatalf("first upsert: %v %v", created, err)
	}
	if created, err := s.UpsertOperator(ctx, "other@example", "hash-o"); err != nil || !created {
		t.Fatalf("other: %v %v", created, err)
	}
	o := lcOperator(t, s, "ops@example")
	if o.Email != "ops@example" || o.PasswordHash != "hash-1" || o.LastLoginAt != nil {
		t.Errorf("operator %+v", o)
	}
	other := lcOperator(t, s, "other@example")
	// Hold both accounts back on a network and give both operators a session.
	for _, email := range []string{"ops@example", "other@example"} {
		for range 3 {
			lcAttempt(t, s, lcConsole, email, "192.0.2.1", now)
		}
	}
	for _, os := range []store.OperatorSession{lcOperatorSession("mine", o.ID, now), lcOperatorSession("theirs", other.ID, now)} {
		if err := s.CreateOperatorSession(ctx, os); err != nil {
			t.Fatal(err)
		}
	}

	// A reset: new hash, no limit held against the account, no session of that account.
	created, err = s.UpsertOperator(ctx, "ops@example", "hash-2")
	if err != nil || created {
		t.Fatalf("reset: %v %v", created, err)
	}
	o2 := lcOperator(t, s, "ops@example")
	if o2.ID != o.ID || o2.PasswordHash != "hash-2" {
		t.Errorf("after reset %+v", o2)
	}
	if _, err := s.OperatorSessionByID(ctx, store.HashID("mine"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the reset account's session survived: %v", err)
	}
	if os, err := s.OperatorSessionByID(ctx, store.HashID("theirs"), now); err != nil || os.Email != "other@example" {
		t.Errorf("the other account's session: %+v, %v", os, err)
	}
	if w := lcAttempt(t, s, lcConsole, "ops@example", "192.0.2.1", now); w != 0 {
		t.Errorf("attempt after the reset: wait %v", w)
	}
	if w := lcAttempt(t, s, lcConsole, "other@example", "192.0.2.1", now); w == 0 {
		t.Error("the reset of one account emptied another's limit")
	}
	var actions []string
	for _, e := range lcTrail(t, s, "") {
		actions = append(actions, e.Action+" "+fmt.Sprint(e.Detail["operator"]))
		if strings.Contains(fmt.Sprint(e.Detail), "hash-") {
			t.Errorf("the audit trail holds a password hash: %+v", e)
		}
	}
	if want := "operator.password_reset ops@example|operator.added other@example|operator.added ops@example"; strings.Join(actions, "|") != want {
		t.Errorf("operator trail %q", actions)
	}
	// E-mail addresses are stored lower-case; the schema refuses anything else.
	if _, err := s.UpsertOperator(ctx, "Ops@Example", "h"); err == nil {
		t.Error("an upper-case e-mail address was stored")
	}
}

func TestUnlockOperator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	for _, email := range []string{"ops@example", "other@example"} {
		if _, err := s.UpsertOperator(ctx, email, "h"); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, network := range []string{"192.0.2.1", "192.0.2.2", "2001:db8::/64"} {
		for range 3 {
			lcAttempt(t, s, lcConsole, "ops@example", network, now)
		}
	}
	for range 3 {
		lcAttempt(t, s, lcConsole, "other@example", "192.0.2.1", now)
	}
	n, err := s.UnlockOperator(ctx, "ops@example")
	if err != nil || n != 3 {
		t.Fatalf("unlock: %d, %v; want 3 networks", n, err)
	}
	for _, network := range []string{"192.0.2.1", "192.0.2.2", "2001:db8::/64"} {
		if w := lcAttempt(t, s, lcConsole, "ops@example", network, now); w != 0 {
			t.Errorf("after the unlock, %s waits %v", network, w)
		}
	}
	if w := lcAttempt(t, s, lcConsole, "other@example", "192.0.2.1", now); w == 0 {
		t.Error("unlocking one account unlocked another")
	}
	trail := lcTrail(t, s, "")
	if len(trail) == 0 || trail[0].Action != "operator.unlocked" || trail[0].Actor != "cli" ||
		trail[0].Detail["operator"] != "ops@example" || fmt.Sprint(trail[0].Detail["networks"]) != "3" {
		t.Errorf("audit %+v", trail[0])
	}
	// The attempts just made count again (one bucket per network); unlocking an account that is
	// not held back anywhere is fine; an unknown one is not found.
	if n, err := s.UnlockOperator(ctx, "ops@example"); err != nil || n != 3 {
		t.Errorf("second unlock: %d, %v", n, err)
	}
	if n, err := s.UnlockOperator(ctx, "ops@example"); err != nil || n != 0 {
		t.Errorf("third unlock: %d, %v", n, err)
	}
	if _, err := s.UnlockOperator(ctx, "nobody@example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown operator: %v", err)
	}
	// A sign-in is recorded.
	id := lcOperator(t, s, "ops@example").ID
	if err := s.RecordOperatorSignIn(ctx, id, now); err != nil {
		t.Fatal(err)
	}
	if o := lcOperator(t, s, "ops@example"); o.LastLoginAt == nil || !o.LastLoginAt.Equal(now) {
		t.Errorf("last sign-in %v", o.LastLoginAt)
	}
}

func TestOperatorSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	if _, err := s.UpsertOperator(ctx, "ops@example", "h"); err != nil {
		t.Fatal(err)
	}
	id := lcOperator(t, s, "ops@example").ID
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	for _, sid := range []string{"s1", "s2"} {
		if err := s.CreateOperatorSession(ctx, lcOperatorSession(sid, id, now)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateOperatorSession(ctx, lcOperatorSession("orphan", 999999, now)); err == nil {
		t.Error("a session of an unknown operator was stored")
	}
	os, err := s.OperatorSessionByID(ctx, store.HashID("s1"), now)
	if err != nil || os.OperatorID != id || os.Email != "ops@example" || string(os.CSRFToken) != "csrf-s1" ||
		!os.IdleExpiresAt.Equal(now.Add(30*time.Minute)) || !os.ExpiresAt.Equal(now.Add(8*time.Hour)) {
		t.Fatalf("session %+v, %v", os, err)
	}
	if _, err := s.OperatorSessionByID(ctx, store.HashID("nope"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown session: %v", err)
	}
	// Idle expiry.
	if _, err := s.OperatorSessionByID(ctx, store.HashID("s1"), now.Add(30*time.Minute)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("idle session: %v", err)
	}
	// Activity moves the idle expiry, never past the absolute one.
	if err := s.TouchOperatorSession(ctx, store.HashID("s1"), now.Add(20*time.Minute), now.Add(50*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if os, err := s.OperatorSessionByID(ctx, store.HashID("s1"), now.Add(40*time.Minute)); err != nil ||
		!os.IdleExpiresAt.Equal(now.Add(50*time.Minute)) || !os.LastSeenAt.Equal(now.Add(20*time.Minute)) {
		t.Errorf("touched session %+v, %v", os, err)
	}
	if err := s.TouchOperatorSession(ctx, store.HashID("s1"), now.Add(45*time.Minute), now.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if os, err := s.OperatorSessionByID(ctx, store.HashID("s1"), now.Add(7*time.Hour)); err != nil || !os.IdleExpiresAt.Equal(os.ExpiresAt) {
		t.Errorf("touch beyond the absolute expiry: %+v, %v", os, err)
	}
	// Absolute expiry.
	if _, err := s.OperatorSessionByID(ctx, store.HashID("s1"), now.Add(8*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session past its absolute expiry: %v", err)
	}
	// Sign-out ends that session only.
	if err := s.DeleteOperatorSession(ctx, store.HashID("s2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OperatorSessionByID(ctx, store.HashID("s2"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted session: %v", err)
	}
	if _, err := s.OperatorSessionByID(ctx, store.HashID("s1"), now); err != nil {
		t.Errorf("the other session: %v", err)
	}
}

func TestSweepExpiredOperatorSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	if _, err := s.UpsertOperator(ctx, "ops@example", "h"); err != nil {
		t.Fatal(err)
	}
	id := lcOperator(t, s, "ops@example").ID
	now := time.Now().Truncate(time.Microsecond)
	live := lcOperatorSession("live", id, now)
	idle := lcOperatorSession("idle", id, now)
	idle.IdleExpiresAt = now.Add(-time.Second)
	expired := lcOperatorSession("expired", id, now.Add(-9*time.Hour))
	expired.IdleExpiresAt = now.Add(time.Hour) // idle-wise alive, but past its absolute expiry
	for _, os := range []store.OperatorSession{live, idle, expired} {
		if err := s.CreateOperatorSession(ctx, os); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.SweepExpired(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	if n := lcCount(t, s, `SELECT count(*) FROM operator_sessions`); n != 1 {
		t.Errorf("%d console sessions left, want 1", n)
	}
	if _, err := s.OperatorSessionByID(ctx, store.HashID("live"), now); err != nil {
		t.Errorf("the sweep removed a live console session: %v", err)
	}
}
