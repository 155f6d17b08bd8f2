package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestFlows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t, key("k", 1)))
	for _, id := range []string{"a", "b"} {
		if err := s.UpsertTenant(ctx, id, store.StateActive, ""); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	flow := func(id, tenant string, expires time.Time) store.Flow {
		return store.Flow{IDHash: hash(id), TenantID: tenant, State: "state-" + id, Nonce: "nonce-" + id,
			PKCEVerifier: "verifier-" + id, ReturnTo: "/x", Launch: map[string]string{"lesson_id": id},
			CreatedAt: now, ExpiresAt: expires}
	}
	for _, f := range []store.Flow{flow("f1", "a", now.Add(time.Minute)), flow("f2", "b", now.Add(time.Minute)), flow("old", "a", now.Add(-time.Second))} {
		if err := s.CreateFlow(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateFlow(ctx, flow("x", "nobody", now.Add(time.Minute))); err == nil {
		t.Error("a flow for an unknown tenant was stored")
	}
	// The verifier is sealed at rest.
	var sealed []byte
	if err := s.Pool().QueryRow(ctx, `SELECT pkce_verifier_sealed FROM auth_flows WHERE id_hash = $1`, hash("f1")).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("verifier-f1")) {
		t.Error("the PKCE verifier is stored in the clear")
	}
	// A sealed verifier copied into another tenant's flow does not open there.
	if _, err := s.Pool().Exec(ctx, `UPDATE auth_flows SET pkce_verifier_sealed = $1 WHERE id_hash = $2`, sealed, hash("f2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeFlow(ctx, hash("f2"), now); err == nil {
		t.Error("tenant a's sealed verifier opened in tenant b's flow")
	}

	// Consumed once, even by racing callers.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			f, err := s.ConsumeFlow(ctx, hash("f1"), now)
			switch {
			case err == nil:
				wins.Add(1)
				if f.TenantID != "a" || f.State != "state-f1" || f.Nonce != "nonce-f1" || f.PKCEVerifier != "verifier-f1" ||
					f.ReturnTo != "/x" || f.Launch["lesson_id"] != "f1" {
					t.Errorf("consumed %+v", f)
				}
			case !errors.Is(err, store.ErrNotFound):
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d callers consumed the flow", wins.Load())
	}
	if _, err := s.ConsumeFlow(ctx, hash("old"), now); !errors.Is(err, store.ErrFlowExpired) {
		t.Errorf("expired flow: %v", err)
	}
	if _, err := s.ConsumeFlow(ctx, hash("old"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an expired flow was kept: %v", err)
	}
	// By state, for a callback without its cookie.
	if err := s.CreateFlow(ctx, flow("f3", "b", now.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	if f, err := s.ConsumeFlowByState(ctx, "state-f3"); err != nil || f.TenantID != "b" || f.Launch["lesson_id"] != "f3" || f.PKCEVerifier != "" {
		t.Errorf("by state: %+v, %v", f, err)
	}
	if _, err := s.ConsumeFlowByState(ctx, "state-f3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("by state twice: %v", err)
	}
}

func TestLoginsAndSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t, key("k", 1)))
	for id, state := range map[string]string{"a": store.StateActive, "b": store.StatePendingSetup, "off": store.StateDeactivated} {
		if err := s.UpsertTenant(ctx, id, state, "School "+id); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	login := func(tenant, sub, sid string, replaces []byte) store.Login {
		return store.Login{
			User: store.User{TenantID: tenant, Sub: sub, Role: "teacher", GivenName: "G", FamilyName: "F",
				Email: sub + "@x", Orgs: []store.OrgRef{{SourcedID: "org", Type: "school"}}},
			SessionIDHash: hash(sid), CSRFToken: []byte("csrf-" + sid), Launch: map[string]string{"school": "S"},
			Now: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour), ReplacesIDHash: replaces,
		}
	}
	if st, err := s.CreateLogin(ctx, login("a", "u1", "s1", nil)); err != nil || st != store.StateActive {
		t.Fatalf("login a: %q %v", st, err)
	}
	if st, err := s.CreateLogin(ctx, login("b", "u1", "s2", nil)); err != nil || st != store.StatePendingSetup {
		t.Fatalf("login b: %q %v", st, err)
	}
	for _, tenant := range []string{"off", "nobody"} {
		if _, err := s.CreateLogin(ctx, login(tenant, "u9", "s9", nil)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("login for %s: %v", tenant, err)
		}
	}
	var users int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM users WHERE sub = 'u9'`).Scan(&users); err != nil || users != 0 {
		t.Errorf("a refused login wrote %d users (%v)", users, err)
	}
	// The same sub in two schools is two users; each session is its own school's.
	sa, err := s.SessionByID(ctx, hash("s1"), now)
	if err != nil || sa.TenantID != "a" || sa.User.Email != "u1@x" || sa.TenantState != store.StateActive || sa.TenantName != "School a" ||
		len(sa.User.Orgs) != 1 || sa.Launch["school"] != "S" || string(sa.CSRFToken) != "csrf-s1" {
		t.Errorf("session s1: %+v, %v", sa, err)
	}
	if sb, err := s.SessionByID(ctx, hash("s2"), now); err != nil || sb.TenantID != "b" {
		t.Errorf("session s2: %+v, %v", sb, err)
	}
	// A new sign-in in the same browser replaces its session.
	if _, err := s.CreateLogin(ctx, login("a", "u2", "s3", hash("s1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByID(ctx, hash("s1"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replaced session: %v", err)
	}
	// Idle and absolute expiry, and the idle expiry moving with activity (never past the absolute).
	if _, err := s.SessionByID(ctx, hash("s3"), now.Add(time.Hour+time.Second)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("idle session: %v", err)
	}
	if err := s.TouchSession(ctx, hash("s3"), now.Add(50*time.Minute), now.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ss, err := s.SessionByID(ctx, hash("s3"), now.Add(90*time.Minute)); err != nil || !ss.IdleExpiresAt.Equal(ss.ExpiresAt) {
		t.Errorf("touched session: %+v, %v", ss, err)
	}
	if _, err := s.SessionByID(ctx, hash("s3"), now.Add(2*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session past its absolute expiry: %v", err)
	}
	// A school that is no longer active has no live sessions.
	if err := s.UpsertTenant(ctx, "b", store.StateDeactivated, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SessionByID(ctx, hash("s2"), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("session of a deactivated school: %v", err)
	}
	if ok, err := s.DeleteSession(ctx, hash("s2")); !ok || err != nil {
		t.Errorf("delete: %v %v", ok, err)
	}
	if ok, _ := s.DeleteSession(ctx, hash("s2")); ok {
		t.Error("deleted twice")
	}
	// The sweep removes what expired, and only that.
	if _, err := s.CreateLogin(ctx, login("a", "u3", "s4", nil)); err != nil {
		t.Fatal(err)
	}
	flows, sessions, err := s.SweepExpired(ctx, now.Add(90*time.Minute), 10)
	if err != nil || sessions != 1 {
		t.Errorf("sweep: flows %d sessions %d, %v", flows, sessions, err)
	}
	if _, err := s.SessionByID(ctx, hash("s3"), now.Add(time.Minute)); err != nil {
		t.Errorf("the sweep removed a live session: %v", err)
	}
}
