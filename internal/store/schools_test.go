package store_test

import (
	"context"
	"slices"
	"testing"

	"github.com/untis-partner/server/internal/store"
)

// ListSchools pages through the schools in id order, and keeps to the states asked for.
func TestListSchoolsPagesAndFiltersByState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	states := map[string]string{
		"a1": store.StateActive, "a2": store.StatePendingSetup, "b1": store.StateActive,
		"b2": store.StateDeactivated, "c1": store.StateDeleted, "c2": store.StateActive,
	}
	for id, state := range states {
		if err := s.UpsertTenant(ctx, id, state, "School "+id); err != nil {
			t.Fatal(err)
		}
	}
	walk := func(limit int, filter []string) ([]string, int) {
		t.Helper()
		var ids []string
		pages, after := 0, ""
		for {
			page, err := s.ListSchools(ctx, after, limit, filter)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, tn := range page {
				ids = append(ids, tn.ID)
				if tn.Name != "School "+tn.ID || tn.State != states[tn.ID] {
					t.Errorf("school %s: %q %s", tn.ID, tn.Name, tn.State)
				}
			}
			if len(page) < limit {
				return ids, pages
			}
			after = page[len(page)-1].ID
		}
	}
	if ids, pages := walk(4, nil); !slices.Equal(ids, []string{"a1", "a2", "b1", "b2", "c1", "c2"}) || pages != 2 {
		t.Errorf("all schools: %v in %d pages", ids, pages)
	}
	if ids, _ := walk(1, []string{store.StateActive, store.StatePendingSetup}); !slices.Equal(ids, []string{"a1", "a2", "b1", "c2"}) {
		t.Errorf("reachable schools: %v", ids)
	}
	if ids, _ := walk(10, []string{store.StateDeleted}); !slices.Equal(ids, []string{"c1"}) {
		t.Errorf("deleted schools: %v", ids)
	}
	if ids, _ := walk(10, []string{"no-such-state"}); len(ids) != 0 {
		t.Errorf("an unknown state lists %v", ids)
	}
}
