package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

func lcIDs(list []store.TenantSummary) []string {
	var ids []string
	for _, ts := range list {
		ids = append(ids, ts.ID)
	}
	return ids
}

func TestListTenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	now := time.Now().Truncate(time.Microsecond)

	// t01: active, three users; one live session, one idle-expired, one past its absolute expiry.
	lcCredentialsEvent(t, s, "t01", "CREATED", "c01", nil)
	for i, times := range [][2]time.Duration{{time.Hour, 2 * time.Hour}, {-time.Second, 2 * time.Hour}, {time.Hour, -time.Second}} {
		l := lcLogin("t01", fmt.Sprint("u", i), fmt.Sprint("t01-s", i), now.Add(-3*time.Hour))
		l.IdleExpiresAt, l.ExpiresAt = now.Add(times[0]), now.Add(times[1])
		if _, err := s.CreateLogin(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	// t02: known, no credentials.
	if err := s.UpsertTenant(ctx, "t02", store.StatePendingSetup, "Two"); err != nil {
		t.Fatal(err)
	}
	// t03: two versions of credentials.
	lcCredentialsEvent(t, s, "t03", "CREATED", "c03", nil)
	lcCredentialsEvent(t, s, "t03", "RESET", "r03", nil)
	// t04: deactivated; t05: deleted.
	lcSeedSchool(t, s, "t04")
	lcEndEvent(t, s, "t04", "end", false)
	lcSeedSchool(t, s, "t05")
	lcEndEvent(t, s, "t05", "end", true)

	var pages [][]string
	var all []store.TenantSummary
	after := ""
	for range 10 {
		page, err := s.ListTenants(ctx, after, 2, now)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, lcIDs(page))
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	if got := fmt.Sprint(pages); got != "[[t01 t02] [t03 t04] [t05] []]" {
		t.Fatalf("pages %s", got)
	}
	if big, err := s.ListTenants(ctx, "", 100, now); err != nil || !slices.Equal(lcIDs(big), lcIDs(all)) {
		t.Errorf("one big page %v, %v", lcIDs(big), err)
	}
	if mid, err := s.ListTenants(ctx, "t02", 100, now); err != nil || !slices.Equal(lcIDs(mid), []string{"t03", "t04", "t05"}) {
		t.Errorf("after t02: %v, %v", lcIDs(mid), err)
	}
	type want struct {
		state           string
		version         int // 0: no credentials
		source          string
		users, sessions int
	}
	for i, w := range []want{
		{store.StateActive, 1, store.SourceWebhook, 3, 1},
		{store.StatePendingSetup, 0, "", 0, 0},
		{store.StateActive, 2, store.SourceWebhook, 0, 0},
		{store.StateDeactivated, 0, "", 2, 0},
		{store.StateDeleted, 0, "", 0, 0},
	} {
		ts := all[i]
		if ts.State != w.state || ts.Users != w.users || ts.Sessions != w.sessions {
			t.Errorf("%s: state %q users %d sessions %d, want %+v", ts.ID, ts.State, ts.Users, ts.Sessions, w)
		}
		if w.version == 0 {
			if ts.Credentials != nil {
				t.Errorf("%s: credentials %+v, want none", ts.ID, ts.Credentials)
			}
		} else if ts.Credentials == nil || ts.Credentials.Version != w.version || ts.Credentials.Source != w.source ||
			ts.Credentials.CreatedAt.IsZero() {
			t.Errorf("%s: credentials %+v, want version %d", ts.ID, ts.Credentials, w.version)
		}
		// Nothing secret in what the console gets.
		if dump := fmt.Sprintf("%+v %+v", ts, ts.Credentials); strings.Contains(dump, "SECRET-") || strings.Contains(dump, "PASSWORD-") {
			t.Errorf("%s: a secret in the summary: %s", ts.ID, dump)
		}
		one, err := s.TenantSummary(ctx, ts.ID, now)
		if err != nil || one.ID != ts.ID || one.Users != ts.Users || one.Sessions != ts.Sessions || (one.Credentials == nil) != (ts.Credentials == nil) {
			t.Errorf("TenantSummary(%s) = %+v, %v; list has %+v", ts.ID, one, err, ts)
		}
	}
	if all[2].Credentials.ClientID != "client-r03" || all[0].Name != "School t01" || all[1].Name != "Two" {
		t.Errorf("summaries %+v", all)
	}
	// Later, the live session has gone idle too.
	if ts, err := s.TenantSummary(ctx, "t01", now.Add(2*time.Hour)); err != nil || ts.Sessions != 0 || ts.Users != 3 {
		t.Errorf("t01 two hours later: %+v, %v", ts, err)
	}
	if _, err := s.TenantSummary(ctx, "nobody", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown school: %v", err)
	}
	if list, err := s.ListTenants(ctx, "t05", 10, now); err != nil || len(list) != 0 {
		t.Errorf("past the end: %v, %v", lcIDs(list), err)
	}
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	for i := range 5 {
		if err := s.AuditOperator(ctx, "A", "operator:o", fmt.Sprint("a.", i), map[string]any{"n": i}); err != nil {
			t.Fatal(err)
		}
		if err := s.AuditOperator(ctx, "B", "operator:o", fmt.Sprint("b.", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AuditOperator(ctx, "", "operator:o", "operator.signed_in", map[string]any{"ip": "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	trail, err := s.AuditTrail(ctx, "A", 100)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for i, e := range trail {
		actions = append(actions, e.Action)
		if e.Actor != "operator:o" || e.Detail["n"] != float64(4-i) {
			t.Errorf("event %d: %+v", i, e)
		}
		if i > 0 && e.At.After(trail[i-1].At) {
			t.Errorf("event %d is newer than the one before it", i)
		}
	}
	if got := strings.Join(actions, " "); got != "a.4 a.3 a.2 a.1 a.0" {
		t.Errorf("A's trail %s, want newest first", got)
	}
	if short, err := s.AuditTrail(ctx, "A", 2); err != nil || len(short) != 2 || short[0].Action != "a.4" || short[1].Action != "a.3" {
		t.Errorf("limit 2: %+v, %v", short, err)
	}
	b, err := s.AuditTrail(ctx, "B", 100)
	if err != nil || len(b) != 5 {
		t.Fatalf("B's trail %+v, %v", b, err)
	}
	for _, e := range b {
		if !strings.HasPrefix(e.Action, "b.") {
			t.Errorf("B's trail holds %s", e.Action)
		}
	}
	if none, err := s.AuditTrail(ctx, "nobody", 100); err != nil || len(none) != 0 {
		t.Errorf("unknown school's trail %+v, %v", none, err)
	}
	if ops, err := s.AuditTrail(ctx, "", 100); err != nil || len(ops) != 1 || ops[0].Detail["ip"] != "192.0.2.1" {
		t.Errorf("trail of no school %+v, %v", ops, err)
	}
	// Events written in one transaction (a lifecycle change writes one; several in a row must
	// still come newest first, by id).
	lcCredentialsEvent(t, s, "C", "CREATED", "c", nil)
	lcCredentialsEvent(t, s, "C", "RESET", "r", nil)
	lcEndEvent(t, s, "C", "e", false)
	var got []string
	for _, e := range lcTrail(t, s, "C") {
		got = append(got, e.Action)
	}
	if strings.Join(got, " ") != "tenant.deactivated credentials.stored credentials.stored" {
		t.Errorf("C's trail %v", got)
	}
}
