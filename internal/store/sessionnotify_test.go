package store_test

import (
	"context"
	"encoding/hex"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// sessionRecorder remembers the session notifications a listener heard, in order.
type sessionRecorder struct {
	mu      sync.Mutex
	heard   []string // hex of an id hash, or "tenant:" and an id
	resyncs int
}

func (r *sessionRecorder) handler() store.TenantChangeHandler {
	return store.TenantChangeHandler{
		Changed: func(string) {},
		Resync:  func() { r.mu.Lock(); r.resyncs++; r.mu.Unlock() },
		SessionChanged: func(idHash []byte) {
			r.mu.Lock()
			r.heard = append(r.heard, hex.EncodeToString(idHash))
			r.mu.Unlock()
		},
		TenantSessionsChanged: func(id string) { r.mu.Lock(); r.heard = append(r.heard, "tenant:"+id); r.mu.Unlock() },
	}
}

func (r *sessionRecorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.heard)
}

// until waits for the notification marker (a session deleted as a barrier: notifications arrive
// in commit order) and returns what was heard before it, clearing the record.
func (r *sessionRecorder) until(t *testing.T, s *store.Store, marker string) []string {
	t.Helper()
	if _, err := s.DeleteSession(context.Background(), hash(marker)); err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(hash(marker))
	waitFor(t, "the marker "+marker, func() bool { return slices.Contains(r.snapshot(), want) })
	r.mu.Lock()
	defer r.mu.Unlock()
	i := slices.Index(r.heard, want)
	before := slices.Clone(r.heard[:i])
	r.heard = slices.Clone(r.heard[i+1:])
	return before
}

func hexes(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = hex.EncodeToString(hash(id))
	}
	slices.Sort(out)
	return out
}

func sorted(s []string) []string { slices.Sort(s); return s }

// Every change that makes a cached copy of a session wrong, other than a change of the school's
// state or credentials (tenant_changed), is announced on the session channel when it commits:
// sign-out, a session replaced by a new sign-in, the user's profile changing, the sweep, and the
// school's name.
func TestSessionChangesAreNotified(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t, key("k", 1)))
	for _, id := range []string{"a", "b"} {
		if err := s.UpsertTenant(ctx, id, store.StateActive, ""); err != nil {
			t.Fatal(err)
		}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec := &sessionRecorder{}
	done := make(chan struct{})
	go func() {
		s.ListenTenantChanges(lctx, slog.New(slog.DiscardHandler), store.TenantChangeHandler{}.Also(rec.handler()))
		close(done)
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, "the listener", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.resyncs == 1 })

	now := time.Now()
	role := "teacher"
	login := func(tenant, sub, sid, replaces string) {
		t.Helper()
		l := store.Login{
			User:          store.User{TenantID: tenant, Sub: sub, Role: role, GivenName: "Jürgen", FamilyName: "Müller", Email: sub + "@x"},
			SessionIDHash: hash(sid), CSRFToken: []byte("c"), Now: now,
			IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(2 * time.Hour),
		}
		if replaces != "" {
			l.ReplacesIDHash = hash(replaces)
		}
		if _, err := s.CreateLogin(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	// New users and sessions: nothing is stale (a brand-new session is in no cache).
	login("a", "u1", "s1", "")
	login("a", "u1", "s2", "")
	login("a", "u2", "s3", "")
	login("b", "u1", "s4", "")
	for _, m := range []string{"m0", "marker"} { // markers are sessions of their own
		login("a", "m", m, "")
	}
	if got := rec.until(t, s, "m0"); len(got) != 0 {
		t.Errorf("new sign-ins announced %v", got)
	}
	// The same profile signing in again, replacing nothing: nothing.
	login("a", "u1", "s5", "")
	// Replacing a session that does not exist: nothing.
	login("a", "u1", "s6", "never")
	if got := rec.until(t, s, "marker"); len(got) != 0 {
		t.Errorf("an unchanged profile's sign-in announced %v", got)
	}

	mark := func(name string) string { login("a", "m", name, ""); return name }
	// A new sign-in in the same browser replaces (and announces) the old session.
	login("a", "u2", "s7", "s3")
	if got := rec.until(t, s, mark("mk1")); !slices.Equal(got, hexes("s3")) {
		t.Errorf("replaced: heard %v, want s3", got)
	}
	// A changed profile (a new role) announces every other session of that user in that school,
	// not the new one, not another school's user with the same sub.
	role = "administrator"
	login("a", "u1", "s8", "")
	if got := sorted(rec.until(t, s, mark("mk2"))); !slices.Equal(got, hexes("s1", "s2", "s5", "s6")) {
		t.Errorf("profile change: heard %v, want s1 s2 s5 s6", got)
	}
	// Both at once: the replaced session is announced once.
	role = "teacher"
	login("a", "u1", "s9", "s8")
	if got := sorted(rec.until(t, s, mark("mk3"))); !slices.Equal(got, hexes("s1", "s2", "s5", "s6", "s8")) {
		t.Errorf("replace and profile change: heard %v", got)
	}

	// Sign-out: announced when it deleted a session, not otherwise.
	if ok, err := s.DeleteSession(ctx, hash("s1")); !ok || err != nil {
		t.Fatalf("delete: %v %v", ok, err)
	}
	if ok, _ := s.DeleteSession(ctx, hash("s1")); ok {
		t.Fatal("deleted twice")
	}
	if got := rec.until(t, s, mark("mk4")); !slices.Equal(got, hexes("s1")) {
		t.Errorf("sign-out: heard %v, want s1 once", got)
	}

	// The sweep announces what it removed.
	if _, err := s.Pool().Exec(ctx, `UPDATE sessions SET idle_expires_at = $2 WHERE id_hash = ANY($1)`,
		[][]byte{hash("s2"), hash("s4")}, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, n, err := s.SweepExpired(ctx, now, 10); err != nil || n != 2 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if got := sorted(rec.until(t, s, mark("mk5"))); !slices.Equal(got, hexes("s2", "s4")) {
		t.Errorf("sweep: heard %v, want s2 s4", got)
	}

	// The school's name: every session of the school, once, and only when it changed.
	for range 2 {
		if err := s.SetTenantName(ctx, "a", "Grundschule Süd"); err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.until(t, s, mark("mk6")); !slices.Equal(got, []string{"tenant:a"}) {
		t.Errorf("name: heard %v, want tenant:a once", got)
	}

	// A refused sign-in (the school is not active) still ends the browser's previous session, as
	// it always did: that is announced too.
	if _, err := s.CreateLogin(ctx, store.Login{
		User: store.User{TenantID: "nobody", Sub: "u1"}, SessionIDHash: hash("x"), CSRFToken: []byte("c"),
		Now: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour), ReplacesIDHash: hash("s5"),
	}); err == nil {
		t.Fatal("a sign-in into an unknown school succeeded")
	}
	if got := rec.until(t, s, mark("mk7")); !slices.Equal(got, hexes("s5")) {
		t.Errorf("a refused sign-in's replacement: heard %v, want s5", got)
	}
}

// A handler without session callbacks does not hear the session channel; Also keeps them
// when any handler has one.
func TestAlsoKeepsSessionCallbacks(t *testing.T) {
	t.Parallel()
	plain := store.TenantChangeHandler{Changed: func(string) {}, Resync: func() {}}
	if h := plain.Also(plain); h.SessionChanged != nil || h.TenantSessionsChanged != nil {
		t.Error("Also invented session callbacks")
	}
	var got []string
	withSessions := store.TenantChangeHandler{
		SessionChanged:        func(b []byte) { got = append(got, hex.EncodeToString(b)) },
		TenantSessionsChanged: func(id string) { got = append(got, id) },
	}
	h := plain.Also(withSessions, withSessions)
	if h.SessionChanged == nil || h.TenantSessionsChanged == nil {
		t.Fatal("Also dropped the session callbacks")
	}
	h.SessionChanged([]byte{1})
	h.TenantSessionsChanged("t")
	if !slices.Equal(got, []string{"01", "01", "t", "t"}) {
		t.Errorf("dispatched %v", got)
	}
}
