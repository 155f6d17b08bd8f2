package internalapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

const (
	orPath     = "/ims/oneroster/v1p1"
	externPath = "/WebUntis/api/rest/extern/v1/students"
)

func schoolPath(tenantID, p string) string { return "/v1/schools/" + tenantID + p }

type usersPage struct {
	Users []platformsim.User `json:"users"`
}

type studentsPage struct {
	Students []platformsim.ExternStudent `json:"students"`
}

func decodeAs[T any](t testing.TB, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("decode %T: %v: %s", v, err, a)
	}
	return v
}

// OneRoster and extern reads for two schools, many at once: each answer holds only its own
// school's data, and every call the platform saw carried a token of the school asked for. No
// token of one school ever reached the other's data.
func TestTwoSchoolsNeverMixTokensOrData(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	a := e.school(platformsim.TenantSpec{ID: "1001", Teachers: 3, Students: 12})
	b := e.school(platformsim.TenantSpec{ID: "1002", Teachers: 4, Students: 9})
	want := map[string][]string{}
	for _, id := range []string{a, b} {
		for _, u := range e.sim.Users(id) {
			want[id] = append(want[id], u.SourcedID)
		}
	}

	var wg sync.WaitGroup
	for i := range 20 {
		tid := []string{a, b}[i%2]
		wg.Go(func() {
			ans := e.get(schoolPath(tid, orPath+"/users?limit=1000"))
			if ans.status != http.StatusOK || ans.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s users: %s", tid, ans)
				return
			}
			var got []string
			for _, u := range decodeAs[usersPage](t, ans).Users {
				got = append(got, u.SourcedID)
			}
			if !slices.Equal(got, want[tid]) {
				t.Errorf("school %s got users %v, want its own %v", tid, got, want[tid])
			}
			ext := e.get(schoolPath(tid, externPath))
			if ext.status != http.StatusOK || !slices.Equal(decodeAs[studentsPage](t, ext).Students, e.sim.ExternStudents(tid)) {
				t.Errorf("school %s extern students: %s", tid, ext)
			}
		})
	}
	wg.Wait()

	fingerprints := map[string]string{} // fingerprint -> school
	calls := e.calls()
	if len(calls) != 40 {
		t.Errorf("the platform saw %d calls, want 40", len(calls))
	}
	for _, c := range calls {
		if c.Status != http.StatusOK || c.TokenKind != platformsim.TokenKindClientCredentials {
			t.Errorf("call %+v", c)
		}
		if prev, ok := fingerprints[c.TokenFingerprint]; ok && prev != c.TenantID {
			t.Errorf("token %s used for schools %s and %s", c.TokenFingerprint, prev, c.TenantID)
		}
		fingerprints[c.TokenFingerprint] = c.TenantID
	}
	// One token per school (the cache), each used only for its own school.
	if len(fingerprints) != 2 {
		t.Errorf("tokens used: %v, want one per school", fingerprints)
	}
	for _, id := range []string{a, b} {
		if n := e.sim.Stats().TokenRequestCount(id, platformsim.GrantClientCredentials); n != 1 {
			t.Errorf("school %s: %d token requests, want 1", id, n)
		}
	}
	// A school's own token cannot read the other school's objects: the platform answers 404,
	// and so does the API.
	other := e.get(schoolPath(a, orPath+"/users/"+want[b][0]))
	if p := other.wantProblem(t, http.StatusNotFound, "not-found"); p.PlatformStatus != http.StatusNotFound || p.TenantID != a {
		t.Errorf("another school's user: %+v", p)
	}
	e.assertNoSecret(other)
}

// The platform invalidates the token in use: the call gets a 401, the server fetches a new token
// once and repeats the call once, and the app sees only the success. The same holds for a write,
// which is then made exactly once.
func TestA401MidUseRefetchesOnceAndSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{writePaths: "POST " + externPath})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	if ans := e.get(schoolPath(a, orPath+"/users?limit=5")); ans.status != http.StatusOK {
		t.Fatal(ans)
	}
	if err := e.sim.FailNextAPICalls(a, 1, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	if ans := e.get(schoolPath(a, orPath+"/users?limit=5")); ans.status != http.StatusOK || len(decodeAs[usersPage](t, ans).Users) != 5 {
		t.Fatalf("after the platform's 401: %s", ans)
	}
	calls := e.calls()
	if len(calls) != 3 || calls[1].Status != http.StatusUnauthorized || calls[2].Status != http.StatusOK ||
		calls[1].TokenFingerprint != calls[0].TokenFingerprint || calls[2].TokenFingerprint == calls[1].TokenFingerprint {
		t.Errorf("calls: %+v, want 200, then 401 with the same token, then 200 with a new one", calls)
	}
	if n := e.sim.Stats().TokenRequestCount(a, platformsim.GrantClientCredentials); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}

	// A write: refused with 401 before anything was done, so it is sent once more.
	if err := e.sim.FailNextAPICalls(a, 1, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	before := len(e.sim.ExternStudents(a))
	ans := e.api(http.MethodPost, schoolPath(a, externPath),
		strings.NewReader(`{"externKey":"K-1","shortName":"k.one","forename":"K","lastName":"One"}`),
		http.Header{"Content-Type": {"application/json"}})
	if ans.status != http.StatusCreated {
		t.Fatalf("write after a 401: %s", ans)
	}
	if n := len(e.sim.ExternStudents(a)); n != before+1 {
		t.Errorf("%d students after the write, want %d", n, before+1)
	}
	var posts []platformsim.APICall
	for _, c := range e.calls() {
		if c.Method == http.MethodPost {
			posts = append(posts, c)
		}
	}
	if len(posts) != 2 || posts[0].Status != http.StatusUnauthorized || posts[1].Status != http.StatusCreated {
		t.Errorf("POSTs the platform saw: %+v", posts)
	}
	// A second 401 in a row is the credentials failing: the app is told so.
	if err := e.sim.FailNextAPICalls(a, 2, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	failing := e.get(schoolPath(a, orPath+"/users"))
	failing.wantProblem(t, http.StatusServiceUnavailable, "credentials-failing")
	e.assertNoSecret(failing)
}

// When the platform refuses a school's credentials, the app gets credentials-failing; while the
// school backs off, the next calls get it at once, without any request to the platform.
func TestFailingCredentialsAnswerAtOnceWithoutCallingThePlatform(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{writePaths: "POST " + externPath})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	// One refusal only: were the platform asked again, it would accept.
	if err := e.sim.FailNextTokenRequests(a, 1, http.StatusUnauthorized, "invalid_client"); err != nil {
		t.Fatal(err)
	}
	first := e.get(schoolPath(a, orPath+"/users"))
	first.wantProblem(t, http.StatusServiceUnavailable, "credentials-failing")
	if n := e.sim.Stats().TokenRequestCount(a, platformsim.GrantClientCredentials); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	e.sim.ResetStats()
	var answers []answer
	for _, p := range []string{orPath + "/users", orPath + "/classes", "/WebUntis/api/rest/extern/v1/students"} {
		ans := e.get(schoolPath(a, p))
		pb := ans.wantProblem(t, http.StatusServiceUnavailable, "credentials-failing")
		if ra, err := strconv.Atoi(ans.header.Get("Retry-After")); err != nil || ra < 1 || pb.RetryAfter != ra || pb.TenantID != a {
			t.Errorf("Retry-After %q, problem %+v", ans.header.Get("Retry-After"), pb)
		}
		answers = append(answers, ans)
	}
	post := e.api(http.MethodPost, schoolPath(a, externPath), strings.NewReader(`{}`), http.Header{"Content-Type": {"application/json"}})
	post.wantProblem(t, http.StatusServiceUnavailable, "credentials-failing")
	st := e.sim.Stats()
	if n := st.TokenRequestCount(a, platformsim.GrantClientCredentials); n != 0 || st.APICallCount(a) != 0 || len(e.calls()) != 0 {
		t.Errorf("while backing off the platform was asked: %d token requests, %d API calls", n, len(e.calls()))
	}
	// The school's entry says so too.
	school := decodeAs[map[string]any](t, e.get("/v1/schools/"+a))
	if school["credentialsFailingSince"] == nil {
		t.Errorf("the school does not show failing credentials: %v", school)
	}
	e.assertNoSecret(append(answers, first, post)...)
}

// A deactivated (or deleted) school answers 403 school-not-active, and its data is not fetched:
// not even with a token still in the cache, and not for writes.
func TestDeactivatedSchoolIs403AndThePlatformIsNotCalled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{writePaths: "POST " + externPath})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	b := e.school(platformsim.TenantSpec{ID: "1002"})
	// Warm the token cache for both.
	for _, id := range []string{a, b} {
		if ans := e.get(schoolPath(id, orPath+"/orgs")); ans.status != http.StatusOK {
			t.Fatal(ans)
		}
	}
	// Ended in the store alone: no webhook, no cache invalidation on this replica (its
	// listener does not run here), and the platform would still accept the token.
	if _, err := e.store.EndTenant(e.ctx(), a, false, "test", nil); err != nil {
		t.Fatal(err)
	}
	// And b the real way, by the platform's signed DELETION webhook.
	if res, err := e.sim.Deactivate(e.ctx(), b, true); err != nil || res.Status != http.StatusOK {
		t.Fatalf("delete %s: %+v %v", b, res, err)
	}
	e.sim.ResetStats()
	for _, tc := range []struct {
		tenant, state, method, path string
	}{
		{a, store.StateDeactivated, http.MethodGet, orPath + "/users"},
		{a, store.StateDeactivated, http.MethodGet, externPath},
		{a, store.StateDeactivated, http.MethodPost, externPath},
		{b, store.StateDeleted, http.MethodGet, orPath + "/users"},
		{b, store.StateDeleted, http.MethodGet, externPath + "/1000"},
	} {
		ans := e.api(tc.method, schoolPath(tc.tenant, tc.path), strings.NewReader(`{}`), http.Header{"Content-Type": {"application/json"}})
		if p := ans.wantProblem(t, http.StatusForbidden, "school-not-active"); p.State != tc.state || p.TenantID != tc.tenant {
			t.Errorf("%s %s: %+v", tc.method, tc.path, p)
		}
		e.assertNoSecret(ans)
	}
	if calls := e.calls(); len(calls) != 0 || len(e.sim.Stats().TokenRequests) != 0 {
		t.Errorf("the platform was called for ended schools: %+v %v", calls, e.sim.Stats().TokenRequests)
	}
	// A school the server never heard of.
	e.get(schoolPath("4242", orPath+"/users")).wantProblem(t, http.StatusNotFound, "school-not-found")
}

// Paging, filter and sort parameters reach the platform byte for byte as the app sent them,
// and the answer is byte for byte the platform's.
func TestQueryPassesUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	a := e.school(platformsim.TenantSpec{ID: "1001", Teachers: 8, Students: 30})
	clientID, _, password, _ := e.sim.Credentials(a)
	direct := directToken(t, e.simURL, e.sim.Issuer(a), clientID, password)
	for _, q := range []string{
		"filter=role%3D%27teacher%27&sort=familyName&orderBy=desc&limit=3&offset=2",
		"filter=role='student'%20AND%20givenName!='Anna'&sort=givenName&limit=5&offset=0",
		"filter=role%3D'teacher'+OR+role%3D'administrator'&sort=sourcedId",
		"limit=2&offset=1&limit=7",
		"fields=sourcedId,givenName&sort=familyName",
	} {
		ans := e.get(schoolPath(a, orPath+"/users?"+q))
		last, ok := e.sim.LastAPICall()
		if !ok || last.Query != q || last.Path != orPath+"/users" {
			t.Errorf("the platform saw %q, want %q", last.Query, q)
		}
		want := e.do(e.simURL, http.MethodGet, orPath+"/users?"+q, nil, http.Header{"Authorization": {"Bearer " + direct}})
		if ans.status != want.status || string(ans.body) != string(want.body) {
			t.Errorf("?%s: through the API %d %.200s, directly %d %.200s", q, ans.status, ans.body, want.status, want.body)
		}
	}
	// The platform's refusal of a filter comes back as platform-refused with its words.
	bad := e.get(schoolPath(a, orPath+"/users?filter=shoeSize%3D%2742%27"))
	if p := bad.wantProblem(t, http.StatusBadRequest, "platform-refused"); p.PlatformStatus != http.StatusBadRequest ||
		p.PlatformCode != "invalid_filter_field" || !strings.Contains(p.PlatformMessage, "shoeSize") {
		t.Errorf("refused filter: %+v", p)
	}
}

// directToken is a client-credentials token fetched straight from the simulator.
func directToken(t testing.TB, simURL, issuer, clientID, password string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, issuer+"/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(password))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token from %s: %d %v", simURL, resp.StatusCode, err)
	}
	return tok.AccessToken
}

// Paths that could leave the API's roots, or that the platform might read differently from
// us, are refused before anything is sent.
func TestUnsafePathsAreRefusedBeforeTheyReachThePlatform(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{writePaths: "/WebUntis/api/rest/extern/v1/students/*"})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	e.sim.ResetStats()
	for _, p := range []string{
		schoolPath(a, orPath+"/users/../../../WebUntis/api/rest/extern/v1/students"),
		schoolPath(a, orPath+"/users/%2e%2e/classes"),
		schoolPath(a, orPath+"/users%2F..%2Fclasses"),
		schoolPath(a, orPath+"/users/"),
		schoolPath(a, orPath+"/"),
		schoolPath(a, orPath+"//users"),
		schoolPath(a, orPath+"/users/./x"),
		schoolPath(a, orPath+"/users/a%5Cb"),
		schoolPath(a, orPath+"/users/a%00b"),
		schoolPath(a, orPath+"/users/%zz"),
		schoolPath(a, orPath+"/users?filter=%zz"),
		schoolPath(a, "/WebUntis/api/rest/extern/v1/students/%2e%2e"),
		schoolPath(a, "/WebUntis/api/rest/extern/v1/students/1%2f..%2f..%2fsso"),
		"/v1/schools/a.b/ims/oneroster/v1p1/users",
		"/v1/schools/" + strings.Repeat("1", 65) + "/ims/oneroster/v1p1/users",
		schoolPath(a, orPath+"/users?q="+strings.Repeat("x", 9000)),
		schoolPath(a, orPath+"/users?filter=a\x01b"),
		schoolPath(a, orPath+"/users?filter=a\"b#frag"),
		schoolPath(a, orPath+"/users\\..\\classes"),
	} {
		ans := e.raw(http.MethodGet, p)
		if ans.status != http.StatusBadRequest && ans.status != http.StatusNotFound {
			t.Errorf("%.120q: %s, want 400 (or 404 for a route that does not exist)", p, ans)
			continue
		}
		if ans.header.Get("Content-Type") != "application/problem+json" && strings.HasPrefix(string(ans.body), "400 Bad Request") {
			continue // net/http refused the request line itself
		}
		ans.problem(t)
	}
	for _, p := range []string{
		schoolPath(a, "/WebUntis/api/rest/extern/v1/students/1%2f..%2f..%2fsso"),
		schoolPath(a, "/WebUntis/api/rest/extern/v1/students/..%2F..%2Fsso"),
	} {
		ans := e.api(http.MethodPut, p, strings.NewReader(`{}`), http.Header{"Content-Type": {"application/json"}})
		ans.wantProblem(t, http.StatusBadRequest, "bad-request")
	}
	if calls := e.calls(); len(calls) != 0 {
		t.Errorf("unsafe paths reached the platform: %+v", calls)
	}
}

// Writes reach the platform only where INTERNAL_API_WRITE_PATHS allows them, within the body
// limit; they are never retried (the platform may have acted), and OneRoster is read-only.
func TestWritePathsAllowedAndRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{
		writePaths: "POST " + externPath + ", PUT " + externPath + "/*",
		maxBody:    1024,
	})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	student := `{"externKey":"W-1","shortName":"w.one","forename":"W","lastName":"One"}`

	created := e.api(http.MethodPost, schoolPath(a, externPath), strings.NewReader(student), jsonCT)
	if created.status != http.StatusCreated {
		t.Fatalf("allowed POST: %s", created)
	}
	st := decodeAs[platformsim.ExternStudent](t, created)
	if loc := created.header.Get("Location"); loc != schoolPath(a, externPath+"/"+strconv.Itoa(st.ID)) {
		t.Errorf("Location %q, want this API's path of the new student", loc)
	}
	updated := e.api(http.MethodPut, schoolPath(a, externPath+"/"+strconv.Itoa(st.ID)),
		strings.NewReader(`{"externKey":"W-1","shortName":"w.one","forename":"W","lastName":"Two"}`), jsonCT)
	if updated.status != http.StatusOK || decodeAs[platformsim.ExternStudent](t, updated).LastName != "Two" {
		t.Errorf("allowed PUT: %s", updated)
	}
	// The platform's refusal of a write: its status and words.
	dup := e.api(http.MethodPost, schoolPath(a, externPath), strings.NewReader(student), jsonCT)
	if p := dup.wantProblem(t, http.StatusConflict, "platform-refused"); p.PlatformStatus != http.StatusConflict || p.PlatformCode != "409" ||
		!strings.Contains(p.PlatformMessage, "externKey") {
		t.Errorf("duplicate: %+v", p)
	}
	e.sim.ResetStats()

	for _, tc := range []struct {
		method, path string
		status       int
		slug, allow  string
	}{
		{http.MethodPatch, externPath + "/1000", http.StatusForbidden, "write-not-allowed", ""},
		{http.MethodDelete, externPath + "/1000", http.StatusForbidden, "write-not-allowed", ""},
		{http.MethodPost, externPath + "/1000", http.StatusForbidden, "write-not-allowed", ""},
		{http.MethodPut, externPath, http.StatusForbidden, "write-not-allowed", ""},
		{http.MethodPost, "/WebUntis/api/rest/extern/v1/teachers", http.StatusForbidden, "write-not-allowed", ""},
		{http.MethodPost, orPath + "/users", http.StatusMethodNotAllowed, "method-not-allowed", "GET"},
		{http.MethodOptions, externPath, http.StatusMethodNotAllowed, "method-not-allowed", "GET, POST"},
		{http.MethodHead, externPath + "/1000", http.StatusMethodNotAllowed, "method-not-allowed", "GET, PUT"},
		{http.MethodPost, "", http.StatusMethodNotAllowed, "method-not-allowed", "GET"},
	} {
		ans := e.api(tc.method, schoolPath(a, tc.path), strings.NewReader(student), jsonCT)
		if tc.method == http.MethodHead {
			if ans.status != tc.status || ans.header.Get("Allow") != tc.allow {
				t.Errorf("HEAD %s: %d Allow %q", tc.path, ans.status, ans.header.Get("Allow"))
			}
			continue
		}
		ans.wantProblem(t, tc.status, tc.slug)
		if ans.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, ans.header.Get("Allow"), tc.allow)
		}
	}
	// Over the body limit: 413, with a Content-Length and without (chunked).
	big := `{"externKey":"` + strings.Repeat("x", 2000) + `"}`
	e.api(http.MethodPost, schoolPath(a, externPath), strings.NewReader(big), jsonCT).
		wantProblem(t, http.StatusRequestEntityTooLarge, "body-too-large")
	e.api(http.MethodPost, schoolPath(a, externPath), io.MultiReader(strings.NewReader(big)), jsonCT).
		wantProblem(t, http.StatusRequestEntityTooLarge, "body-too-large")
	if calls := e.calls(); len(calls) != 0 {
		t.Errorf("refused writes reached the platform: %+v", calls)
	}

	// A write the platform fails is not retried: it may have been done.
	if err := e.sim.FailNextAPICalls(a, 1, http.StatusServiceUnavailable); err != nil {
		t.Fatal(err)
	}
	failed := e.api(http.MethodPost, schoolPath(a, externPath),
		strings.NewReader(`{"externKey":"W-2","shortName":"w.two","forename":"W","lastName":"Two"}`), jsonCT)
	failed.wantProblem(t, http.StatusBadGateway, "platform-unavailable")
	if calls := e.calls(); len(calls) != 1 || calls[0].Status != http.StatusServiceUnavailable {
		t.Errorf("a failed write was sent %d times: %+v", len(calls), calls)
	}
	// A GET that fails the same way is retried.
	if err := e.sim.FailNextAPICalls(a, 1, http.StatusServiceUnavailable); err != nil {
		t.Fatal(err)
	}
	if ans := e.get(schoolPath(a, externPath)); ans.status != http.StatusOK {
		t.Errorf("GET after a 503: %s", ans)
	}
	e.assertNoSecret(created, updated, dup, failed)
}

// With writes off (no INTERNAL_API_WRITE_PATHS), every write is refused and GET works.
func TestNoWritePathsNoWrites(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		e.api(m, schoolPath(a, externPath), strings.NewReader(`{}`), http.Header{"Content-Type": {"application/json"}}).
			wantProblem(t, http.StatusForbidden, "write-not-allowed")
	}
	if calls := e.calls(); len(calls) != 0 {
		t.Errorf("writes reached the platform: %+v", calls)
	}
	if ans := e.get(schoolPath(a, externPath+"?limit=2")); ans.status != http.StatusOK || len(decodeAs[studentsPage](t, ans).Students) != 2 {
		t.Errorf("GET: %s", ans)
	}
}
