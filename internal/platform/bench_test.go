package platform_test

import (
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// BenchmarkOneRosterUserRoundTrip is one users/{id} call against the in-process simulator over
// loopback HTTP, with a warm token cache.
func BenchmarkOneRosterUserRoundTrip(b *testing.B) {
	e := newEnv(b, options{})
	tid := e.school(platformsim.TenantSpec{ID: "4001"})
	u := e.user(tid, platformsim.RoleTeacher)
	cl := e.clients.For(tid)
	ctx := e.ctx()
	if _, err := cl.User(ctx, u.SourcedID); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.User(ctx, u.SourcedID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOneRosterUserRoundTripParallel(b *testing.B) {
	e := newEnv(b, options{})
	tid := e.school(platformsim.TenantSpec{ID: "4002"})
	u := e.user(tid, platformsim.RoleTeacher)
	cl := e.clients.For(tid)
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
