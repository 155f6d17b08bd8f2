package internalapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/internalapi"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
)

type schoolsPage struct {
	Schools []internalapi.School `json:"schools"`
	Next    *string              `json:"next"`
}

// The schools list pages in tenant id order and filters by state; one school shows its state,
// informational fields from the platform's webhook and its setup answers.
func TestSchoolsListAndOneSchool(t *testing.T) {
	t.Parallel()
	fields, err := setup.Parse([]byte(`[{"name": "district", "label": "District", "type": "select", "options": ["North", "South"], "required": true}]`))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, options{setupFields: fields})
	// Activated through the platform's webhook: pending setup (a field is required).
	for _, id := range []string{"1001", "1002", "1003", "1004"} {
		e.school(platformsim.TenantSpec{ID: id, Name: "Schule " + id, Country: "AT", Region: "AT-9", Language: "de"})
	}
	// The name is learned from the platform (its OneRoster school), as the sign-in does.
	if err := e.store.SetTenantName(e.ctx(), "1001", "Gymnasium 1001"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.SaveSetup(e.ctx(), "1001", map[string]string{"district": "North"}, "test", fields.Complete); err != nil {
		t.Fatal(err)
	}
	if res, err := e.sim.Deactivate(e.ctx(), "1003", false); err != nil || res.Status != http.StatusOK {
		t.Fatalf("deactivate: %+v %v", res, err)
	}
	if res, err := e.sim.Deactivate(e.ctx(), "1004", true); err != nil || res.Status != http.StatusOK {
		t.Fatalf("delete: %+v %v", res, err)
	}

	// Pages of two, following next.
	var all []internalapi.School
	next, pages := "/v1/schools?limit=2", 0
	for next != "" {
		ans := e.get(next)
		if ans.status != http.StatusOK || ans.header.Get("Content-Type") != "application/json" || ans.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: %s", next, ans)
		}
		page := decodeAs[schoolsPage](t, ans)
		all = append(all, page.Schools...)
		pages++
		next = ""
		if page.Next != nil {
			next = *page.Next
		}
	}
	states := map[string]string{}
	for _, s := range all {
		states[s.TenantID] = s.State
		if s.Setup != nil {
			t.Errorf("the list carries setup answers: %+v", s)
		}
	}
	want := map[string]string{"1001": store.StateActive, "1002": store.StatePendingSetup, "1003": store.StateDeactivated, "1004": store.StateDeleted}
	if len(all) != 4 || pages != 3 || !mapsEqual(states, want) {
		t.Errorf("listed %v in %d pages, want %v in 3 (the last one empty)", states, pages, want)
	}
	reachable := decodeAs[schoolsPage](t, e.get("/v1/schools?state=active,pending_setup"))
	var ids []string
	for _, s := range reachable.Schools {
		ids = append(ids, s.TenantID)
		if !s.Reachable {
			t.Errorf("%s is %s but not reachable", s.TenantID, s.State)
		}
	}
	if !slices.Equal(ids, []string{"1001", "1002"}) || reachable.Next != nil {
		t.Errorf("reachable schools: %v (next %v)", ids, reachable.Next)
	}

	one := decodeAs[internalapi.School](t, e.get("/v1/schools/1001"))
	if one.State != store.StateActive || !one.Reachable || one.Name != "Gymnasium 1001" || one.Country != "AT" || one.Region != "AT-9" ||
		one.Language != "de" || one.Contacts.ActivatorEmail == "" || one.Setup == nil || (*one.Setup)["district"] != "North" ||
		one.CredentialsFailingSince != nil || time.Since(one.CreatedAt) > time.Hour || one.StateChangedAt.IsZero() {
		t.Errorf("one school: %+v", one)
	}
	pending := decodeAs[internalapi.School](t, e.get("/v1/schools/1002"))
	if pending.State != store.StatePendingSetup || !pending.Reachable || pending.Setup == nil || len(*pending.Setup) != 0 {
		t.Errorf("pending school: %+v", pending)
	}
	deactivated := decodeAs[internalapi.School](t, e.get("/v1/schools/1003"))
	if deactivated.State != store.StateDeactivated || deactivated.Reachable {
		t.Errorf("deactivated school: %+v", deactivated)
	}
	// A deleted school's personal data is gone: its contacts too.
	deleted := decodeAs[internalapi.School](t, e.get("/v1/schools/1004"))
	if deleted.State != store.StateDeleted || deleted.Reachable || deleted.Contacts.ActivatorEmail != "" {
		t.Errorf("deleted school: %+v", deleted)
	}

	e.get("/v1/schools/9999").wantProblem(t, http.StatusNotFound, "school-not-found")
	for _, q := range []string{"/v1/schools/a.b", "/v1/schools?limit=0", "/v1/schools?limit=1001", "/v1/schools?limit=x",
		"/v1/schools?state=sleeping", "/v1/schools?after=" + strings.Repeat("9", 65)} {
		e.get(q).wantProblem(t, http.StatusBadRequest, "bad-request")
	}
	e.api(http.MethodPost, "/v1/schools", nil).wantProblem(t, http.StatusMethodNotAllowed, "method-not-allowed")
	if n := len(e.calls()); n != 0 {
		t.Errorf("reading schools called the platform %d times", n)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
