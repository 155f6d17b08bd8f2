package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/store"
)

// clock is the injectable clock every replica of a test shares.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// replica is one server instance: its own store (pools), Manager and listener.
type replica struct {
	t     *testing.T
	name  string
	store *store.Store
	m     *Manager
	// gate, when closed... see listen: a Resync waits until it can receive.
	gate         chan struct{}
	disconnects  atomic.Int32
	resyncs      atomic.Int32
	stopListener context.CancelFunc
}

type cluster struct {
	t     *testing.T
	dbURL string
	clock *clock
	cfg   Config
}

// newCluster creates a database with an active school "t1" (Schule Nord), an active "t2" and a
// school "p" pending setup.
func newCluster(t *testing.T, cfg Config) *cluster {
	t.Helper()
	c := &cluster{t: t, dbURL: pgtest.NewDatabase(t), clock: newClock(), cfg: cfg}
	st := c.open()
	for id, state := range map[string]string{"t1": store.StateActive, "t2": store.StateActive, "p": store.StatePendingSetup} {
		if err := st.UpsertTenant(context.Background(), id, state, "Schule "+id); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *cluster) open() *store.Store {
	c.t.Helper()
	st, err := store.Open(context.Background(), c.dbURL, nil, store.Options{MaxConns: 4})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(st.Close)
	return st
}

// replica starts a replica; with listen, its listener runs and the cache is trusted on return.
func (c *cluster) replica(name string, listen bool) *replica {
	c.t.Helper()
	cfg := c.cfg
	r := &replica{t: c.t, name: name, store: c.open(), gate: make(chan struct{})}
	close(r.gate)
	cfg.Store, cfg.Now = r.store, c.clock.now
	r.m = New(cfg)
	if listen {
		r.listen()
	}
	return r
}

// listen runs the replica's listener with the Manager's handler; each Resync first waits for
// the gate (open unless a test holds it shut to keep an outage going).
func (r *replica) listen() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := r.m.ChangeHandler()
	inner := h.Resync
	h.Resync = func() {
		<-r.gateChan()
		inner()
		r.resyncs.Add(1)
	}
	innerDisc := h.Disconnected
	h.Disconnected = func() {
		if innerDisc != nil {
			innerDisc()
		}
		r.disconnects.Add(1)
	}
	done := make(chan struct{})
	go func() {
		r.store.ListenTenantChanges(ctx, slog.New(slog.DiscardHandler), h)
		close(done)
	}()
	r.stopListener = func() { cancel(); <-done }
	r.t.Cleanup(r.stopListener)
	before := r.resyncs.Load()
	waitFor(r.t, r.name+"'s listener", time.Minute, func() bool { return r.resyncs.Load() > before })
}

var gateMu sync.Mutex

func (r *replica) gateChan() chan struct{} {
	gateMu.Lock()
	defer gateMu.Unlock()
	return r.gate
}

func (r *replica) setGate(open bool) {
	gateMu.Lock()
	defer gateMu.Unlock()
	if open {
		close(r.gate)
	} else {
		r.gate = make(chan struct{})
	}
}

// signIn starts a session for a user of tenant and returns its cookie value.
func (r *replica) signIn(tenant, sub, role string) string {
	r.t.Helper()
	w := httptest.NewRecorder()
	user := store.User{TenantID: tenant, Sub: sub, Role: role, GivenName: "Jürgen", FamilyName: "Weiß", Email: sub + "@schule.example"}
	if _, err := r.m.Start(context.Background(), w, httptest.NewRequest(http.MethodGet, "/launch", nil), user, map[string]string{"lesson_id": "L1"}); err != nil {
		r.t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName && c.Value != "" { // the first one removes the other mode's cookie
			return c.Value
		}
	}
	r.t.Fatal("no session cookie")
	return ""
}

func request(cookie string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
	req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
	return req
}

// load is Load for the session cookie.
func (r *replica) load(cookie string) (*store.Session, error) {
	return r.m.Load(context.Background(), request(cookie))
}

// mustLoad loads a session that must be live.
func (r *replica) mustLoad(cookie string) *store.Session {
	r.t.Helper()
	s, err := r.load(cookie)
	if err != nil {
		r.t.Fatalf("%s: load: %v", r.name, err)
	}
	return s
}

// mustHit loads a live session and checks it came from the cache.
func (r *replica) mustHit(cookie string) *store.Session {
	r.t.Helper()
	before := r.m.lookups.hit.Value()
	s := r.mustLoad(cookie)
	if r.m.lookups.hit.Value() != before+1 {
		r.t.Fatalf("%s: the session was not answered from the cache", r.name)
	}
	return s
}

// refusedWithin polls until the replica refuses the cookie and fails when that took longer than
// limit (the product's promise: a second).
func (r *replica) refusedWithin(cookie string, limit time.Duration, what string) {
	r.t.Helper()
	start := time.Now()
	waitFor(r.t, r.name+" to refuse the session after "+what, 30*time.Second, func() bool {
		_, err := r.load(cookie)
		if err != nil && !errors.Is(err, ErrNoSession) {
			r.t.Fatalf("%s: %v", r.name, err)
		}
		return errors.Is(err, ErrNoSession)
	})
	d := time.Since(start)
	if d > limit {
		r.t.Errorf("%s refused the session %v after %s; want within %v", r.name, d, what, limit)
	}
	r.t.Logf("%s refused the session %v after %s", r.name, d, what)
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testConfig caches for an hour, so that only notifications (and expiry) end a cached copy
// unless a test says otherwise.
var testConfig = Config{IdleTimeout: 10 * time.Minute, MaxAge: 30 * time.Minute, CacheTTL: time.Hour}

func TestSignOutOnOneReplicaEndsTheSessionOnTheOther(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig)
	a, b := c.replica("A", true), c.replica("B", true)
	cookie := a.signIn("t1", "teacher-1", "teacher")
	other := a.signIn("t1", "teacher-2", "teacher")
	for _, r := range []*replica{a, b} {
		r.mustLoad(cookie)
		s := r.mustHit(cookie)
		if s.TenantID != "t1" || s.User.GivenName != "Jürgen" || s.TenantName != "Schule t1" || s.Launch["lesson_id"] != "L1" {
			t.Fatalf("%s: cached session %+v", r.name, s)
		}
		r.mustLoad(other)
	}

	w := httptest.NewRecorder()
	if ended, err := a.m.End(context.Background(), w, request(cookie)); !ended || err != nil {
		t.Fatalf("End = %v, %v", ended, err)
	}
	// The replica that signed out refuses at once; the other within a second.
	if _, err := a.load(cookie); !errors.Is(err, ErrNoSession) {
		t.Errorf("A after its own sign-out: %v", err)
	}
	b.refusedWithin(cookie, time.Second, "sign-out on A")
	// Only that session: the other user's stays cached on both.
	a.mustHit(other)
	b.mustHit(other)
}

func TestNewSignInInTheSameBrowserEndsThePreviousSessionEverywhere(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig)
	a, b := c.replica("A", true), c.replica("B", true)
	old := a.signIn("t1", "teacher-1", "teacher")
	b.mustLoad(old)
	b.mustHit(old)
	// The same browser launches again (on A), as another user: the old session is replaced.
	w := httptest.NewRecorder()
	if _, err := a.m.Start(context.Background(), w, request(old), store.User{TenantID: "t1", Sub: "student-1", Role: "student"}, nil); err != nil {
		t.Fatal(err)
	}
	b.refusedWithin(old, time.Second, "a new sign-in replaced it on A")
}

func TestDeactivationEndsCachedSessionsOnEveryReplica(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig)
	a, b := c.replica("A", true), c.replica("B", true)
	t1 := a.signIn("t1", "teacher-1", "teacher")
	t1admin := a.signIn("t1", "admin-1", "administrator")
	t2 := a.signIn("t2", "teacher-1", "teacher")
	for _, r := range []*replica{a, b} {
		for _, ck := range []string{t1, t1admin, t2} {
			r.mustLoad(ck)
			r.mustHit(ck)
		}
	}
	// The platform's DEACTIVATION webhook, received by a third replica without a cache.
	sum := sha256.Sum256([]byte("deactivation of t1"))
	out, err := c.open().ReceiveDeactivation(context.Background(),
		store.Receipt{TenantID: "t1", BodySHA256: sum[:], EventType: "DEACTIVATION"}, false, "test", "")
	if err != nil || out.State != store.StateDeactivated {
		t.Fatalf("deactivation: %+v %v", out, err)
	}
	for _, r := range []*replica{a, b} {
		r.refusedWithin(t1, time.Second, "the school's deactivation")
		r.refusedWithin(t1admin, time.Second, "the school's deactivation")
		// Another school's session is untouched, and still answered from memory.
		r.mustHit(t2)
	}
	// An operator ending the other school (deletion) does the same.
	if _, err := b.store.EndTenant(context.Background(), "t2", true, "operator@example.com", nil); err != nil {
		t.Fatal(err)
	}
	a.refusedWithin(t2, time.Second, "the school's deletion")
	b.refusedWithin(t2, time.Second, "the school's deletion")
}

func TestSchoolChangesReachCachedSessions(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig)
	a, b := c.replica("A", true), c.replica("B", true)
	admin := a.signIn("p", "admin-1", "administrator")
	teacher := a.signIn("p", "teacher-1", "teacher")
	for _, r := range []*replica{a, b} {
		r.mustLoad(admin)
		if s := r.mustHit(admin); s.TenantState != store.StatePendingSetup {
			t.Fatalf("%s: state %q", r.name, s.TenantState)
		}
	}
	// The admin completes the setup on A: both replicas see the school active within a second.
	if state, err := a.store.SaveSetup(context.Background(), "p", map[string]string{"district": "Nord"}, "admin-1", nil); err != nil || state != store.StateActive {
		t.Fatalf("save setup: %q %v", state, err)
	}
	for _, r := range []*replica{a, b} {
		waitFor(t, r.name+" to see the school active", time.Second, func() bool {
			return r.mustLoad(admin).TenantState == store.StateActive
		})
	}
	// The school's name as OneRoster calls it, and a new role of a user (signing in again
	// elsewhere): both reach the copies cached on B.
	b.mustLoad(teacher)
	b.mustHit(teacher)
	if err := a.store.SetTenantName(context.Background(), "p", "Grundschule Süd"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to see the new name", time.Second, func() bool { return b.mustLoad(teacher).TenantName == "Grundschule Süd" })
	b.mustHit(teacher)
	a.signIn("p", "teacher-1", "administrator")
	waitFor(t, "B to see the new role", time.Second, func() bool { return b.mustLoad(teacher).User.Role == "administrator" })
}

func TestCacheIsBypassedWhileTheListenerIsDisconnectedAndFlushedOnReconnect(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig)
	b := c.replica("B", true)
	s1, s2, s3 := b.signIn("t1", "u1", "teacher"), b.signIn("t1", "u2", "teacher"), b.signIn("t1", "u3", "teacher")
	for _, ck := range []string{s1, s2} {
		b.mustLoad(ck)
		b.mustHit(ck)
	}
	db := c.open()
	deleteByHand := func(cookie string) {
		t.Helper()
		// No notification: as an operator's DELETE in psql.
		if _, err := db.Pool().Exec(context.Background(), `DELETE FROM sessions WHERE id_hash = $1`, store.HashID(cookie)); err != nil {
			t.Fatal(err)
		}
	}
	// A row deleted by hand is not notified: the copy lives on (until its TTL).
	deleteByHand(s1)
	b.mustHit(s1)

	// The listener's connection is killed, and its reconnect held up: the cache is not used.
	b.setGate(false)
	if _, err := db.Pool().Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'untis-partner-server tenant listener'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "B to notice the lost connection", 30*time.Second, func() bool { return b.disconnects.Load() == 1 })
	deleteByHand(s2)
	bypass := b.m.lookups.bypass.Value()
	for _, ck := range []string{s1, s2} {
		if _, err := b.load(ck); !errors.Is(err, ErrNoSession) {
			t.Errorf("during the outage a session deleted in the database was accepted: %v", err)
		}
	}
	b.mustLoad(s3)
	b.mustLoad(s3)
	if got := b.m.lookups.bypass.Value() - bypass; got != 4 {
		t.Errorf("%v lookups went to the database during the outage, want 4", got)
	}
	if n := b.m.cache.len(); n != 0 {
		t.Errorf("%d sessions cached while the listener is down", n)
	}

	// Reconnected: the cache starts empty and is used again.
	b.setGate(true)
	waitFor(t, "B to reconnect", 30*time.Second, func() bool { return b.resyncs.Load() == 2 })
	if n := b.m.cache.len(); n != 0 {
		t.Errorf("%d sessions cached right after the reconnect", n)
	}
	b.mustLoad(s3)
	b.mustHit(s3)
	if _, err := b.load(s1); !errors.Is(err, ErrNoSession) {
		t.Errorf("after the reconnect: %v", err)
	}

	// A listener that stops (the server shutting down) also stops the cache.
	b.stopListener()
	bypass = b.m.lookups.bypass.Value()
	b.mustLoad(s3)
	if b.m.lookups.bypass.Value() != bypass+1 {
		t.Error("the cache was used after its listener stopped")
	}
}

func TestCopiesExpireByTTL(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.CacheTTL = 10 * time.Second
	c := newCluster(t, cfg)
	b := c.replica("B", true)
	ck := b.signIn("t1", "u1", "teacher")
	b.mustLoad(ck)
	c.clock.advance(9 * time.Second)
	b.mustHit(ck)
	if _, err := c.open().Pool().Exec(context.Background(), `DELETE FROM sessions WHERE id_hash = $1`, store.HashID(ck)); err != nil {
		t.Fatal(err)
	}
	b.mustHit(ck) // deleted unnoticed: the copy is still fresh
	c.clock.advance(time.Second)
	if _, err := b.load(ck); !errors.Is(err, ErrNoSession) {
		t.Errorf("a copy older than the TTL was used: %v", err)
	}
	if n := b.m.cache.len(); n != 0 {
		t.Errorf("the stale copy is still cached (%d entries)", n)
	}
}

func TestExpiryIsCheckedOnEveryHit(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig) // idle 10 min, absolute 30 min, TTL an hour
	a, b := c.replica("A", true), c.replica("B", true)
	start := c.clock.now()

	// Idle: nobody uses the session for 10 minutes; B's fresh copy must not keep it alive.
	idle := b.signIn("t1", "u1", "teacher")
	b.mustLoad(idle)
	c.clock.advance(10 * time.Minute)
	if _, err := b.load(idle); !errors.Is(err, ErrNoSession) {
		t.Errorf("an idle session was answered from the cache: %v", err)
	}

	// Activity on A moves the idle expiry; B's copy (which says idle) asks the store and lives.
	c.clock.ns.Store(start.UnixNano())
	busy := a.signIn("t1", "u2", "teacher")
	b.mustLoad(busy)
	c.clock.advance(9 * time.Minute)
	a.mustLoad(busy) // writes the activity
	c.clock.advance(2 * time.Minute)
	// (and records its own: the store's last activity was two minutes ago)
	if s := b.mustLoad(busy); !s.IdleExpiresAt.Equal(start.Add(21 * time.Minute)) {
		t.Errorf("B's copy after A's activity: idle expiry %v, want 08:21", s.IdleExpiresAt)
	}
	b.mustHit(busy)

	// Absolute: used every few minutes, it still ends 30 minutes after sign-in, on a hit.
	for range 4 { // 08:15 ... 08:27
		c.clock.advance(4 * time.Minute)
		b.mustLoad(busy)
	}
	c.clock.ns.Store(start.Add(30 * time.Minute).UnixNano())
	hits := b.m.lookups.hit.Value()
	if _, err := b.load(busy); !errors.Is(err, ErrNoSession) {
		t.Errorf("a session past its absolute expiry was accepted: %v", err)
	}
	if b.m.lookups.hit.Value() != hits+1 {
		t.Error("the absolute expiry was not decided by the cached copy")
	}
}

func TestActivityIsWrittenAtMostOnceAMinute(t *testing.T) {
	t.Parallel()
	c := newCluster(t, testConfig)
	b := c.replica("B", true)
	start := c.clock.now()
	ck := b.signIn("t1", "u1", "teacher")
	lastSeen := func() time.Time {
		t.Helper()
		var at time.Time
		if err := b.store.Pool().QueryRow(context.Background(), `SELECT last_seen_at FROM sessions WHERE id_hash = $1`,
			store.HashID(ck)).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	b.mustLoad(ck)
	c.clock.advance(59 * time.Second)
	b.mustHit(ck)
	if !lastSeen().Equal(start) {
		t.Errorf("activity written within the minute: %v", lastSeen())
	}
	c.clock.advance(2 * time.Second)
	// Many requests at once: one writes, all are answered, the copy knows of the write.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := b.load(ck); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	now := start.Add(61 * time.Second)
	if !lastSeen().Equal(now) {
		t.Errorf("last_seen_at = %v, want %v", lastSeen(), now)
	}
	if s := b.mustHit(ck); !s.LastSeenAt.Equal(now) || !s.IdleExpiresAt.Equal(now.Add(10*time.Minute)) {
		t.Errorf("cached copy: last seen %v, idle until %v", s.LastSeenAt, s.IdleExpiresAt)
	}
}

func TestUnknownCookiesDoNotGrowTheCache(t *testing.T) {
	t.Parallel()
	cfg := testConfig
	cfg.CacheSize = 2 * cacheShards
	c := newCluster(t, cfg)
	b := c.replica("B", true)
	for range 2000 {
		if _, err := b.load(NewToken()); !errors.Is(err, ErrNoSession) {
			t.Fatalf("a random cookie: %v", err)
		}
	}
	if n := b.m.cache.len(); n != 0 {
		t.Errorf("unknown cookies left %d entries", n)
	}
	// More live sessions than the bound: the cache keeps at most its size, and every session
	// still works.
	var cookies []string
	for i := range 300 {
		cookies = append(cookies, b.signIn("t1", "u"+string(rune('a'+i%26))+string(rune('a'+i/26)), "teacher"))
	}
	for _, ck := range cookies {
		b.mustLoad(ck)
	}
	if n := b.m.cache.len(); n > cfg.CacheSize || n < cacheShards/2 {
		t.Errorf("%d entries cached, bound %d", n, cfg.CacheSize)
	}
	for _, ck := range cookies {
		b.mustLoad(ck)
	}
}

func TestWithoutListenerOrCacheEveryCheckReadsTheStore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    Config
		listen bool
	}{
		{"cache on, no listener", testConfig, false},
		{"cache off", Config{IdleTimeout: time.Hour}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, tc.cfg)
			b := c.replica("B", tc.listen)
			ck := b.signIn("t1", "u1", "teacher")
			for range 3 {
				b.mustLoad(ck)
			}
			if got := b.m.lookups.bypass.Value(); got != 3 {
				t.Errorf("%v of 3 lookups read the store", got)
			}
			if _, err := c.open().Pool().Exec(context.Background(), `DELETE FROM sessions`); err != nil {
				t.Fatal(err)
			}
			if _, err := b.load(ck); !errors.Is(err, ErrNoSession) {
				t.Errorf("a deleted session: %v", err)
			}
		})
	}
}

// A lookup that read the store before a change was notified must not cache what it read.
func TestCacheRefusesWhatWasReadBeforeAChange(t *testing.T) {
	t.Parallel()
	c := newCache(time.Minute, 100)
	c.flush(true)
	now := time.Now()
	s := &store.Session{TenantID: "t1", ExpiresAt: now.Add(time.Hour), IdleExpiresAt: now.Add(time.Hour)}
	key := sha256.Sum256([]byte("id"))
	other := sha256.Sum256([]byte("other"))
	for _, tc := range []struct {
		name   string
		change func()
		cached bool
	}{
		{"nothing", func() {}, true},
		{"this session ended", func() { c.drop(key[:]) }, false},
		{"the school changed", func() { c.dropTenant("t9") }, false},
		{"a flush", func() { c.flush(true) }, false},
		{"the listener disconnected", func() { c.flush(false) }, false},
	} {
		c.flush(true)
		mk := c.mark(&key)
		tc.change()
		c.put(&key, s, now, mk)
		if got := c.get(&key) != nil; got != tc.cached {
			t.Errorf("%s between read and insert: cached %v, want %v", tc.name, got, tc.cached)
		}
	}
	// A session ending in another shard does not stop this one from being cached.
	c.flush(true)
	for other[0]%cacheShards == key[0]%cacheShards {
		other = sha256.Sum256(other[:])
	}
	mk := c.mark(&key)
	c.drop(other[:])
	c.put(&key, s, now, mk)
	if c.get(&key) == nil {
		t.Error("a sign-out in another shard kept this session out of the cache")
	}
}

// Every (re)connect of the listener empties the cache, whatever happened before it: notifications
// sent while it was not listening are lost.
func TestResyncEmptiesTheCache(t *testing.T) {
	t.Parallel()
	m := New(Config{CacheTTL: time.Minute})
	h := m.ChangeHandler()
	h.Resync()
	now := time.Now()
	key := sha256.Sum256([]byte("id"))
	m.cache.put(&key, &store.Session{TenantID: "t1", ExpiresAt: now.Add(time.Hour)}, now, m.cache.mark(&key))
	if m.cache.len() != 1 {
		t.Fatal("not cached")
	}
	h.Resync()
	if m.cache.len() != 0 || !m.cache.trusted.Load() {
		t.Errorf("after a resync: %d entries, trusted %v", m.cache.len(), m.cache.trusted.Load())
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"store", 0}, {"cached", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			dbURL := pgtest.NewDatabase(b)
			st, err := store.Open(context.Background(), dbURL, nil, store.Options{MaxConns: 8})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if err := st.UpsertTenant(context.Background(), "t1", store.StateActive, "Schule"); err != nil {
				b.Fatal(err)
			}
			m := New(Config{Store: st, IdleTimeout: time.Hour, CacheTTL: bc.ttl})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if bc.ttl > 0 {
				go st.ListenTenantChanges(ctx, slog.New(slog.DiscardHandler), m.ChangeHandler())
				for !m.cache.trusted.Load() {
					time.Sleep(time.Millisecond)
				}
			}
			w := httptest.NewRecorder()
			if _, err := m.Start(ctx, w, httptest.NewRequest(http.MethodGet, "/", nil),
				store.User{TenantID: "t1", Sub: "u1", Role: "teacher", GivenName: "Jürgen"}, map[string]string{"lesson_id": "L1"}); err != nil {
				b.Fatal(err)
			}
			cookie := w.Result().Cookies()[0]
			req := httptest.NewRequest(http.MethodGet, "/api/me", nil)
			req.AddCookie(cookie)
			b.Run("Load", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := m.Load(ctx, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			// The lookup alone: Load without reading the Cookie header (net/http's parser,
			// which allocates).
			b.Run("lookup", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := m.lookup(ctx, cookie.Value); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}
