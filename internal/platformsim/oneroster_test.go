package platformsim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
)

type usersPage struct {
	Users []platformsim.User `json:"users"`
}

func TestOneRosterPagingLargeSchool(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: "big", Name: "Bundesschulzentrum", Students: 1000, Teachers: 45, Admins: 4, Parents: 1, Classes: 40}); err != nil {
		t.Fatal(err)
	}
	token := e.serverToken("big")
	seen := map[string]bool{}
	pages := 0
	for offset := 0; ; offset += 100 {
		var page usersPage
		resp := e.oneRoster(fmt.Sprintf("/users?limit=100&offset=%d", offset), token, &page)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("offset %d: %d", offset, resp.StatusCode)
		}
		if got := resp.Header.Get("X-Total-Count"); got != "" {
			t.Fatalf("X-Total-Count = %s; the platform sends none, so the simulator must not either", got)
		}
		pages++
		for _, u := range page.Users {
			if seen[u.SourcedID] {
				t.Fatalf("duplicate %s", u.SourcedID)
			}
			seen[u.SourcedID] = true
		}
		if len(page.Users) < 100 {
			if len(page.Users) != 50 {
				t.Errorf("last page has %d users, want 50", len(page.Users))
			}
			break
		}
	}
	if pages != 11 || len(seen) != 1050 {
		t.Errorf("%d pages, %d users; want 11 and 1050", pages, len(seen))
	}

	// Stable ids: a second simulator seeds the same school identically.
	other := newEnv(t, platformsim.Config{})
	_, _ = other.sim.AddTenant(platformsim.TenantSpec{ID: "big", Name: "Bundesschulzentrum", Students: 1000, Teachers: 45, Admins: 4, Parents: 1, Classes: 40})
	if a, b := e.sim.Users("big"), other.sim.Users("big"); !slices.EqualFunc(a, b, func(x, y platformsim.User) bool {
		return x.SourcedID == y.SourcedID && x.Username == y.Username
	}) {
		t.Error("seeding is not deterministic")
	}
	// The limit is capped at 1000.
	var page usersPage
	e.oneRoster("/users?limit=5000", token, &page)
	if len(page.Users) != 1000 {
		t.Errorf("limit=5000 gave %d users", len(page.Users))
	}
}

func TestOneRosterFilterSort(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	token := e.serverToken("1001")
	all := e.sim.Users("1001")
	count := func(pred func(platformsim.User) bool) int {
		n := 0
		for _, u := range all {
			if pred(u) {
				n++
			}
		}
		return n
	}
	first := all[0]
	for _, tc := range []struct {
		query string
		want  int
	}{
		{"filter=role='student'", count(func(u platformsim.User) bool { return u.Role == "student" })},
		{"filter=role!='student'", count(func(u platformsim.User) bool { return u.Role != "student" })},
		{"filter=role='teacher' OR role='administrator'", count(func(u platformsim.User) bool { return u.Role == "teacher" || u.Role == "administrator" })},
		{"filter=role='student' AND givenName='" + first.GivenName + "'", count(func(u platformsim.User) bool { return u.Role == "student" && u.GivenName == first.GivenName })},
		{"filter=familyName~'" + strings.ToUpper(first.FamilyName[:3]) + "'", count(func(u platformsim.User) bool {
			return strings.Contains(strings.ToLower(u.FamilyName), strings.ToLower(first.FamilyName[:3]))
		})},
		{"filter=dateLastModified>'2025-01-01'", len(all)},
		{"filter=dateLastModified>='2030-01-01'", 0},
	} {
		q, _ := url.ParseQuery(tc.query)
		var page usersPage
		resp := e.oneRoster("/users?"+q.Encode(), token, &page)
		if resp.StatusCode != http.StatusOK || len(page.Users) != tc.want {
			t.Errorf("%s: status %d, %d users, want %d", tc.query, resp.StatusCode, len(page.Users), tc.want)
		}
	}

	var page usersPage
	e.oneRoster("/users?sort=familyName&orderBy=desc", token, &page)
	if !slices.IsSortedFunc(page.Users, func(a, b platformsim.User) int { return strings.Compare(b.FamilyName, a.FamilyName) }) {
		t.Error("sort=familyName&orderBy=desc is not sorted")
	}

	for _, q := range []string{"filter=shoeSize='42'", "filter=role=student", "filter=role='a' AND", "sort=shoeSize", "orderBy=sideways", "limit=-1", "offset=x"} {
		v, _ := url.ParseQuery(q)
		resp := e.oneRoster("/users?"+v.Encode(), token, nil)
		var body struct {
			StatusInfoSet []map[string]string `json:"statusInfoSet"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusBadRequest || len(body.StatusInfoSet) != 1 || body.StatusInfoSet[0]["imsx_codeMajor"] != "failure" {
			t.Errorf("%s: %d %v", q, resp.StatusCode, body)
		}
	}
	resp := e.oneRoster("/users?filter="+url.QueryEscape("shoeSize='42'"), token, nil)
	if !strings.Contains(readAll(resp), "invalid_filter_field") {
		t.Error("bad filter field: no invalid_filter_field")
	}
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestOneRosterEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	token := e.serverToken("1001")
	school, _ := e.sim.School("1001")
	classes := e.sim.Classes("1001")
	teacher := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	student := mustUser(t, e.sim, "1001", platformsim.RoleStudent)
	enr := e.sim.Enrollments("1001")[0]
	for _, tc := range []struct {
		path, key string
		status    int
	}{
		{"/users", "users", 200},
		{"/users/" + teacher.SourcedID, "user", 200},
		{"/students", "users", 200},
		{"/students/" + student.SourcedID, "user", 200},
		{"/students/" + teacher.SourcedID, "", 404},
		{"/teachers", "users", 200},
		{"/teachers/" + teacher.SourcedID, "user", 200},
		{"/classes", "classes", 200},
		{"/classes/" + classes[0].SourcedID, "class", 200},
		{"/classes/" + classes[0].SourcedID + "/students", "users", 200},
		{"/classes/" + classes[0].SourcedID + "/teachers", "users", 200},
		{"/classes/999999", "", 404},
		{"/enrollments", "enrollments", 200},
		{"/enrollments/" + enr.SourcedID, "enrollment", 200},
		{"/schools", "orgs", 200},
		{"/schools/" + school.SourcedID, "org", 200},
		{"/orgs", "orgs", 200},
		{"/orgs/" + school.SourcedID, "org", 200},
		{"/orgs/" + teacher.SourcedID, "", 404},
		{"/users/00000000-0000-0000-0000-000000000000", "", 404},
		{"/nonsense", "", 404},
	} {
		var body map[string]json.RawMessage
		resp := e.oneRoster(tc.path, token, &body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d, want %d", tc.path, resp.StatusCode, tc.status)
			continue
		}
		if tc.status == 200 && body[tc.key] == nil {
			t.Errorf("%s: no %q envelope in %v", tc.path, tc.key, body)
		}
		if tc.status == 404 && !strings.Contains(readAll(resp), "unknown_object") {
			t.Errorf("%s: 404 without unknown_object", tc.path)
		}
	}

	// Class members come from the enrollments; hrefs use the base URL.
	var members usersPage
	e.oneRoster("/classes/"+classes[0].SourcedID+"/teachers", token, &members)
	if len(members.Users) != 1 || members.Users[0].Role != "teacher" {
		t.Fatalf("class teachers = %+v", members.Users)
	}
	if got := members.Users[0].Orgs[0]; got.Href != e.url+"/ims/oneroster/v1p1/orgs/"+school.SourcedID || got.SourcedID != school.SourcedID {
		t.Errorf("org ref = %+v", got)
	}
	var one struct{ User platformsim.User }
	e.oneRoster("/users/"+teacher.SourcedID, token, &one)
	u := one.User
	if u.Identifier != u.SourcedID || u.UserIDs[0].Type != "uuid" || u.EnabledUser != "true" || u.Status != "active" ||
		!strings.HasSuffix(u.Email, ".example") || u.Username == "" || u.GivenName == "" {
		t.Errorf("user record = %+v", u)
	}
}

func TestOneRosterTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	tokenA := e.serverToken("1001")
	userB := mustUser(t, e.sim, "1002", platformsim.RoleTeacher)
	if resp := e.oneRoster("/users/"+userB.SourcedID, tokenA, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("A's token for B's user: %d, want 404", resp.StatusCode)
	}
	var page usersPage
	e.oneRoster("/users?limit=1000", tokenA, &page)
	for _, u := range page.Users {
		if u.SourcedID == userB.SourcedID {
			t.Fatal("A's token lists B's user")
		}
	}
	// A user-context token of B sees B's data only.
	_, tok := e.login("1002", userB.SourcedID)
	if resp := e.oneRoster("/users/"+mustUser(t, e.sim, "1001", platformsim.RoleTeacher).SourcedID, tok.AccessToken, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("B's user token for A's user: %d", resp.StatusCode)
	}
	calls := e.sim.APICalls()
	last := calls[len(calls)-1]
	if last.TenantID != "1002" || last.TokenKind != platformsim.TokenKindAccessToken || last.UserID != userB.SourcedID || last.Status != 404 {
		t.Errorf("last call = %+v", last)
	}
	if calls[0].TenantID != "1001" || calls[0].TokenKind != platformsim.TokenKindClientCredentials {
		t.Errorf("first call = %+v", calls[0])
	}
}

func TestOneRosterTokenValidity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	user := mustUser(t, e.sim, "1001", platformsim.RoleStudent)
	path := "/users/" + user.SourcedID

	check := func(name, token string, want int) {
		t.Helper()
		resp := e.oneRoster(path, token, nil)
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", name, resp.StatusCode, want)
			return
		}
		if want == http.StatusUnauthorized {
			if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
				t.Errorf("%s: WWW-Authenticate %q", name, h)
			}
			if !strings.Contains(readAll(resp), `"error":"invalid_token"`) {
				t.Errorf("%s: body lacks invalid_token", name)
			}
		}
	}
	if resp := e.oneRoster(path, "", nil); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="OneRoster"` {
		t.Errorf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	check("made-up token", "abc", http.StatusUnauthorized)

	// The id_token is accepted as a bearer token, as MOODLE sends it.
	_, tok := e.login("1001", user.SourcedID)
	check("id_token", tok.Extra("id_token").(string), http.StatusOK)
	if last, _ := e.sim.LastAPICall(); last.TokenKind != platformsim.TokenKindIDToken || last.TenantID != "1001" {
		t.Errorf("id_token call = %+v", last)
	}
	// A faulty id_token is not.
	_ = e.sim.InjectIDTokenFault("1001", platformsim.AlgNone)
	_, bad := e.login("1001", user.SourcedID)
	check("alg none id_token", bad.Extra("id_token").(string), http.StatusUnauthorized)

	// Injected failures.
	server := e.serverToken("1001")
	_ = e.sim.FailNextAPICalls("1001", 1, http.StatusUnauthorized)
	check("injected 401", server, http.StatusUnauthorized)
	check("after the injected 401", server, http.StatusOK)
	_ = e.sim.FailNextAPICalls("1001", 2, http.StatusTooManyRequests)
	if resp := e.oneRoster(path, server, nil); resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("injected 429: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	check("second injected 429", server, http.StatusTooManyRequests)
	_ = e.sim.FailNextAPICalls("1001", 1, http.StatusInternalServerError)
	check("injected 500", server, http.StatusInternalServerError)
	check("after the 500", server, http.StatusOK)

	// Revocation and expiry.
	_ = e.sim.RevokeTokens("1001")
	check("revoked", server, http.StatusUnauthorized)
	check("user token revoked", tok.AccessToken, http.StatusUnauthorized)
	check("id_token revoked", tok.Extra("id_token").(string), http.StatusUnauthorized)
	server = e.serverToken("1001")
	check("new token after revocation", server, http.StatusOK)
	_, tok = e.login("1001", user.SourcedID)
	e.sim.Advance(181 * time.Second)
	check("expired", server, http.StatusUnauthorized)
	check("expired access token", tok.AccessToken, http.StatusUnauthorized)
	check("id_token lives 300 s", tok.Extra("id_token").(string), http.StatusOK)
	e.sim.Advance(120 * time.Second)
	check("expired id_token", tok.Extra("id_token").(string), http.StatusUnauthorized)

	st := e.sim.Stats()
	if st.APICalls["1001"][http.StatusOK] == 0 || st.APICalls["1001"][http.StatusTooManyRequests] != 2 || st.APICalls[""][http.StatusUnauthorized] == 0 {
		t.Errorf("API stats = %v", st.APICalls)
	}
}

func TestOneRosterMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	user := mustUser(t, e.sim, "1001", platformsim.RoleTeacher)
	_ = e.sim.InjectIDTokenFault("1001", platformsim.OneRosterMismatch)
	_, tok := e.login("1001", user.SourcedID)
	idt, err := e.verifier("1001").Verify(e.ctx(), tok.Extra("id_token").(string))
	if err != nil {
		t.Fatalf("the id_token itself is fine: %v", err)
	}
	var got struct{ User platformsim.User }
	e.oneRoster("/users/"+idt.Subject, tok.AccessToken, &got)
	if got.User.SourcedID == idt.Subject || got.User.SourcedID == "" {
		t.Errorf("sourcedId %q should differ from sub %q", got.User.SourcedID, idt.Subject)
	}
	e.oneRoster("/users/"+idt.Subject, tok.AccessToken, &got)
	if got.User.SourcedID != idt.Subject {
		t.Error("the mismatch fault is not one-shot")
	}
}
