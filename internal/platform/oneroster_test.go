package platform_test

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
)

func TestPagingWalksALargeSchool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	// 1,050 users: 40 teachers, 1,000 students, 5 admins, 5 parents.
	tid := e.school(platformsim.TenantSpec{ID: "3001", Teachers: 40, Students: 1000, Admins: 5, Parents: 5, Classes: 30})
	want := e.sim.Users(tid)
	if len(want) != 1050 {
		t.Fatalf("seeded %d users, want 1050", len(want))
	}
	got, err := platform.Collect(e.clients.For(tid).Users(e.ctx(), platform.ListOptions{PageSize: 100}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("walked %d users, want %d", len(got), len(want))
	}
	seen := map[string]bool{}
	for i, u := range got {
		if seen[u.SourcedID] {
			t.Fatalf("user %s twice", u.SourcedID)
		}
		seen[u.SourcedID] = true
		if u.SourcedID != want[i].SourcedID {
			t.Fatalf("user %d = %s, want %s (platform order)", i, u.SourcedID, want[i].SourcedID)
		}
	}
	// Pages of 100 at offsets 0..1000: 11 requests, the last one short (50).
	var offsets []string
	for _, c := range e.sim.APICalls() {
		q, _ := url.ParseQuery(c.Query)
		if c.Path != "/ims/oneroster/v1p1/users" || q.Get("limit") != "100" {
			t.Errorf("unexpected call %s?%s", c.Path, c.Query)
		}
		offsets = append(offsets, q.Get("offset"))
	}
	wantOffsets := []string{"0", "100", "200", "300", "400", "500", "600", "700", "800", "900", "1000"}
	if !slices.Equal(offsets, wantOffsets) {
		t.Errorf("offsets = %v, want %v", offsets, wantOffsets)
	}
	if n := e.tokenRequests(tid); n != 1 {
		t.Errorf("token requests = %d, want 1 for the whole walk", n)
	}
}

func TestPagingEndsOnAnExactMultiple(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	// 20 teachers, pages of 10: two full pages, then an empty one ends the walk.
	tid := e.school(platformsim.TenantSpec{ID: "3002", Teachers: 20})
	got, err := platform.Collect(e.clients.For(tid).Teachers(e.ctx(), platform.ListOptions{PageSize: 10}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Errorf("got %d teachers, want 20", len(got))
	}
	if n := e.apiCalls(tid); n != 3 {
		t.Errorf("API calls = %d, want 3", n)
	}
}

func TestStoppingEarlyMakesNoMoreCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "3003", Students: 50})
	n := 0
	for _, err := range e.clients.For(tid).Students(e.ctx(), platform.ListOptions{PageSize: 10}) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 15 {
			break
		}
	}
	if calls := e.apiCalls(tid); calls != 2 {
		t.Errorf("API calls = %d, want 2 for 15 users in pages of 10", calls)
	}
}

func TestFilterSortAndOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "3004", Teachers: 12, Students: 30})
	got, err := platform.Collect(e.clients.For(tid).Users(e.ctx(), platform.ListOptions{
		Filter: "role='teacher'", Sort: "familyName", OrderBy: "desc", PageSize: 5,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 12 {
		t.Fatalf("got %d users, want the 12 teachers", len(got))
	}
	for i, u := range got {
		if u.Role != platform.RoleTeacher {
			t.Errorf("user %s has role %s", u.SourcedID, u.Role)
		}
		if i > 0 && got[i-1].FamilyName < u.FamilyName {
			t.Errorf("not sorted by familyName desc: %q before %q", got[i-1].FamilyName, u.FamilyName)
		}
	}
	// A filter the platform does not understand is a clear ErrBadRequest with its message.
	_, err = platform.Collect(e.clients.For(tid).Users(e.ctx(), platform.ListOptions{Filter: "shoeSize='42'"}))
	var ae *platform.APIError
	if !errors.As(err, &ae) || !errors.Is(err, platform.ErrBadRequest) || ae.Status != http.StatusBadRequest ||
		ae.Code != "invalid_filter_field" || !strings.Contains(ae.Message, "shoeSize") {
		t.Errorf("err = %#v, want ErrBadRequest with the platform's code and message", err)
	}
}

func TestClassesMembersEnrollmentsAndSchools(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "3005", Teachers: 4, Students: 16, Classes: 3})
	cl := e.clients.For(tid)
	ctx := e.ctx()

	classes, err := platform.Collect(cl.Classes(ctx, platform.ListOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	wantClasses := e.sim.Classes(tid)
	if len(classes) != len(wantClasses) || len(classes) == 0 {
		t.Fatalf("got %d classes, want %d", len(classes), len(wantClasses))
	}
	c0 := classes[0]
	if c0.Title == "" || c0.School.SourcedID == "" || c0.Metadata == nil {
		t.Errorf("class fields missing: %+v", c0)
	}
	one, err := cl.Class(ctx, c0.SourcedID)
	if err != nil || one.SourcedID != c0.SourcedID || one.Title != c0.Title {
		t.Errorf("Class(%s) = %+v, %v", c0.SourcedID, one, err)
	}

	enrollments, err := platform.Collect(cl.Enrollments(ctx, platform.ListOptions{Filter: "class.sourcedId='" + c0.SourcedID + "'"}))
	if err != nil {
		t.Fatal(err)
	}
	var wantStudents, wantTeachers []string
	for _, en := range enrollments {
		if en.Class.SourcedID != c0.SourcedID {
			t.Errorf("enrollment %s of class %s in a filtered list", en.SourcedID, en.Class.SourcedID)
		}
		switch en.Role {
		case platform.RoleStudent:
			wantStudents = append(wantStudents, en.User.SourcedID)
		case platform.RoleTeacher:
			wantTeachers = append(wantTeachers, en.User.SourcedID)
		}
	}
	if len(wantStudents) == 0 || len(wantTeachers) == 0 {
		t.Fatalf("class %s has %d students and %d teachers enrolled", c0.SourcedID, len(wantStudents), len(wantTeachers))
	}
	ids := func(us []platform.User) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.SourcedID)
		}
		slices.Sort(out)
		return out
	}
	students, err := platform.Collect(cl.ClassStudents(ctx, c0.SourcedID, platform.ListOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	teachers, err := platform.Collect(cl.ClassTeachers(ctx, c0.SourcedID, platform.ListOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(wantStudents)
	slices.Sort(wantTeachers)
	if !slices.Equal(ids(students), wantStudents) || !slices.Equal(ids(teachers), wantTeachers) {
		t.Errorf("class members = %v / %v, want %v / %v", ids(students), ids(teachers), wantStudents, wantTeachers)
	}

	schools, err := platform.Collect(cl.Schools(ctx, platform.ListOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	org, _ := e.sim.School(tid)
	if len(schools) != 1 || schools[0].SourcedID != org.SourcedID || schools[0].Type != "school" || schools[0].Name != org.Name {
		t.Errorf("schools = %+v, want the one school %s", schools, org.Name)
	}
	if s, err := cl.School(ctx, org.SourcedID); err != nil || s.Name != org.Name {
		t.Errorf("School = %+v, %v", s, err)
	}
}

func TestTypedErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "3006"})
	noRoster := e.school(platformsim.TenantSpec{ID: "3007", Scopes: []string{"openid"}})

	_, err := e.clients.For(tid).User(e.ctx(), "no-such-user")
	var ae *platform.APIError
	if !errors.As(err, &ae) || !errors.Is(err, platform.ErrNotFound) || ae.Status != 404 || ae.Endpoint != "oneroster.users" || ae.TenantID != tid {
		t.Errorf("unknown user: err = %#v, want ErrNotFound", err)
	}
	// An application without OneRoster permission at a school: 403, with the platform's words
	// for the operator, and a plain sentence for the user.
	_, err = e.clients.For(noRoster).User(e.ctx(), e.user(noRoster, platformsim.RoleTeacher).SourcedID)
	if !errors.As(err, &ae) || !errors.Is(err, platform.ErrForbidden) || !strings.Contains(ae.Message, "scope") {
		t.Errorf("no permission: err = %#v, want ErrForbidden with the platform's message", err)
	}
	if msg := platform.PublicMessage(err); strings.Contains(msg, ae.Message) || !strings.Contains(msg, "does not allow") {
		t.Errorf("PublicMessage = %q", msg)
	}
	// A 403 is the platform talking to a valid token: no failing mark, no backoff.
	if tn := e.tenant(noRoster); tn.CredentialsFailingSince != nil {
		t.Errorf("a 403 marked the credentials failing")
	}
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{client: platform.Config{MaxAttempts: 3}})
	tid := e.school(platformsim.TenantSpec{ID: "3008"})
	u := e.user(tid, platformsim.RoleTeacher)
	cl := e.clients.For(tid)

	// 429 with Retry-After: 1 (the simulator's), then success.
	if err := e.sim.FailNextAPICalls(tid, 1, http.StatusTooManyRequests); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatalf("after one 429: %v", err)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("retried after %v, before the Retry-After of 1s", waited)
	}
	// 500 (no Retry-After) twice, then success, within three attempts.
	if err := e.sim.FailNextAPICalls(tid, 2, http.StatusInternalServerError); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.User(e.ctx(), u.SourcedID); err != nil {
		t.Fatalf("after two 500s: %v", err)
	}
	// Three 500s exhaust the attempts: ErrUnavailable with the platform's code.
	if err := e.sim.FailNextAPICalls(tid, 3, http.StatusInternalServerError); err != nil {
		t.Fatal(err)
	}
	_, err := cl.User(e.ctx(), u.SourcedID)
	var ae *platform.APIError
	if !errors.As(err, &ae) || !errors.Is(err, platform.ErrUnavailable) || ae.Status != 500 || ae.Code != "internal_server_error" {
		t.Errorf("err = %#v, want ErrUnavailable after 3 attempts", err)
	}
	if m := e.metric("platform_retries_total "); m != "platform_retries_total 5" {
		t.Errorf("metric %q, want 5 retries", m)
	}
	// None of this is the credentials' fault.
	if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
		t.Errorf("server errors marked the credentials failing")
	}
}

func TestUserTokenCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	tid := e.school(platformsim.TenantSpec{ID: "3009", Students: 5})
	student := e.user(tid, platformsim.RoleStudent)
	teacher := e.user(tid, platformsim.RoleTeacher)
	studentToken, err := e.sim.IssueUserToken(tid, student.SourcedID)
	if err != nil {
		t.Fatal(err)
	}
	cl := e.clients.ForUser(tid, studentToken)
	// A student may read themself ...
	if u, err := cl.User(e.ctx(), student.SourcedID); err != nil || u.SourcedID != student.SourcedID {
		t.Fatalf("student reads self: %+v, %v", u, err)
	}
	// ... but not others: the platform's user-context permissions apply.
	if _, err := cl.User(e.ctx(), teacher.SourcedID); !errors.Is(err, platform.ErrForbidden) {
		t.Errorf("student reads a teacher: err = %v, want ErrForbidden", err)
	}
	teacherToken, _ := e.sim.IssueUserToken(tid, teacher.SourcedID)
	if got, err := platform.Collect(e.clients.ForUser(tid, teacherToken).Students(e.ctx(), platform.ListOptions{})); err != nil || len(got) != 5 {
		t.Errorf("teacher lists students: %d, %v", len(got), err)
	}
	// No client-credentials token was involved.
	if n := e.tokenRequests(tid); n != 0 {
		t.Errorf("token requests = %d, want 0 for user-token calls", n)
	}
	for _, c := range e.sim.APICalls() {
		if c.TokenKind != platformsim.TokenKindAccessToken {
			t.Errorf("call %s with a %s token", c.Path, c.TokenKind)
		}
	}
	// A revoked user token is the caller's problem: no refetch, no failing mark.
	_ = e.sim.RevokeTokens(tid)
	if _, err := cl.User(e.ctx(), student.SourcedID); !errors.Is(err, platform.ErrUnauthorized) || errors.Is(err, platform.ErrCredentialsRejected) {
		t.Errorf("revoked user token: err = %v, want ErrUnauthorized only", err)
	}
	if tn := e.tenant(tid); tn.CredentialsFailingSince != nil {
		t.Errorf("a user's 401 marked the school's credentials failing")
	}
}

func TestTenantsNeverShareTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	a := e.school(platformsim.TenantSpec{ID: "3010", Name: "Schule A"})
	b := e.school(platformsim.TenantSpec{ID: "3011", Name: "Schule B"})
	ua, ub := e.user(a, platformsim.RoleTeacher), e.user(b, platformsim.RoleTeacher)

	for range 3 {
		if _, err := e.clients.For(a).User(e.ctx(), ua.SourcedID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.clients.For(b).User(e.ctx(), ub.SourcedID); err != nil {
			t.Fatal(err)
		}
	}
	if e.tokenRequests(a) != 1 || e.tokenRequests(b) != 1 {
		t.Errorf("token requests A=%d B=%d, want one each", e.tokenRequests(a), e.tokenRequests(b))
	}
	// Every call for a user of A was made with A's token and vice versa: the simulator records
	// the tenant of the token each call carried.
	for _, c := range e.sim.APICalls() {
		want := a
		if strings.HasSuffix(c.Path, "/"+ub.SourcedID) {
			want = b
		}
		if c.TenantID != want {
			t.Errorf("call %s carried a token of tenant %s, want %s", c.Path, c.TenantID, want)
		}
	}
	// Asking A's client for B's user: A's token cannot see it, and "not found" is all it says.
	if _, err := e.clients.For(a).User(e.ctx(), ub.SourcedID); !errors.Is(err, platform.ErrNotFound) {
		t.Errorf("B's user through A: err = %v, want ErrNotFound", err)
	}
	// B's credentials at A's token endpoint are refused.
	_, secretB, passwordB, _ := e.sim.Credentials(b)
	if err := e.clients.ProveCredentials(e.ctx(), a, platformsim.DefaultClientID, secretB, passwordB); !errors.Is(err, platform.ErrCredentialsRejected) {
		t.Errorf("B's credentials for A: err = %v, want ErrCredentialsRejected", err)
	}
	// A failure of A's credentials leaves B alone.
	_ = e.sim.FailNextAPICalls(a, 2, http.StatusUnauthorized)
	if _, err := e.clients.For(a).User(e.ctx(), ua.SourcedID); !errors.Is(err, platform.ErrCredentialsRejected) {
		t.Fatalf("A: err = %v", err)
	}
	if _, err := e.clients.For(b).User(e.ctx(), ub.SourcedID); err != nil {
		t.Errorf("B after A's failure: %v", err)
	}
	if tn := e.tenant(b); tn.CredentialsFailingSince != nil {
		t.Errorf("A's failure marked B")
	}
}
