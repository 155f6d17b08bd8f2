package platformsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

const externStudents = "/WebUntis/api/rest/extern/v1/students"

type errorObject struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

var jsonHeader = http.Header{"Content-Type": {"application/json"}}

// The extern student API serves each school's own students (seeded from its roster), pages them,
// and takes writes: a created student is listed and readable, an update changes it, and unique
// fields and required fields are enforced with the platform's {code, message} error object.
func TestExternStudentsReadAndWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	tokA, tokB := e.serverToken("1001"), e.serverToken("1002")

	list := func(tok, query string) []platformsim.ExternStudent {
		t.Helper()
		resp := e.do(http.MethodGet, e.url+externStudents+query, tok, nil, nil)
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("list%s: %d %s", query, resp.StatusCode, b)
		}
		return decode[struct {
			Students []platformsim.ExternStudent `json:"students"`
		}](t, resp).Students
	}
	a, b := list(tokA, ""), list(tokB, "")
	if len(a) != 20 || len(b) != 20 {
		t.Fatalf("students: %d and %d, want the 20 of each roster", len(a), len(b))
	}
	rosterA := map[string]bool{}
	for _, u := range e.sim.Users("1001") {
		rosterA[u.Username] = true
	}
	for _, st := range a {
		if !rosterA[st.ShortName] || st.ClassName == "" || st.ExternKey == "" {
			t.Errorf("school 1001 lists %+v, not one of its own students with a Klasse", st)
		}
	}
	if !slices.Equal(a, e.sim.ExternStudents("1001")) || !slices.Equal(b, e.sim.ExternStudents("1002")) ||
		slices.Equal(a, b) {
		t.Error("a school's list is not its own students")
	}
	if page := list(tokA, "?limit=5&offset=18"); len(page) != 2 || page[0].ID != a[18].ID {
		t.Errorf("limit=5&offset=18 gave %d students", len(page))
	}
	if page := list(tokA, "?className="+a[0].ClassName); len(page) == 0 || len(page) == 20 {
		t.Errorf("className filter gave %d students", len(page))
	}

	// Create, read, update.
	body := `{"externKey":"X-1","shortName":"neu.schueler","forename":"Neu","lastName":"Schüler"}`
	resp := e.do(http.MethodPost, e.url+externStudents, tokA, strings.NewReader(body), jsonHeader)
	created := decode[platformsim.ExternStudent](t, resp)
	if resp.StatusCode != http.StatusCreated || created.ID == 0 || created.LastName != "Schüler" ||
		resp.Header.Get("Location") != externStudents+"/"+strconv.Itoa(created.ID) {
		t.Fatalf("create: %d %+v Location %q", resp.StatusCode, created, resp.Header.Get("Location"))
	}
	resp = e.do(http.MethodGet, e.url+externStudents+"/"+strconv.Itoa(created.ID), tokA, nil, nil)
	if got := decode[platformsim.ExternStudent](t, resp); resp.StatusCode != http.StatusOK || got != created {
		t.Errorf("read back: %d %+v, want %+v", resp.StatusCode, got, created)
	}
	// School 1002 does not see it: not found, as every object of another school.
	resp = e.do(http.MethodGet, e.url+externStudents+"/"+strconv.Itoa(created.ID), tokB, nil, nil)
	if got := decode[errorObject](t, resp); resp.StatusCode != http.StatusNotFound || got.Code != 404 || got.Message == "" {
		t.Errorf("another school reads it: %d %+v", resp.StatusCode, got)
	}
	resp = e.do(http.MethodPut, e.url+externStudents+"/"+strconv.Itoa(created.ID), tokA,
		strings.NewReader(`{"externKey":"X-1","shortName":"neu.schueler","forename":"Neu","lastName":"Schülerin"}`), jsonHeader)
	if got := decode[platformsim.ExternStudent](t, resp); resp.StatusCode != http.StatusOK || got.LastName != "Schülerin" || got.ID != created.ID {
		t.Errorf("update: %d %+v", resp.StatusCode, got)
	}
	if n := len(list(tokA, "")); n != 21 {
		t.Errorf("after the create, %d students", n)
	}

	for _, tc := range []struct {
		name, method, path, body string
		header                   http.Header
		status                   int
	}{
		{"duplicate externKey", http.MethodPost, externStudents, `{"externKey":"X-1","shortName":"x","forename":"a","lastName":"b"}`, jsonHeader, http.StatusConflict},
		{"duplicate shortName", http.MethodPost, externStudents, `{"externKey":"X-2","shortName":"neu.schueler","forename":"a","lastName":"b"}`, jsonHeader, http.StatusConflict},
		{"missing field", http.MethodPost, externStudents, `{"externKey":"X-3","shortName":"y","forename":"a"}`, jsonHeader, http.StatusBadRequest},
		{"unknown field", http.MethodPost, externStudents, `{"externKey":"X-3","shortName":"y","forename":"a","lastName":"b","admin":true}`, jsonHeader, http.StatusBadRequest},
		{"not JSON", http.MethodPost, externStudents, `externKey=X-3`, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, http.StatusUnsupportedMediaType},
		{"too large", http.MethodPost, externStudents, `{"externKey":"` + strings.Repeat("x", 70<<10) + `"}`, jsonHeader, http.StatusRequestEntityTooLarge},
		{"update of an unknown student", http.MethodPut, externStudents + "/999999", `{"externKey":"X-4","shortName":"z","forename":"a","lastName":"b"}`, jsonHeader, http.StatusNotFound},
		{"bad limit", http.MethodGet, externStudents + "?limit=zero", "", nil, http.StatusBadRequest},
		{"unknown resource", http.MethodGet, "/WebUntis/api/rest/extern/v1/teapots", "", nil, http.StatusNotFound},
		{"method not allowed", http.MethodDelete, externStudents + "/1000", "", nil, http.StatusMethodNotAllowed},
	} {
		var rd io.Reader
		if tc.body != "" {
			rd = strings.NewReader(tc.body)
		}
		resp := e.do(tc.method, e.url+tc.path, tokA, rd, tc.header)
		if got := decode[errorObject](t, resp); resp.StatusCode != tc.status || got.Code != tc.status || got.Message == "" {
			t.Errorf("%s: %d %+v, want %d with the error object", tc.name, resp.StatusCode, got, tc.status)
		}
	}
	if n := len(list(tokA, "")); n != 21 {
		t.Errorf("after the refused writes, %d students, want 21", n)
	}
}

// The extern API takes the application's token only: none is 401, a user's is 403, and injected
// failures and revocation apply as for OneRoster. Every call is recorded with the tenant and
// the fingerprint of the token it used.
func TestExternAuthenticationAndCallLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	_, userTok := e.login("1001", teacher.SourcedID)
	tok := e.serverToken("1001")

	if resp := e.do(http.MethodGet, e.url+externStudents, "", nil, nil); resp.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp := e.do(http.MethodGet, e.url+externStudents, userTok.AccessToken, nil, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a user's token: %d, want 403", resp.StatusCode)
	}
	if err := e.sim.FailNextAPICalls("1001", 1, http.StatusUnauthorized); err != nil {
		t.Fatal(err)
	}
	if resp := e.do(http.MethodGet, e.url+externStudents, tok, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("injected 401: %d", resp.StatusCode)
	}
	if resp := e.do(http.MethodGet, e.url+externStudents, tok, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after the injected 401: %d", resp.StatusCode)
	}
	if err := e.sim.RevokeTokens("1001"); err != nil {
		t.Fatal(err)
	}
	if resp := e.do(http.MethodGet, e.url+externStudents, tok, nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked token: %d", resp.StatusCode)
	}

	calls := e.sim.APICalls()
	var extern []platformsim.APICall
	for _, c := range calls {
		if strings.HasPrefix(c.Path, "/WebUntis/api/rest/extern/") {
			extern = append(extern, c)
		}
	}
	if len(extern) != 5 {
		t.Fatalf("%d extern calls recorded, want 5: %+v", len(extern), extern)
	}
	fp := platformsim.TokenFingerprint(tok)
	want := []struct {
		status int
		fp     string
	}{{401, ""}, {403, platformsim.TokenFingerprint(userTok.AccessToken)}, {401, fp}, {200, fp}, {401, fp}}
	for i, c := range extern {
		if c.Status != want[i].status || c.TokenFingerprint != want[i].fp {
			t.Errorf("call %d: status %d fingerprint %q, want %d %q", i, c.Status, c.TokenFingerprint, want[i].status, want[i].fp)
		}
	}
	if extern[3].TenantID != "1001" || extern[3].TokenKind != platformsim.TokenKindClientCredentials || extern[3].Method != http.MethodGet {
		t.Errorf("the successful call is recorded as %+v", extern[3])
	}
	if len(fp) != 12 || fp == platformsim.TokenFingerprint(tok+"x") {
		t.Errorf("fingerprint %q", fp)
	}
}
