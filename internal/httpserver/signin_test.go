package httpserver_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

type meJSON struct {
	TenantID   string            `json:"tenantId"`
	Sub        string            `json:"sub"`
	Role       string            `json:"role"`
	GivenName  string            `json:"givenName"`
	FamilyName string            `json:"familyName"`
	Email      string            `json:"email"`
	Launch     map[string]string `json:"launch"`
}

func decodeMe(t testing.TB, a answer) meJSON {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("/api/me = %d %s", a.status, a.body)
	}
	var m meJSON
	if err := json.Unmarshal([]byte(a.body), &m); err != nil {
		t.Fatalf("/api/me body %q: %v", a.body, err)
	}
	return m
}

func TestSignInHappyPath(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "3001", Name: "Gymnasium Nord"}, store.StateActive)
	lesson := e.sim.Classes(tid)[0]
	for _, role := range []string{platformsim.RoleTeacher, platformsim.RoleStudent, platformsim.RoleAdministrator} {
		t.Run(role, func(t *testing.T) {
			u := e.user(tid, role)
			b := e.browser()
			b.signInAs(tid, u.SourcedID)
			launchURL, err := e.sim.LaunchURL(tid, platformsim.EntryLessonDetails, lesson.SourcedID)
			if err != nil {
				t.Fatal(err)
			}
			lu, _ := url.Parse(launchURL)
			hops := b.follow(e.app.srv.URL + "/launch?" + lu.RawQuery)
			if len(hops) != 4 {
				t.Fatalf("want launch -> authorize -> callback -> app, got %d hops", len(hops))
			}
			start, callback, home := hops[0], hops[2], hops[3]
			au, _ := url.Parse(start.location)
			q := au.Query()
			if au.Path != "/WebUntis/api/sso/v3/"+tid+"/authorize" || q.Get("response_type") != "code" ||
				q.Get("scope") != "openid roster-core.readonly" || q.Get("code_challenge_method") != "S256" ||
				len(q.Get("code_challenge")) != 43 || q.Get("state") == "" || q.Get("nonce") == "" ||
				q.Get("redirect_uri") != e.app.srv.URL+"/launch" {
				t.Errorf("authorize request %s", start.location)
			}
			if callback.status != http.StatusSeeOther || callback.location != e.app.srv.URL+"/" {
				t.Errorf("callback = %d to %q: %s", callback.status, callback.location, callback.body)
			}
			sc := strings.Join(callback.header.Values("Set-Cookie"), "\n")
			if !strings.Contains(sc, "__Host-untis-session=") || !strings.Contains(sc, "HttpOnly") ||
				!strings.Contains(sc, "Secure") || !strings.Contains(sc, "SameSite=Lax") || !strings.Contains(sc, "Path=/") {
				t.Errorf("session cookie: %s", sc)
			}
			if home.status != http.StatusOK || !strings.Contains(home.body, u.GivenName+" "+u.FamilyName) ||
				!strings.Contains(home.body, lesson.Title) {
				t.Errorf("home page %d does not show %s %s and lesson %q:\n%s", home.status, u.GivenName, u.FamilyName, lesson.Title, home.body)
			}
			m := decodeMe(t, b.me())
			if m.TenantID != tid || m.Sub != u.SourcedID || m.Role != role || m.GivenName != u.GivenName ||
				m.FamilyName != u.FamilyName || m.Email != u.Email {
				t.Errorf("/api/me = %+v, want user %+v", m, u)
			}
			if m.Launch["lesson_id"] != lesson.SourcedID || m.Launch["school"] != "Gymnasium Nord" || m.Launch["tenant_id"] != "" {
				t.Errorf("/api/me launch = %v", m.Launch)
			}
		})
	}
}
