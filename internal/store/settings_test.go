package store_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// lcFields are the field names an audit event of SaveSetup names.
func lcFields(t *testing.T, e store.AuditEvent) []string {
	t.Helper()
	raw, _ := e.Detail["fields"].([]any)
	var out []string
	for _, f := range raw {
		out = append(out, f.(string))
	}
	return out
}

func TestSaveSetupAuditsChangedFieldNamesOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	// Complete when both fields are answered; the check sees the stored answers merged with the
	// new ones.
	var seen map[string]string
	check := func(a map[string]string) bool {
		seen = maps.Clone(a)
		return a["code"] != "" && a["room"] != ""
	}
	lcCredentialsEvent(t, s, "A", "CREATED", "a", check)
	if got := lcState(t, s, "A"); got != store.StatePendingSetup {
		t.Fatalf("state %q", got)
	}
	audits := lcAuditCount(t, s, "A")

	type step struct {
		answers    map[string]string
		wantState  string
		wantFields []string // nil: no audit event
	}
	for i, st := range []step{
		{map[string]string{"code": "VALUE-code-1"}, store.StatePendingSetup, []string{"code"}},
		{map[string]string{"code": "VALUE-code-1"}, store.StatePendingSetup, nil},                                // nothing changed
		{map[string]string{}, store.StatePendingSetup, nil},                                                      // nothing given
		{map[string]string{"code": "VALUE-code-1", "room": "VALUE-room-1"}, store.StateActive, []string{"room"}}, // completes
		{map[string]string{"code": "VALUE-code-2", "room": "VALUE-room-1"}, store.StateActive, []string{"code"}},
		{map[string]string{"room": "VALUE-room-1"}, store.StateActive, nil},
		{map[string]string{"b": "VALUE-b", "a": "VALUE-a"}, store.StateActive, []string{"a", "b"}}, // sorted
		{map[string]string{"code": ""}, store.StateActive, []string{"code"}},                       // an active school stays active
	} {
		state, err := s.SaveSetup(ctx, "A", st.answers, "admin:u1", check)
		if err != nil || state != st.wantState {
			t.Fatalf("step %d: %q, %v; want %q", i, state, err, st.wantState)
		}
		if got := lcState(t, s, "A"); got != st.wantState {
			t.Fatalf("step %d: stored state %q", i, got)
		}
		n := lcAuditCount(t, s, "A")
		if st.wantFields == nil {
			if n != audits {
				t.Errorf("step %d: nothing changed, but %d audit events were written", i, n-audits)
			}
			continue
		}
		if n != audits+1 {
			t.Fatalf("step %d: %d audit events written, want 1", i, n-audits)
		}
		audits = n
		e := lcLastAudit(t, s, "A")
		if e.Action != "setup.saved" || e.Actor != "admin:u1" || !slices.Equal(lcFields(t, e), st.wantFields) {
			t.Errorf("step %d: audit %+v, want fields %v", i, e, st.wantFields)
		}
		if detail := fmt.Sprint(e.Detail); strings.Contains(detail, "VALUE-") {
			t.Errorf("step %d: the audit detail holds a value: %s", i, detail)
		}
	}
	// The check is asked only while the school is pending; the last time, it saw the stored
	// answer to code merged with the new one to room.
	if want := map[string]string{"code": "VALUE-code-1", "room": "VALUE-room-1"}; !maps.Equal(seen, want) {
		t.Errorf("the check saw %v, want %v", seen, want)
	}
	answers, err := s.SetupAnswers(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"code": "", "room": "VALUE-room-1", "a": "VALUE-a", "b": "VALUE-b"}; !maps.Equal(answers, want) {
		t.Errorf("answers %v, want %v", answers, want)
	}
	var by string
	if err := s.Pool().QueryRow(ctx, `SELECT updated_by FROM tenant_settings WHERE tenant_id = 'A' AND name = 'room'`).Scan(&by); err != nil || by != "admin:u1" {
		t.Errorf("updated_by %q, %v", by, err)
	}
	// The audit trail records the transition.
	for _, e := range lcTrail(t, s, "A") {
		if e.Detail["previous_state"] == store.StatePendingSetup && e.Detail["state"] == store.StateActive {
			return
		}
	}
	t.Error("no audit event records pending_setup → active")
}

// Without setup fields (a nil check), any save completes a pending school.
func TestSaveSetupNilCheckActivates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "A", "CREATED", "a", lcNever)
	state, err := s.SaveSetup(ctx, "A", nil, "admin", nil)
	if err != nil || state != store.StateActive {
		t.Fatalf("%q %v", state, err)
	}
	if e := lcLastAudit(t, s, "A"); e.Action != "setup.saved" || e.Detail["state"] != store.StateActive {
		t.Errorf("audit %+v", e)
	}
}

func TestSaveSetupRefusesASchoolThatTakesNoAnswers(t *testing.T) {
	t.Parallel()
	for _, from := range []string{"unknown", store.StateDeactivated, store.StateDeleted} {
		t.Run(from, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			if from != "unknown" {
				lcCredentialsEvent(t, s, "A", "CREATED", "a", nil)
				lcEndEvent(t, s, "A", "end", from == store.StateDeleted)
			}
			before := lcRowsPerTable(t, s, "A")
			state, err := s.SaveSetup(ctx, "A", map[string]string{"code": "x"}, "admin", nil)
			if !errors.Is(err, store.ErrNotFound) || state != "" {
				t.Fatalf("SaveSetup on a %s school: %q, %v; want ErrNotFound", from, state, err)
			}
			if after := lcRowsPerTable(t, s, "A"); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a refused save wrote:\nbefore %v\nafter  %v", before, after)
			}
			if from != "unknown" && lcState(t, s, "A") != from {
				t.Errorf("state changed to %q", lcState(t, s, "A"))
			}
		})
	}
}

// What one school saves and reads never touches another's.
func TestSetupIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "A", "CREATED", "a", lcNeeds("code"))
	lcCredentialsEvent(t, s, "B", "CREATED", "b", lcNeeds("code"))
	if _, err := s.SaveSetup(ctx, "B", map[string]string{"code": "B-code", "other": "B-other"}, "admin:b", lcNeeds("code")); err != nil {
		t.Fatal(err)
	}
	bRows := lcRowsPerTable(t, s, "B")
	bTrail := lcTrail(t, s, "B")

	// A's first save: B's answers do not count toward A's check, nor show up in A's answers.
	var seen map[string]string
	check := func(a map[string]string) bool { seen = maps.Clone(a); return a["code"] != "" }
	state, err := s.SaveSetup(ctx, "A", map[string]string{"room": "A-room"}, "admin:a", check)
	if err != nil || state != store.StatePendingSetup {
		t.Fatalf("A: %q %v", state, err)
	}
	if !maps.Equal(seen, map[string]string{"room": "A-room"}) {
		t.Errorf("A's check saw %v", seen)
	}
	if _, err := s.SaveSetup(ctx, "A", map[string]string{"code": "A-code"}, "admin:a", check); err != nil {
		t.Fatal(err)
	}
	if a, err := s.SetupAnswers(ctx, "A"); err != nil || !maps.Equal(a, map[string]string{"room": "A-room", "code": "A-code"}) {
		t.Errorf("A's answers %v, %v", a, err)
	}
	if b, err := s.SetupAnswers(ctx, "B"); err != nil || !maps.Equal(b, map[string]string{"code": "B-code", "other": "B-other"}) {
		t.Errorf("B's answers %v, %v", b, err)
	}
	if a, err := s.SetupAnswers(ctx, "nobody"); err != nil || len(a) != 0 {
		t.Errorf("an unknown school's answers %v, %v", a, err)
	}
	if after := lcRowsPerTable(t, s, "B"); fmt.Sprint(after) != fmt.Sprint(bRows) {
		t.Errorf("B's rows changed:\nbefore %v\nafter  %v", bRows, after)
	}
	if after := lcTrail(t, s, "B"); len(after) != len(bTrail) {
		t.Errorf("B's trail grew from %d to %d events", len(bTrail), len(after))
	}
	for _, e := range lcTrail(t, s, "A") {
		if e.Actor == "admin:b" || e.Detail["client_id"] == "client-b" {
			t.Errorf("A's trail holds B's event %+v", e)
		}
	}
	if sum, err := s.TenantSummary(ctx, "A", time.Now()); err != nil || sum.ID != "A" || sum.Credentials == nil || sum.Credentials.ClientID != "client-a" {
		t.Errorf("A's summary %+v, %v", sum, err)
	}
}
