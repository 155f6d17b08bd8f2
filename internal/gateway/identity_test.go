package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/store"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// countingSigner signs with a counter instead of a key, so the tests can see each signature.
type countingSigner struct {
	mu    sync.Mutex
	clock *fakeClock
	n     int
	last  assertion.Identity
	fail  error
}

func (s *countingSigner) Sign(id assertion.Identity) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return "", time.Time{}, s.fail
	}
	s.n++
	s.last = id
	return fmt.Sprintf("token-%d", s.n), s.clock.Now().Add(5 * time.Minute), nil
}

func (s *countingSigner) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

type fakeSetup struct {
	mu      sync.Mutex
	answers map[string]map[string]string
	reads   int
}

func (f *fakeSetup) SetupAnswers(_ context.Context, tenantID string) (map[string]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	out := map[string]string{}
	for k, v := range f.answers[tenantID] {
		out[k] = v
	}
	return out, nil
}

func (f *fakeSetup) set(tenantID, k, v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.answers[tenantID] == nil {
		f.answers[tenantID] = map[string]string{}
	}
	f.answers[tenantID][k] = v
}

func (f *fakeSetup) readCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads
}

func testSession(id, tenant string) *store.Session {
	return &store.Session{
		IDHash: []byte(id), TenantID: tenant, Sub: "u-" + id, TenantState: store.StateActive, TenantName: "Gymnasium Süd",
		Launch: map[string]string{"lesson_id": "L1", "school": "Gymnasium Süd"},
		User:   store.User{TenantID: tenant, Sub: "u-" + id, Role: "teacher", GivenName: "Jürgen", FamilyName: "Groß", Email: "j@x.example"},
	}
}

func newTestIdentities(max int) (*Identities, *countingSigner, *fakeSetup, *fakeClock) {
	clock := &fakeClock{now: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}
	signer := &countingSigner{clock: clock}
	setup := &fakeSetup{answers: map[string]map[string]string{"1001": {"district": "Nord-Ost", "code": "123456"}}}
	ids := NewIdentities(IdentitiesConfig{Signer: signer, Setup: setup, Now: clock.Now, MaxCached: max})
	return ids, signer, setup, clock
}

func TestIdentityHeadersOfASession(t *testing.T) {
	t.Parallel()
	ids, signer, _, _ := newTestIdentities(0)
	id, err := ids.For(context.Background(), testSession("s1", "1001"))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	id.Set(h)
	want := map[string]string{
		HeaderTenantID: "1001", HeaderUserID: "u-s1", HeaderRole: "teacher", HeaderGivenName: "J%C3%BCrgen",
		HeaderFamilyName: "Gro%C3%9F", HeaderEmail: "j%40x.example", HeaderSchoolName: "Gymnasium%20S%C3%BCd",
		HeaderLaunch: "lesson_id=L1&school=Gymnasium+S%C3%BCd", HeaderSetup: "code=123456&district=Nord-Ost",
		HeaderIdentity: "token-1",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
		if id.Get(k) != v {
			t.Errorf("Get(%s) = %q", k, id.Get(k))
		}
	}
	if len(h) != len(IdentityHeaders) {
		t.Errorf("%d headers, want %d", len(h), len(IdentityHeaders))
	}
	// The assertion says the same.
	a := signer.last
	if a.TenantID != "1001" || a.UserID != "u-s1" || a.GivenName != "Jürgen" || a.SchoolName != "Gymnasium Süd" ||
		a.Launch["lesson_id"] != "L1" || a.Setup["district"] != "Nord-Ost" {
		t.Errorf("assertion identity %+v", a)
	}
	q, _ := url.ParseQuery(h.Get(HeaderSetup))
	if q.Get("district") != "Nord-Ost" {
		t.Errorf("setup header does not decode: %v", q)
	}
}

func TestAnAssertionIsReusedUntilHalfItsLifetime(t *testing.T) {
	t.Parallel()
	ids, signer, _, clock := newTestIdentities(0)
	ctx := context.Background()
	first, err := ids.For(ctx, testSession("s1", "1001"))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		clock.Advance(time.Second)
		id, err := ids.For(ctx, testSession("s1", "1001")) // a fresh Session value, as every load gives
		if err != nil {
			t.Fatal(err)
		}
		if id != first {
			t.Fatal("a busy session was signed again before half the assertion's lifetime")
		}
	}
	if signer.count() != 1 {
		t.Fatalf("%d signatures for one session in 100 s", signer.count())
	}
	clock.Advance(2*time.Minute + 30*time.Second - 100*time.Second)
	id, err := ids.For(ctx, testSession("s1", "1001"))
	if err != nil {
		t.Fatal(err)
	}
	if id == first || signer.count() != 2 || id.Get(HeaderIdentity) != "token-2" {
		t.Errorf("at half the lifetime: %d signatures, token %q", signer.count(), id.Get(HeaderIdentity))
	}
	// Another session has its own assertion.
	if other, _ := ids.For(ctx, testSession("s2", "1001")); other.Get(HeaderIdentity) != "token-3" {
		t.Errorf("second session's token %q", other.Get(HeaderIdentity))
	}
}

func TestAChangedIdentityIsSignedAgain(t *testing.T) {
	t.Parallel()
	ids, signer, setup, _ := newTestIdentities(0)
	ctx := context.Background()
	s := testSession("s1", "1001")
	if _, err := ids.For(ctx, s); err != nil {
		t.Fatal(err)
	}
	changes := []func(*store.Session){
		func(s *store.Session) { s.User.Role = "administrator" },
		func(s *store.Session) { s.User.GivenName = "Jörg" },
		func(s *store.Session) { s.TenantName = "Gymnasium Nord" },
		func(s *store.Session) { s.Launch = map[string]string{"exam_id": "E1"} },
	}
	for i := range changes {
		s := testSession("s1", "1001")
		for _, c := range changes[:i+1] {
			c(s)
		}
		if _, err := ids.For(ctx, s); err != nil {
			t.Fatal(err)
		}
		if signer.count() != i+2 {
			t.Fatalf("change %d did not sign again", i)
		}
	}
	// A school's setup answers change: another replica saved them and the notification came.
	setup.set("1001", "district", "Süd")
	id, _ := ids.For(ctx, testSession("s1", "1001"))
	if id.Get(HeaderSetup) != "code=123456&district=Nord-Ost" {
		t.Errorf("without a notification the cached answers stay: %q", id.Get(HeaderSetup))
	}
	ids.ChangeHandler().Changed("1001")
	id, _ = ids.For(ctx, testSession("s1", "1001"))
	if id.Get(HeaderSetup) != "code=123456&district=S%C3%BCd" || signer.last.Setup["district"] != "Süd" {
		t.Errorf("after the notification: %q, assertion %v", id.Get(HeaderSetup), signer.last.Setup)
	}
	// Resync (a listener reconnected) drops every school's answers.
	reads := setup.readCount()
	ids.ChangeHandler().Resync()
	if _, err := ids.For(ctx, testSession("s1", "1001")); err != nil {
		t.Fatal(err)
	}
	if setup.readCount() != reads+1 {
		t.Errorf("answers not read again after a resync")
	}
}

func TestSetupAnswersAreReadOncePerSchool(t *testing.T) {
	t.Parallel()
	ids, _, setup, clock := newTestIdentities(0)
	ctx := context.Background()
	for i := range 50 {
		if _, err := ids.For(ctx, testSession(fmt.Sprint("s", i), "1001")); err != nil {
			t.Fatal(err)
		}
	}
	if setup.readCount() != 1 {
		t.Errorf("%d reads of one school's answers", setup.readCount())
	}
	// The backstop: answers are read again after setupTTL even without a notification.
	clock.Advance(setupTTL)
	if _, err := ids.For(ctx, testSession("s1", "1001")); err != nil {
		t.Fatal(err)
	}
	if setup.readCount() != 2 {
		t.Errorf("%d reads after the backstop", setup.readCount())
	}
}

func TestTheIdentityCacheIsBounded(t *testing.T) {
	t.Parallel()
	ids, _, _, _ := newTestIdentities(100)
	ctx := context.Background()
	for i := range 1000 {
		if _, err := ids.For(ctx, testSession(fmt.Sprint("s", i), "1001")); err != nil {
			t.Fatal(err)
		}
		if n := ids.Cached(); n > 100 {
			t.Fatalf("%d identities kept, bound 100", n)
		}
	}
}

func TestOversizedValuesAreBounded(t *testing.T) {
	t.Parallel()
	ids, signer, setup, _ := newTestIdentities(0)
	s := testSession("s1", "1001")
	s.User.GivenName = string(make([]byte, 5000))
	s.Launch = map[string]string{}
	for i := range 24 {
		s.Launch[fmt.Sprintf("k%02d", i)] = fmt.Sprintf("%0512d", i)
	}
	setup.set("1001", "essay", string(make([]byte, 3000)))
	id, err := ids.For(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, name := range IdentityHeaders {
		total += len(name) + len(id.Get(name))
	}
	if len(id.Get(HeaderGivenName)) > 3*maxText || len(id.Get(HeaderLaunch)) > maxForm || len(id.Get(HeaderSetup)) > maxForm {
		t.Errorf("header sizes: given %d, launch %d, setup %d", len(id.Get(HeaderGivenName)), len(id.Get(HeaderLaunch)), len(id.Get(HeaderSetup)))
	}
	if total > 8<<10 {
		t.Errorf("identity headers take %d bytes", total)
	}
	if len(signer.last.Launch) == 0 || len(signer.last.Launch) == 24 || signer.last.Setup["essay"] != "" || signer.last.Setup["code"] != "123456" {
		t.Errorf("the assertion does not carry exactly what fits: %d launch pairs, setup %v", len(signer.last.Launch), len(signer.last.Setup))
	}
}

func TestASignerFailureIsAnError(t *testing.T) {
	t.Parallel()
	ids, signer, _, _ := newTestIdentities(0)
	signer.fail = errors.New("no key")
	if _, err := ids.For(context.Background(), testSession("s1", "1001")); err == nil {
		t.Fatal("no error")
	}
}

// Every request of a session shares the identity's header lines (no allocation per request);
// what one request's handling adds to its own headers never reaches the identity or another
// request.
func TestIdentityHeaderLinesAreSharedSafely(t *testing.T) {
	t.Parallel()
	ids, _, _, _ := newTestIdentities(0)
	id, err := ids.For(context.Background(), testSession("s1", "1001"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := http.Header{}, http.Header{}
	id.Set(a)
	id.Set(b)
	a.Add(HeaderRole, "administrator")
	a[HeaderTenantID] = append(a[HeaderTenantID], "1002")
	a.Set(HeaderUserID, "someone-else")
	for _, h := range []http.Header{b, func() http.Header { c := http.Header{}; id.Set(c); return c }()} {
		if got := h.Values(HeaderRole); len(got) != 1 || got[0] != "teacher" {
			t.Errorf("role lines %q", got)
		}
		if got := h.Values(HeaderTenantID); len(got) != 1 || got[0] != "1001" {
			t.Errorf("tenant lines %q", got)
		}
		if got := h.Values(HeaderUserID); len(got) != 1 || got[0] != "u-s1" {
			t.Errorf("user lines %q", got)
		}
	}
	if id.Get(HeaderRole) != "teacher" {
		t.Errorf("the identity changed: %q", id.Get(HeaderRole))
	}
}

// A user named by the platform (the Calendar API), with or without a profile from a sign-in:
// the same headers and assertion as a session's, without launch context, signed each time.
func TestIdentityOfAUserWithoutASession(t *testing.T) {
	t.Parallel()
	ids, signer, _, _ := newTestIdentities(0)
	known := store.User{TenantID: "1001", Sub: "u-7", Role: "student", GivenName: "Zoë", FamilyName: "Öz", Email: "z@x.example"}
	for round := 1; round <= 2; round++ {
		id, err := ids.ForUser(context.Background(), known, "Gymnasium Süd")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			HeaderTenantID: "1001", HeaderUserID: "u-7", HeaderRole: "student", HeaderGivenName: "Zo%C3%AB",
			HeaderFamilyName: "%C3%96z", HeaderEmail: "z%40x.example", HeaderSchoolName: "Gymnasium%20S%C3%BCd",
			HeaderLaunch: "", HeaderSetup: "code=123456&district=Nord-Ost", HeaderIdentity: fmt.Sprintf("token-%d", round),
		}
		for k, v := range want {
			if got := id.Get(k); got != v {
				t.Errorf("round %d: %s = %q, want %q", round, k, got, v)
			}
		}
	}
	if a := signer.last; a.UserID != "u-7" || a.Role != "student" || len(a.Launch) != 0 || a.Setup["code"] != "123456" {
		t.Errorf("assertion identity %+v", a)
	}
	if ids.Cached() != 0 {
		t.Errorf("%d identities cached for users without a session", ids.Cached())
	}
	// Someone who never signed in: the school and the id, nothing else.
	id, err := ids.ForUser(context.Background(), store.User{TenantID: "1002", Sub: "b953ec5f"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range IdentityHeaders {
		want := map[string]string{HeaderTenantID: "1002", HeaderUserID: "b953ec5f", HeaderIdentity: "token-3"}[k]
		if got := id.Get(k); got != want {
			t.Errorf("unknown user: %s = %q, want %q", k, got, want)
		}
	}
}
