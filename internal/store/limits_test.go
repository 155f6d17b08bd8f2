package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/store"
)

// lcAttempt counts one attempt and returns how long the client must wait (0: go ahead).
func lcAttempt(t *testing.T, s *store.Store, l store.Limit, subject, network string, at time.Time) time.Duration {
	t.Helper()
	wait, err := s.Attempt(context.Background(), l, subject, network, at)
	if err != nil {
		t.Fatal(err)
	}
	return wait
}

func TestAttemptLeakyBucket(t *testing.T) {
	t.Parallel()
	s := newStore(t, keyring(t))
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	l := store.Limit{Scope: "activate-school", Burst: 5, Every: 2 * time.Minute}
	const tenant, net1, net2 = "4711", "203.0.113.77", "2001:db8:1:2::/64"

	for i := range 5 {
		if w := lcAttempt(t, s, l, tenant, net1, base.Add(time.Duration(i)*time.Second)); w != 0 {
			t.Fatalf("attempt %d of the burst refused (wait %v)", i+1, w)
		}
	}
	// The sixth is refused, and told to wait until the bucket has leaked to one below the burst.
	w := lcAttempt(t, s, l, tenant, net1, base.Add(5*time.Second))
	if w <= 0 || w > l.Every+time.Second {
		t.Fatalf("attempt over the burst: wait %v", w)
	}
	// Another network, and the same network for another subject, have buckets of their own: no
	// client can use up someone else's attempts.
	if w := lcAttempt(t, s, l, tenant, net2, base.Add(5*time.Second)); w != 0 {
		t.Errorf("another network was refused: %v", w)
	}
	if w := lcAttempt(t, s, l, "4712", net1, base.Add(5*time.Second)); w != 0 {
		t.Errorf("another school from the same network was refused: %v", w)
	}
	// Retrying instead of waiting gains nothing: refused attempts do not count, and the next one
	// goes ahead when the bucket has leaked one attempt, as it was told.
	at := base.Add(5 * time.Second)
	for at.Before(base.Add(4*time.Second + w)) {
		if w := lcAttempt(t, s, l, tenant, net1, at); w == 0 {
			t.Fatalf("a client retrying every 10 s got through at %v, before the wait it was told", at.Sub(base))
		}
		at = at.Add(10 * time.Second)
	}
	at = base.Add(5*time.Second + w)
	if w := lcAttempt(t, s, l, tenant, net1, at); w != 0 {
		t.Fatalf("after waiting as told: wait %v", w)
	}
	if w := lcAttempt(t, s, l, tenant, net1, at); w == 0 || w > l.Every+time.Second {
		t.Fatalf("a second attempt right after: wait %v, want up to one leak", w)
	}
	// The counter decays: after Burst*Every of quiet, a full burst again.
	at = at.Add(5*l.Every + l.Every)
	for i := range 5 {
		if w := lcAttempt(t, s, l, tenant, net1, at); w != 0 {
			t.Fatalf("after a quiet spell, attempt %d refused (wait %v)", i+1, w)
		}
	}
	// A clock a little behind counts, and does not refill the bucket.
	if w := lcAttempt(t, s, l, tenant, net1, at.Add(-time.Minute)); w == 0 {
		t.Error("an attempt from a replica whose clock is behind went through over the burst")
	}

	// A limit that is off never counts.
	if w := lcAttempt(t, s, store.Limit{Scope: "off", Burst: 0, Every: time.Minute}, tenant, net1, base); w != 0 {
		t.Errorf("a limit with burst 0: %v", w)
	}

	// The table names no person, school or address: subject and network are hashes.
	lcScanForPlaintext(t, s, []string{tenant, net1, net2, "203.0.113", "2001:db8"})
}

func TestAttemptForgetAndClear(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now()
	l := store.Limit{Scope: store.ScopeConsoleAccount, Burst: 2, Every: time.Hour}
	fill := func(subject, network string) {
		t.Helper()
		for range 3 {
			lcAttempt(t, s, l, subject, network, now)
		}
		if lcAttempt(t, s, l, subject, network, now) == 0 {
			t.Fatalf("%s from %s is not held back", subject, network)
		}
	}
	fill("ops@example", "192.0.2.1")
	fill("ops@example", "192.0.2.2")
	fill("other@example", "192.0.2.1")

	// Forgetting empties one network's bucket of one subject.
	if err := s.ForgetAttempts(ctx, l.Scope, "ops@example", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if w := lcAttempt(t, s, l, "ops@example", "192.0.2.1", now); w != 0 {
		t.Errorf("after forgetting: %v", w)
	}
	if lcAttempt(t, s, l, "ops@example", "192.0.2.2", now) == 0 || lcAttempt(t, s, l, "other@example", "192.0.2.1", now) == 0 {
		t.Error("forgetting one bucket emptied another")
	}
	// Clearing empties every network's bucket of one subject, and no one else's.
	n, err := s.ClearAttempts(ctx, l.Scope, "ops@example")
	if err != nil || n != 2 {
		t.Fatalf("clear: %d, %v", n, err)
	}
	if lcAttempt(t, s, l, "ops@example", "192.0.2.2", now) != 0 {
		t.Error("a cleared bucket still holds back")
	}
	if lcAttempt(t, s, l, "other@example", "192.0.2.1", now) == 0 {
		t.Error("clearing one subject emptied another's bucket")
	}
}

// Parallel attempts cannot outrun a bucket: of many at once, exactly Burst go ahead.
func TestAttemptConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now()
	l := store.Limit{Scope: "console-account", Burst: 5, Every: 12 * time.Minute}
	const n = 30
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		through int
	)
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			wait, err := s.Attempt(ctx, l, "ops@example", "192.0.2.9", now)
			if err != nil {
				t.Error(err)
				return
			}
			if wait == 0 {
				mu.Lock()
				through++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if through != l.Burst {
		t.Errorf("%d of %d parallel attempts went ahead, want exactly %d", through, n, l.Burst)
	}
}

func TestSweepLeakedRateLimitBuckets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now()
	l := func(scope string) store.Limit { return store.Limit{Scope: scope, Burst: 5, Every: time.Minute} }
	lcAttempt(t, s, l("old"), "", "k", now.Add(-49*time.Hour))
	lcAttempt(t, s, l("yesterday"), "", "k", now.Add(-25*time.Hour))
	lcAttempt(t, s, l("recent"), "", "k", now.Add(-2*time.Hour))
	lcAttempt(t, s, l("now"), "", "k", now)
	if _, _, err := s.SweepExpired(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Pool().Query(ctx, `SELECT scope FROM attempt_buckets ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{"now", "recent"}) {
		t.Errorf("buckets left after the sweep: %v, want [now recent]", left)
	}
}

// Text the database cannot hold is recognised as bad input wherever it reaches a query: a NUL
// byte or invalid UTF-8 in a text parameter (22021), \u0000 in a jsonb value (22P05).
func TestIsInvalidText(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	for name, value := range map[string]string{"NUL": "ops\x00@example", "invalid UTF-8": "ops\xff@example"} {
		_, err := s.OperatorByEmail(ctx, value)
		if err == nil || errors.Is(err, store.ErrNotFound) || !store.IsInvalidText(err) {
			t.Errorf("%s: %v, want an invalid-text error", name, err)
		}
	}
	_, err := s.Pool().Exec(ctx, `SELECT $1::jsonb`, `{"reason":"a\u0000b"}`)
	if err == nil || !store.IsInvalidText(err) {
		t.Errorf("\\u0000 in jsonb: %v", err)
	}
	if !store.IsInvalidText(fmt.Errorf("wrapped: %w", store.ErrInvalidText)) {
		t.Error("a wrapped ErrInvalidText is not recognised")
	}
	for _, err := range []error{nil, errors.New("connection refused"), store.ErrNotFound} {
		if store.IsInvalidText(err) {
			t.Errorf("%v taken for invalid text", err)
		}
	}
	// Other database errors are not bad input.
	_, err = s.Pool().Exec(ctx, `SELECT 1/0`)
	if store.IsInvalidText(err) || !strings.Contains(fmt.Sprint(err), "division") {
		t.Errorf("division by zero: %v", err)
	}
}
