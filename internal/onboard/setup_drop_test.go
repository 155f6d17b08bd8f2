package onboard_test

import (
	"context"
	"net/url"
	"slices"
	"testing"

	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
)

// Saved setup answers can make a school active: this replica's caches of the school (its
// cached sessions say "pending setup") are dropped before the admin's next page, not a moment
// later when the notification arrives.
func TestSaveSetupDropsThisReplicasCaches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), nil, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.UpsertTenant(ctx, "p", store.StatePendingSetup, ""); err != nil {
		t.Fatal(err)
	}
	fields, err := setup.Parse([]byte(`[{"name": "district", "label": "District", "required": true}]`))
	if err != nil {
		t.Fatal(err)
	}
	var dropped []string
	svc := onboard.New(st, nil, fields, nil, func(id string) { dropped = append(dropped, id) })
	if _, problems, err := svc.SaveSetup(ctx, "p", url.Values{"district": {""}}, "admin"); err != nil || len(problems) == 0 {
		t.Fatalf("an incomplete form: %v %v", problems, err)
	}
	if len(dropped) != 0 {
		t.Errorf("a refused form dropped caches of %v", dropped)
	}
	state, problems, err := svc.SaveSetup(ctx, "p", url.Values{"district": {"Nord"}}, "admin")
	if err != nil || len(problems) != 0 || state != store.StateActive {
		t.Fatalf("save: %q %v %v", state, problems, err)
	}
	if !slices.Equal(dropped, []string{"p"}) {
		t.Errorf("dropped caches of %v, want p", dropped)
	}
}
