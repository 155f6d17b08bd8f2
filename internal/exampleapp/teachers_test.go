package exampleapp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/untis-partner/server/internal/platformsim"
)

// teachersOf are the names the page shows for the school's teachers, as the simulator has them.
func teachersOf(sim *platformsim.Sim, tenantID string) []string {
	var out []string
	for _, u := range sim.Users(tenantID) {
		if u.Role == platformsim.RoleTeacher {
			out = append(out, teacher{GivenName: u.GivenName, FamilyName: u.FamilyName, Username: u.Username}.Name())
		}
	}
	return out
}

// namesOn are the teachers' names that appear on a page's text, of those in names.
func namesOn(txt string, names []string) []string {
	var out []string
	for _, n := range names {
		if strings.Contains(txt, n) {
			out = append(out, n)
		}
	}
	return out
}

// A teacher opens the teachers page: the app asks the server's platform API (the real internal
// API, with the simulator as the platform) for the teachers of the school in the verified token,
// 50 at a time, and lists them. Only that school is ever asked: not the one of a header that
// contradicts the token, nor one in a query parameter; and with a token that does not verify,
// none at all.
func TestTeachersOfTheVerifiedSchoolThroughThePlatformAPI(t *testing.T) {
	t.Parallel()
	e := newServerEnv(t, nil)
	a := e.school(platformsim.TenantSpec{ID: "1001", Name: "Gymnasium am See", Teachers: 63, Students: 5})
	b := e.school(platformsim.TenantSpec{ID: "1002", Name: "Mittelschule Nord", Teachers: 4, Students: 5})
	aTeachers, bTeachers := teachersOf(e.sim, a), teachersOf(e.sim, b)
	if len(aTeachers) != 63 || len(bTeachers) != 4 {
		t.Fatalf("seeded %d and %d teachers", len(aTeachers), len(bTeachers))
	}
	me, _ := e.sim.UserByRole(a, platformsim.RoleTeacher)
	u := userOf(me, a, "Gymnasium am See")

	code, page1 := e.page("/teachers", u)
	if code != http.StatusOK || !strings.Contains(page1, "Teachers of your school") || !strings.Contains(page1, "Next 50 →") {
		t.Fatalf("%d:\n%s", code, page1)
	}
	_, page2 := e.page("/teachers?offset=50", u)
	if !strings.Contains(page2, "← Previous 50") || strings.Contains(page2, "Next 50") {
		t.Errorf("the second page's links:\n%s", page2)
	}
	on1, on2 := namesOn(page1, aTeachers), namesOn(page2, aTeachers)
	if len(on1) < 50 || len(on2) != 13 || len(namesOn(page1+page2, aTeachers)) != 63 {
		t.Errorf("page 1 shows %d, page 2 %d of the school's 63 teachers", len(on1), len(on2))
	}
	// In the order of their family names, as the app asked the platform.
	for _, pg := range []struct {
		txt   string
		names []string
	}{{page1, on1}, {page2, on2}} {
		slices.SortFunc(pg.names, func(x, y string) int { return strings.Index(pg.txt, x) - strings.Index(pg.txt, y) })
		fams := make([]string, len(pg.names))
		for i, n := range pg.names {
			fams[i], _, _ = strings.Cut(n, ", ")
		}
		if !slices.IsSorted(fams) {
			t.Errorf("not in the order of family names: %v", fams)
		}
	}
	if leaked := namesOn(page1+page2, bTeachers); len(leaked) > 0 {
		t.Errorf("another school's teachers shown: %v", leaked)
	}

	// A header that says another school, a parameter that names one: the verified token decides.
	tok := sign(t, e.g.kid, e.g.key, claimsOf(u, time.Now()), jose.ES256)
	h := headers(u, tok)
	h.Set(HeaderTenantID, b)
	_, _, body := get(t, e.appSrv.URL+"/teachers?tenant="+b+"&tenantId="+b+"&school="+b, h)
	if txt := text(body); len(namesOn(txt, bTeachers)) > 0 || len(namesOn(txt, aTeachers)) < 50 {
		t.Errorf("with X-Untis-Tenant-Id and ?tenant= of school %s the page shows:\n%s", b, txt)
	}
	for _, c := range e.sim.APICalls() {
		if c.TenantID != a || c.Path != "/ims/oneroster/v1p1/teachers" || c.TokenKind != platformsim.TokenKindClientCredentials {
			t.Errorf("the platform saw %+v", c)
		}
	}
	calls := len(e.sim.APICalls())
	if calls != 3 {
		t.Errorf("%d platform calls for three pages", calls)
	}

	// A token the gateway did not sign, or one it signed that expired: no school is asked for.
	forged := sign(t, e.g.kid, newKey(t), claimsOf(u, time.Now()), jose.ES256)
	expired := sign(t, e.g.kid, e.g.key, claimsOf(u, time.Now().Add(-10*time.Minute)), jose.ES256)
	for _, bad := range []string{forged, expired} {
		_, _, body = get(t, e.appSrv.URL+"/teachers", headers(u, bad))
		if txt := text(body); !strings.Contains(txt, "did not verify") || len(namesOn(txt, aTeachers)) > 0 {
			t.Errorf("with a token that does not verify:\n%s", txt)
		}
	}
	_, _, body = get(t, e.appSrv.URL+"/teachers", nil)
	if txt := text(body); !strings.Contains(txt, "No identity headers") {
		t.Errorf("without the gateway:\n%s", txt)
	}
	if n := len(e.sim.APICalls()); n != calls {
		t.Errorf("the platform was asked %d more times for unverified requests", n-calls)
	}
	if code, _, _ := get(t, e.appSrv.URL+"/teachers?offset=-1", headers(u, tok)); code != http.StatusBadRequest {
		t.Errorf("offset -1: %d", code)
	}
}

// What the platform API answers instead of the teachers reaches the user in plain words, from the
// problem's type: the school's credentials failing, a school no longer active, a permission the
// app lacks at the school, a platform that is down, and a token the server does not accept.
func TestTeachersPageSaysWhyThereAreNone(t *testing.T) {
	t.Parallel()
	e := newServerEnv(t, nil)
	a := e.school(platformsim.TenantSpec{ID: "1001", Teachers: 3})
	b := e.school(platformsim.TenantSpec{ID: "1002", Teachers: 3})
	c := e.school(platformsim.TenantSpec{ID: "1003", Teachers: 3, Scopes: []string{"openid"}})
	userIn := func(tenantID string) user {
		t.Helper()
		u, ok := e.sim.UserByRole(tenantID, platformsim.RoleTeacher)
		if !ok {
			t.Fatal("no teacher")
		}
		return userOf(u, tenantID, "")
	}

	// The platform refuses the school's credentials: the server marks them failing.
	if err := e.sim.FailNextTokenRequests(a, 1, http.StatusUnauthorized, "invalid_client"); err != nil {
		t.Fatal(err)
	}
	_, txt := e.page("/teachers", userIn(a))
	for _, want := range []string{"The school's credentials are failing", "/problems/credentials-failing", "HTTP 503", "The server tries again in"} {
		if !strings.Contains(txt, want) {
			t.Errorf("credentials failing: page lacks %q:\n%s", want, txt)
		}
	}
	if len(namesOn(txt, teachersOf(e.sim, a))) > 0 {
		t.Error("teachers shown beside the problem")
	}

	// The school deactivated the app: the server does not ask the platform for it.
	e.webhook(func(ctx context.Context, id string) (*platformsim.WebhookResult, error) {
		return e.sim.Deactivate(ctx, id, false)
	}, b)
	before := len(e.sim.APICalls())
	_, txt = e.page("/teachers", userIn(b))
	if !strings.Contains(txt, "The school is not active for this app (it is deactivated)") || !strings.Contains(txt, "HTTP 403") {
		t.Errorf("deactivated school:\n%s", txt)
	}
	if len(e.sim.APICalls()) != before {
		t.Error("the platform was asked for a deactivated school")
	}

	// The app may not read OneRoster at this school.
	_, txt = e.page("/teachers", userIn(c))
	if !strings.Contains(txt, "The Untis Platform refused to list the school's teachers: the app lacks the permission at this school") {
		t.Errorf("no permission:\n%s", txt)
	}

	// The platform fails, also on the server's retries.
	d := e.school(platformsim.TenantSpec{ID: "1004", Teachers: 3})
	if err := e.sim.FailNextAPICalls(d, 10, http.StatusInternalServerError); err != nil {
		t.Fatal(err)
	}
	_, txt = e.page("/teachers", userIn(d))
	if !strings.Contains(txt, "The Untis Platform is not available right now") || !strings.Contains(txt, "/problems/platform-unavailable") {
		t.Errorf("platform down:\n%s", txt)
	}

	// An app whose token the server does not know.
	wrong := newServerEnv(t, func(c *Config) { c.APIToken = "not-the-servers-token-0123456789abcdefghij" })
	w := wrong.school(platformsim.TenantSpec{ID: "1001", Teachers: 3})
	wu, _ := wrong.sim.UserByRole(w, platformsim.RoleTeacher)
	_, txt = wrong.page("/teachers", userOf(wu, w, ""))
	if !strings.Contains(txt, "The server does not accept the app's token for the platform API") || strings.Contains(txt, "not-the-servers-token") {
		t.Errorf("wrong token:\n%s", txt)
	}
}

// A platform API that does not answer, or is not there: the page comes back within the app's
// timeout and says so; it never hangs.
func TestTeachersPageNeverHangs(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(stalled.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	tok := sign(t, g.kid, g.key, claimsOf(jurgen, time.Now()), jose.ES256)
	for _, tc := range []struct{ name, url, want string }{
		{"stalled", stalled.URL, "The platform API did not answer within 200ms"},
		{"not listening", closedURL, "The platform API at " + closedURL + " cannot be reached"},
		{"not configured", "", "The app is not connected to the server's platform API"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := build(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: g.jwks.URL, APIURL: tc.url,
				APIToken: apiToken, APITimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(a.routes())
			t.Cleanup(srv.Close)
			code, _, body := get(t, srv.URL+"/teachers", headers(jurgen, tok))
			if txt := text(body); code != http.StatusOK || !strings.Contains(txt, tc.want) {
				t.Errorf("%d:\n%s", code, txt)
			}
		})
	}
}
