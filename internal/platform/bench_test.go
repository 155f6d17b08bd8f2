package platform_test

import (
	"testing"
)

// BenchmarkOneRosterUserRoundTrip is one users/{id} call against the in-process simulator over
// loopback HTTP, with a warm token cache.
func BenchmarkOneRosterUserRoundTrip(b *testing.B) {
	e := newEnv(b, options{})
	_, u, cl := e.warmSchool("4001")
	ctx := e.ctx()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.User(ctx, u.SourcedID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOneRosterUserRoundTripParallel(b *testing.B) {
	e := newEnv(b, options{})
	_, u, cl := e.warmSchool("4002")
	ctx := e.ctx()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cl.User(ctx, u.SourcedID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
