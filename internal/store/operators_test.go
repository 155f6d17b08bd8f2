package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// lcLockFor is a lock schedule: ten minutes per failure.
func lcLockFor(failures int) time.Duration { return time.Duration(failures) * 10 * time.Minute }

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
	if o.Email != "ops@example" || o.PasswordHash != "hash-1" || o.FailedAttempts != 0 || o.LockedUntil != nil || o.LastLoginAt != nil {
		t.Errorf("operator %+v", o)
	}
	other := lcOperator(t, s, "other@example")
	// Lock the account and give both operators a session.
	for i := 0; i < 5; i++ {
		if err := s.BeginOperatorAttempt(ctx, o.ID, now, 5, lcLockFor); err != nil {
			t.Fatal(err)
		}
	}
	if o := lcOperator(t, s, "ops@example"); o.FailedAttempts != 5 || o.LockedUntil == nil {
		t.Fatalf("not locked: %+v", o)
	}
	for _, os := range []store.OperatorSession{lcOperatorSession("mine", o.ID, now), lcOperatorSession("theirs", other.ID, now)} {
		if err := s.CreateOperatorSession(ctx, os); err != nil {
			t.Fatal(err)
		}
	}

	// A reset: new hash, no failures, no lock, no session of that account.
	created, err = s.UpsertOperator(ctx, "ops@example", "hash-2")
	if err != nil || created {
		t.Fatalf("reset: %v %v", created, err)
	}
	o2 := lcOperator(t, s, "ops@example")
	if o2.ID != o.ID || o2.PasswordHash != "hash-2" || o2.FailedAttempts != 0 || o2.LockedUntil != nil {
		t.Errorf("after reset %+v", o2)
	}
	if _, err := s.OperatorSessionByID(ctx, store.HashID("mine"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the reset account's session survived: %v", err)
	}
	if os, err := s.OperatorSessionByID(ctx, store.HashID("theirs"), now); err != nil || os.Email != "other@example" {
		t.Errorf("the other account's session: %+v, %v", os, err)
	}
	if err := s.BeginOperatorAttempt(ctx, o.ID, now, 5, lcLockFor); err != nil {
		t.Errorf("attempt after the reset: %v", err)
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

func TestOperatorAttemptsLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	if _, err := s.UpsertOperator(ctx, "ops@example", "h"); err != nil {
		t.Fatal(err)
	}
	id := lcOperator(t, s, "ops@example").ID
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	lockFor := lcLockFor
	// Attempts 1..5 are checked; the fifth locks the ones after it.
	for i := 1; i <= 5; i++ {
		if err := s.BeginOperatorAttempt(ctx, id, now, 5, lockFor); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		o := lcOperator(t, s, "ops@example")
		if o.FailedAttempts != i {
			t.Fatalf("attempt %d counted as %d", i, o.FailedAttempts)
		}
		if (o.LockedUntil != nil) != (i == 5) {
			t.Fatalf("attempt %d: locked until %v", i, o.LockedUntil)
		}
	}
	until := now.Add(lcLockFor(5))
	if o := lcOperator(t, s, "ops@example"); !o.LockedUntil.Equal(until) {
		t.Errorf("locked until %v, want %v", o.LockedUntil, until)
	}
	// While locked: refused, and the counter does not grow.
	for _, at := range []time.Time{now, now.Add(time.Minute), until.Add(-time.Second)} {
		err := s.BeginOperatorAttempt(ctx, id, at, 5, lockFor)
		var locked *store.ErrLocked
		if !errors.As(err, &locked) || !locked.Until.Equal(until) {
			t.Fatalf("attempt at %v while locked: %v", at, err)
		}
		if o := lcOperator(t, s, "ops@example"); o.FailedAttempts != 5 {
			t.Fatalf("a locked attempt was counted: %d", o.FailedAttempts)
		}
	}
	// After the lock: one more attempt is checked and locks again, for longer.
	later := until.Add(time.Second)
	if err := s.BeginOperatorAttempt(ctx, id, later, 5, lockFor); err != nil {
		t.Fatalf("attempt after the lock: %v", err)
	}
	var locked *store.ErrLocked
	if err := s.BeginOperatorAttempt(ctx, id, later, 5, lockFor); !errors.As(err, &locked) || !locked.Until.Equal(later.Add(lcLockFor(6))) {
		t.Fatalf("attempt after the sixth failure: %v", err)
	}
	// A success clears everything.
	signedIn := later.Add(2 * time.Hour)
	if err := s.SucceedOperatorAttempt(ctx, id, signedIn); err != nil {
		t.Fatal(err)
	}
	o := lcOperator(t, s, "ops@example")
	if o.FailedAttempts != 0 || o.LockedUntil != nil || o.LastLoginAt == nil || !o.LastLoginAt.Equal(signedIn) {
		t.Errorf("after success %+v", o)
	}
	if err := s.BeginOperatorAttempt(ctx, id, signedIn, 5, lockFor); err != nil {
		t.Errorf("attempt after success: %v", err)
	}
	if err := s.BeginOperatorAttempt(ctx, 999999, now, 5, lockFor); err == nil {
		t.Error("an attempt for an unknown operator was accepted")
	}
}

// Parallel guesses must not outrun the lock: of many simultaneous attempts, at most freeAttempts
// get their password checked.
func TestOperatorAttemptsInParallel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const freeAttempts, parallel, rounds = 5, 20, 5
	for round := range rounds {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			t.Parallel()
			s := newStore(t, keyring(t))
			if _, err := s.UpsertOperator(ctx, "ops@example", "h"); err != nil {
				t.Fatal(err)
			}
			id := lcOperator(t, s, "ops@example").ID
			now := time.Now()
			// wave runs parallel attempts at once and reports how many were let through.
			wave := func(at time.Time) int {
				start := make(chan struct{})
				var (
					wg              sync.WaitGroup
					mu              sync.Mutex
					through, refuse int
				)
				for range parallel {
					wg.Go(func() {
						<-start
						err := s.BeginOperatorAttempt(ctx, id, at, freeAttempts, lcLockFor)
						var locked *store.ErrLocked
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							through++
						case errors.As(err, &locked):
							refuse++
						default:
							t.Error(err)
						}
					})
				}
				close(start)
				wg.Wait()
				if through+refuse != parallel {
					t.Fatalf("%d let through + %d refused of %d", through, refuse, parallel)
				}
				return through
			}
			if n := wave(now); n != freeAttempts {
				t.Errorf("%d of %d parallel attempts were let through, want exactly %d", n, parallel, freeAttempts)
			}
			o := lcOperator(t, s, "ops@example")
			if o.LockedUntil == nil || o.FailedAttempts != freeAttempts {
				t.Fatalf("after the first wave: %+v", o)
			}
			// Once the lock is over, one more guess is checked and locks again.
			if n := wave(o.LockedUntil.Add(time.Second)); n != 1 {
				t.Errorf("after the lock: %d of %d parallel attempts were let through, want 1", n, parallel)
			}
			if o := lcOperator(t, s, "ops@example"); o.FailedAttempts != freeAttempts+1 {
				t.Errorf("after the second wave: %d failures, want %d", o.FailedAttempts, freeAttempts+1)
			}
		})
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
