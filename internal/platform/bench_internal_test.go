package platform

import (
	"context"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/metrics"
)

// benchClients is a Clients with a warm cache entry for tenant "1001" and no store: a cache hit
// touches neither the store nor the network.
func benchClients() *Clients {
	c := &Clients{now: time.Now, tenants: map[string]*tenantState{}}
	c.m = newClientMetrics(metrics.NewRegistry(), c)
	far := time.Now().Add(time.Hour)
	c.state("1001").tok.Store(&cachedToken{authorization: "Bearer x", refreshAt: far, expiresAt: far})
	for _, id := range []string{"1002", "1003", "1004"} {
		c.state(id)
	}
	return c
}

func BenchmarkTokenCacheHit(b *testing.B) {
	c := benchClients()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.authorization(ctx, c.state("1001")); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenCacheHitParallel(b *testing.B) {
	c := benchClients()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.authorization(ctx, c.state("1001")); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestTokenCacheHitDoesNotAllocate(t *testing.T) {
	c := benchClients()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.authorization(ctx, c.state("1001")); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a cache hit allocates %.1f times", allocs)
	}
}
