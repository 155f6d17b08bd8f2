package store_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/store"
)

func lcHit(t *testing.T, s *store.Store, scope, key string, now time.Time) int {
	t.Helper()
	n, err := s.HitLimit(context.Background(), scope, key, time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHitLimitWindows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	const ip, tenant, email = "203.0.113.77", "4711", "ops@example.org"

	for i, at := range []time.Duration{0, 10 * time.Second, 59 * time.Second} {
		if n := lcHit(t, s, "activate-ip", ip, base.Add(at)); n != i+1 {
			t.Fatalf("hit %d in one window counted %d", i+1, n)
		}
	}
	// Other keys and other scopes count on their own.
	if n := lcHit(t, s, "activate-ip", "198.51.100.1", base); n != 1 {
		t.Errorf("another key: %d", n)
	}
	if n := lcHit(t, s, "activate-tenant", ip, base); n != 1 {
		t.Errorf("the same key in another scope: %d", n)
	}
	if n := lcHit(t, s, "activate-tenant", tenant, base); n != 1 {
		t.Errorf("tenant: %d", n)
	}
	if n := lcHit(t, s, "console-email", email, base); n != 1 {
		t.Errorf("email: %d", n)
	}
	// The next window starts over.
	if n := lcHit(t, s, "activate-ip", ip, base.Add(time.Minute)); n != 1 {
		t.Errorf("first hit of the next window counted %d", n)
	}
	if n := lcHit(t, s, "activate-ip", ip, base.Add(time.Minute+30*time.Second)); n != 2 {
		t.Errorf("second hit of the next window counted %d", n)
	}
	// The other buckets were not touched by it.
	if n := lcHit(t, s, "activate-ip", "198.51.100.1", base.Add(30*time.Second)); n != 2 {
		t.Errorf("another key, second hit: %d", n)
	}
	// Longer windows work the same way.
	for i := 1; i <= 3; i++ {
		n, err := s.HitLimit(ctx, "hourly", ip, time.Hour, base.Add(time.Duration(i)*10*time.Minute))
		if err != nil || n != i {
			t.Errorf("hourly hit %d: %d, %v", i, n, err)
		}
	}

	// The table names no person: every bucket is the scope and a hash.
	rows, err := s.Pool().Query(ctx, `SELECT bucket FROM attempt_limits`)
	if err != nil {
		t.Fatal(err)
	}
	buckets, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(buckets) != 6 {
		t.Errorf("%d buckets: %v", len(buckets), buckets)
	}
	for _, b := range buckets {
		for _, k := range []string{ip, "198.51.100.1", tenant, email, "ops@", "203.0.113"} {
			if strings.Contains(b, k) {
				t.Errorf("bucket %q holds the key %q", b, k)
			}
		}
		scope, hash, ok := strings.Cut(b, ":")
		if !ok || scope == "" || len(hash) < 32 {
			t.Errorf("bucket %q is not scope:hash", b)
		}
	}
	lcScanForPlaintext(t, s, []string{ip, tenant, email})
}

func TestHitLimitConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now()
	const n = 20
	counts := make([]int, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			c, err := s.HitLimit(ctx, "activate-ip", "192.0.2.9", time.Hour, now)
			if err != nil {
				t.Error(err)
			}
			counts[i] = c
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(counts)
	for i, c := range counts {
		if c != i+1 {
			t.Fatalf("counts %v, want 1..%d, each once", counts, n)
		}
	}
}

func TestSweepExpiredRateLimitCounters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now()
	lcHit(t, s, "old", "k", now.Add(-49*time.Hour))
	lcHit(t, s, "yesterday", "k", now.Add(-25*time.Hour))
	lcHit(t, s, "recent", "k", now.Add(-2*time.Hour))
	lcHit(t, s, "now", "k", now)
	if _, _, err := s.SweepExpired(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Pool().Query(ctx, `SELECT split_part(bucket, ':', 1) FROM attempt_limits ORDER BY 1`)
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
	// A swept bucket starts over.
	if n := lcHit(t, s, "old", "k", now); n != 1 {
		t.Errorf("a swept bucket counted %d", n)
	}
}
