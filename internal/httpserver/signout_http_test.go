package httpserver_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/store"
)

// TestLogoutAnswersByWhoAsks: a person's sign-out (the app's button, a link) is a navigation
// and gets the signed-out page, whatever its Origin says (Chromium posts our own form with
// "Origin: null" under Referrer-Policy no-referrer); a script's call (WebUntis' credentialed
// fetch at its own logout) gets 204 with its CORS answer. The session ends either way.
func TestLogoutAnswersByWhoAsks(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	for _, c := range []struct {
		name, method, mode, origin string
		page, cors                 bool
	}{
		{"our Sign out button in Chromium", http.MethodPost, "navigate", "null", true, false},
		{"our Sign out button, same origin", http.MethodPost, "navigate", "SELF", true, false},
		{"a form in a browser without Sec-Fetch", http.MethodPost, "", "null", true, false},
		{"a link", http.MethodGet, "navigate", "", true, false},
		{"curl", http.MethodGet, "", "", true, false},
		{"a link inside the platform's iFrame (old Chromium)", http.MethodGet, "nested-navigate", "", true, false},
		{"another site's form sends the person here", http.MethodPost, "navigate", "https://evil.example", true, false},
		{"WebUntis' fetch", http.MethodPost, "cors", "PLATFORM", false, true},
		{"WebUntis' no-cors beacon", http.MethodPost, "no-cors", "PLATFORM", false, true},
		{"a script in a sandboxed frame", http.MethodPost, "cors", "null", false, false},
		{"another site's script without Sec-Fetch", http.MethodPost, "", "https://evil.example", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := e.browser()
			b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
			b.launch(launchQuery(tid))
			if b.me().status != http.StatusOK {
				t.Fatal("not signed in")
			}
			h := http.Header{}
			if c.mode != "" {
				h.Set("Sec-Fetch-Mode", c.mode)
			}
			switch c.origin {
			case "":
			case "SELF":
				h.Set("Origin", e.app.srv.URL)
			case "PLATFORM":
				h.Set("Origin", e.simURL)
			default:
				h.Set("Origin", c.origin)
			}
			r := b.do(c.method, e.app.srv.URL+"/logout", h)
			switch {
			case c.page && (r.status != http.StatusOK || !strings.Contains(r.body, "You are signed out")):
				t.Errorf("a person got %d, want the signed-out page:\n%s", r.status, r.body)
			case !c.page && (r.status != http.StatusNoContent || r.body != ""):
				t.Errorf("a script got %d, want 204 without a body:\n%s", r.status, r.body)
			}
			if got := r.header.Get("Access-Control-Allow-Origin") != ""; got != c.cors {
				t.Errorf("CORS grant = %v, want %v (%v)", got, c.cors, r.header)
			}
			if b.me().status != http.StatusUnauthorized {
				t.Error("still signed in")
			}
		})
	}
}

// rawGet requests u with exactly the given Cookie header, as a browser holding several cookies
// of one name sends them (a cookie jar keeps only one per name).
func rawGet(t *testing.T, u, cookies string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookies != "" {
		req.Header.Set("Cookie", cookies)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(body), header: resp.Header, url: u}
}

// TestSessionCookieOfEachMode: after EMBED_MODE changed, a browser holds the session cookie of
// each mode (SameSite=Lax and Partitioned: two cookies of one name) and sends both, in an order
// of its choosing. The live one counts; a sign-in and a sign-out end every session the browser
// brought and remove the other mode's cookie; the number of values looked up is bounded.
func TestSessionCookieOfEachMode(t *testing.T) {
	t.Parallel()
	for _, embed := range []bool{false, true} {
		name := "EMBED_MODE=false"
		if embed {
			name = "EMBED_MODE=true"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newSigninEnv(t, signinOptions{embed: embed})
			tid := e.newSchool(store.StateActive)
			signIn := func(role string) string {
				b := e.browser()
				b.signInAs(tid, e.user(tid, role).SourcedID)
				b.launch(launchQuery(tid))
				id := b.cookie(session.CookieName)
				if id == "" {
					t.Fatal("no session cookie after signing in")
				}
				return id
			}
			stale := session.NewToken() // the other mode's cookie, whose session a later sign-in replaced
			live := signIn(platformsim.RoleTeacher)
			me := e.app.srv.URL + "/api/me"
			cookie := func(ids ...string) string {
				var parts []string
				for _, id := range ids {
					parts = append(parts, session.CookieName+"="+id)
				}
				return strings.Join(parts, "; ")
			}

			for _, order := range [][]string{{stale, live}, {live, stale}} {
				if r := rawGet(t, me, cookie(order...)); r.status != http.StatusOK {
					t.Errorf("cookies %s first: /api/me = %d, want 200", map[bool]string{true: "stale", false: "live"}[order[0] == stale], r.status)
				}
			}
			// Bounded: a live id after four others is not looked up.
			if r := rawGet(t, me, cookie(session.NewToken(), session.NewToken(), session.NewToken(), session.NewToken(), live)); r.status != http.StatusUnauthorized {
				t.Errorf("a fifth cookie value was looked up: /api/me = %d", r.status)
			}

			// A sign-in with two live sessions' cookies ends both and removes the other mode's cookie.
			other := signIn(platformsim.RoleStudent)
			b := e.browser()
			b.signInAs(tid, e.user(tid, platformsim.RoleAdministrator).SourcedID)
			callback := b.authorize(e.app, launchQuery(tid))
			flow := ""
			for _, n := range b.cookieNames() {
				if strings.HasPrefix(n, "__Host-untis-flow-") {
					flow = n + "=" + b.cookie(n)
				}
			}
			r := rawGet(t, callback, cookie(live, other)+"; "+flow)
			if r.status != http.StatusSeeOther {
				t.Fatalf("callback = %d:\n%s", r.status, r.body)
			}
			for _, id := range []string{live, other} {
				if got := rawGet(t, me, cookie(id)); got.status != http.StatusUnauthorized {
					t.Errorf("a session the browser brought to the sign-in still works: %d", got.status)
				}
			}
			if n := e.countRows("sessions"); n != 1 {
				t.Errorf("%d sessions after the sign-in, want the new one only", n)
			}
			otherMode := "SameSite=Lax"
			if !embed {
				otherMode = "SameSite=None; Partitioned"
			}
			removed := false
			for _, sc := range r.header.Values("Set-Cookie") {
				if strings.HasPrefix(sc, session.CookieName+"=;") && strings.Contains(sc, "Max-Age=0") && strings.Contains(sc, otherMode) {
					removed = true
				}
			}
			if !removed {
				t.Errorf("the sign-in does not remove the other mode's cookie (%s): %q", otherMode, r.header.Values("Set-Cookie"))
			}

			// A sign-out with both cookies ends both sessions and removes both cookies.
			a, c := signIn(platformsim.RoleTeacher), signIn(platformsim.RoleStudent)
			out := rawGet(t, e.app.srv.URL+"/logout", cookie(c, a))
			if out.status != http.StatusOK {
				t.Fatalf("logout = %d", out.status)
			}
			for _, id := range []string{a, c} {
				if got := rawGet(t, me, cookie(id)); got.status != http.StatusUnauthorized {
					t.Errorf("a session the browser brought to the sign-out still works: %d", got.status)
				}
			}
			var cleared []string
			for _, sc := range out.header.Values("Set-Cookie") {
				if strings.HasPrefix(sc, session.CookieName+"=;") && strings.Contains(sc, "Max-Age=0") {
					cleared = append(cleared, sc)
				}
			}
			if len(cleared) != 2 || strings.Contains(cleared[0], "Partitioned") == strings.Contains(cleared[1], "Partitioned") {
				t.Errorf("sign-out clears %q, want the cookie of each mode", cleared)
			}
		})
	}
}
