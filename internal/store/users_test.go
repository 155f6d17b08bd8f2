package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// A user is found by school and sub only: the same sub in another school is another user, and
// a sub that never signed in is not found.
func TestUserIsFoundBySchoolAndSubOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	for _, id := range []string{"a", "b"} {
		if err := s.UpsertTenant(ctx, id, store.StateActive, "School "+id); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for i, tenant := range []string{"a", "b"} {
		_, err := s.CreateLogin(ctx, store.Login{
			User: store.User{TenantID: tenant, Sub: "u1", Role: "teacher", GivenName: "Jürgen " + tenant, FamilyName: "F",
				Email: "u1@" + tenant, Orgs: []store.OrgRef{{SourcedID: "org-" + tenant, Type: "school"}}},
			SessionIDHash: hash(string(rune('x' + i))), CSRFToken: []byte("c"), Now: now,
			IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	u, err := s.User(ctx, "b", "u1")
	if err != nil {
		t.Fatal(err)
	}
	if u.TenantID != "b" || u.Sub != "u1" || u.Role != "teacher" || u.GivenName != "Jürgen b" || u.Email != "u1@b" ||
		len(u.Orgs) != 1 || u.Orgs[0].SourcedID != "org-b" {
		t.Errorf("user b/u1 = %+v", u)
	}
	for _, k := range [][2]string{{"a", "u2"}, {"c", "u1"}, {"", "u1"}} {
		if _, err := s.User(ctx, k[0], k[1]); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("user %s/%s: %v, want ErrNotFound", k[0], k[1], err)
		}
	}
}
