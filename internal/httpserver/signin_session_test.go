package httpserver_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
)

func TestSessionTimeouts(t *testing.T) {
	t.Parallel()
	// The server's clock is the simulator's: moving it moves both.
	e := newSigninEnv(t, signinOptions{idle: 30 * time.Minute, maxAge: 2 * time.Hour})
	clk := e.sim
	tid := e.newSchool(store.StateActive)
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("sign-in = %d", end.status)
	}
	// Activity keeps the session: 25 minutes, four times, is past the idle timeout in total.
	for range 4 {
		clk.Advance(25 * time.Minute)
		if me := b.me(); me.status != http.StatusOK {
			t.Fatalf("active session ended: %d", me.status)
		}
	}
	// Idle for longer than the idle timeout: gone.
	clk.Advance(31 * time.Minute)
	if me := b.me(); me.status != http.StatusUnauthorized {
		t.Errorf("idle session still answers: %d", me.status)
	}
	// The absolute limit holds even for a busy session.
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("sign-in = %d", end.status)
	}
	for range 5 {
		clk.Advance(20 * time.Minute)
		if me := b.me(); me.status != http.StatusOK {
			t.Fatal("busy session ended early")
		}
	}
	clk.Advance(21 * time.Minute) // 2h01 after sign-in: still within the idle timeout
	if me := b.me(); me.status != http.StatusUnauthorized {
		t.Errorf("session older than the absolute limit still answers: %d", me.status)
	}
	// The sweeper removes what expired.
	if _, _, err := e.store.SweepExpired(e.ctx(), clk.Now(), 100); err != nil {
		t.Fatal(err)
	}
	if n := e.sessionsOf(tid); n != 0 {
		t.Errorf("%d expired sessions left after a sweep", n)
	}
}

// TestRelaunch: a new launch always signs in again, so a different WebUntis user on the same
// browser never sees the previous one, and the old session ends; a launch for another school
// replaces the session with that school's.
func TestRelaunch(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	a, other := e.newSchool(store.StateActive), e.newSchool(store.StateActive)
	teacher, student := e.user(a, platformsim.RoleTeacher), e.user(a, platformsim.RoleStudent)
	b := e.browser()
	b.signInAs(a, teacher.SourcedID)
	b.launch(launchQuery(a))
	oldCookie := b.cookie("__Host-untis-session")
	if m := decodeMe(t, b.me()); m.Sub != teacher.SourcedID {
		t.Fatalf("signed in as %s", m.Sub)
	}
	// Someone else signs in to WebUntis in the same browser and opens the app.
	b.signInAs(a, student.SourcedID)
	if end := b.launch(launchQuery(a)); !strings.Contains(end.body, student.GivenName) || strings.Contains(end.body, teacher.FamilyName) {
		t.Errorf("after the user switch the page shows:\n%s", end.body)
	}
	if m := decodeMe(t, b.me()); m.Sub != student.SourcedID {
		t.Errorf("after the user switch /api/me is %s, want %s", m.Sub, student.SourcedID)
	}
	if b.cookie("__Host-untis-session") == oldCookie {
		t.Error("the session id was reused across sign-ins")
	}
	if n := e.sessionsOf(a); n != 1 {
		t.Errorf("%d sessions for the school, want the replaced one gone", n)
	}
	// The old cookie no longer works.
	stale := e.browser()
	appURL, _ := url.Parse(e.app.srv.URL)
	stale.jar.SetCookies(asHTTPS(appURL), []*http.Cookie{{Name: "__Host-untis-session", Value: oldCookie, Path: "/"}})
	if me := stale.me(); me.status != http.StatusUnauthorized {
		t.Errorf("replaced session still answers: %d", me.status)
	}
	// Another school, same browser.
	u := e.user(other, platformsim.RoleTeacher)
	b.signInAs(other, u.SourcedID)
	b.launch(launchQuery(other))
	if m := decodeMe(t, b.me()); m.TenantID != other || m.Sub != u.SourcedID {
		t.Errorf("after launching for school %s: %+v", other, m)
	}
	if e.sessionsOf(a) != 0 || e.sessionsOf(other) != 1 {
		t.Errorf("sessions: school %s %d, school %s %d", a, e.sessionsOf(a), other, e.sessionsOf(other))
	}
}

// TestSeveralTabs: two launches in one browser at once each complete.
func TestSeveralTabs(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	cb1 := b.authorize(e.app, launchQuery(tid, "lesson_id", "1"))
	cb2 := b.authorize(e.app, launchQuery(tid, "lesson_id", "2"))
	if r := b.get(cb1); r.status != http.StatusSeeOther {
		t.Errorf("first tab = %d:\n%s", r.status, r.body)
	}
	if r := b.get(cb2); r.status != http.StatusSeeOther {
		t.Errorf("second tab = %d:\n%s", r.status, r.body)
	}
	if m := decodeMe(t, b.me()); m.Launch["lesson_id"] != "2" {
		t.Errorf("launch context %v, want the second tab's", m.Launch)
	}
}

// TestTwoReplicas: a flow started on one server instance completes on another, and either
// serves the session.
func TestTwoReplicas(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	second := e.newInstance()
	tid := e.newSchool(store.StateActive)
	u := e.user(tid, platformsim.RoleTeacher)
	b := e.browser()
	b.signInAs(tid, u.SourcedID)
	cb, _ := url.Parse(b.authorize(e.app, launchQuery(tid)))
	target, _ := url.Parse(second.srv.URL)
	cb.Scheme, cb.Host = target.Scheme, target.Host
	if r := b.get(cb.String()); r.status != http.StatusSeeOther {
		t.Fatalf("callback on the second instance = %d:\n%s", r.status, r.body)
	}
	for _, in := range []*instance{e.app, second} {
		if m := decodeMe(t, b.get(in.srv.URL+"/api/me")); m.Sub != u.SourcedID {
			t.Errorf("%s: /api/me %+v", in.srv.URL, m)
		}
	}
	// Logging out on one ends it on both.
	if r := b.do(http.MethodPost, second.srv.URL+"/logout", nil); r.status != http.StatusOK {
		t.Errorf("logout = %d", r.status)
	}
	if r := b.get(e.app.srv.URL + "/api/me"); r.status != http.StatusUnauthorized {
		t.Errorf("after logout on the other instance: %d", r.status)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	signedIn := func() *browser {
		b := e.browser()
		b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
		b.launch(launchQuery(tid))
		return b
	}

	t.Run("GET shows a page", func(t *testing.T) {
		b := signedIn()
		r := b.get(e.app.srv.URL + "/logout")
		if r.status != http.StatusOK || !strings.Contains(r.body, "You are signed out") {
			t.Errorf("logout = %d:\n%s", r.status, r.body)
		}
		if !strings.Contains(strings.Join(r.header.Values("Set-Cookie"), " "), "__Host-untis-session=; Path=/; Max-Age=0") {
			t.Errorf("cookie not cleared: %v", r.header.Values("Set-Cookie"))
		}
		if b.me().status != http.StatusUnauthorized {
			t.Error("still signed in")
		}
	})

	t.Run("the platform's cross-origin call", func(t *testing.T) {
		b := signedIn()
		// Preflight from the platform's origin.
		pre := b.do(http.MethodOptions, e.app.srv.URL+"/logout", http.Header{
			"Origin": {e.simURL}, "Access-Control-Request-Method": {"POST"}})
		if pre.status != http.StatusNoContent || pre.header.Get("Access-Control-Allow-Origin") != e.simURL ||
			pre.header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(pre.header.Get("Access-Control-Allow-Methods"), "POST") {
			t.Errorf("preflight = %d %v", pre.status, pre.header)
		}
		if b.me().status != http.StatusOK {
			t.Fatal("a preflight ended the session")
		}
		r := b.do(http.MethodPost, e.app.srv.URL+"/logout", http.Header{"Origin": {e.simURL}, "Sec-Fetch-Mode": {"cors"}})
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != e.simURL ||
			r.header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(r.header.Get("Vary"), "Origin") {
			t.Errorf("cross-origin logout = %d %v", r.status, r.header)
		}
		if b.me().status != http.StatusUnauthorized {
			t.Error("still signed in after the platform's logout call")
		}
	})

	t.Run("other origins get no CORS grant", func(t *testing.T) {
		b := signedIn()
		for _, origin := range []string{"https://evil.example", "null", e.simURL + ".evil.example", "http://127.0.0.1"} {
			r := b.do(http.MethodOptions, e.app.srv.URL+"/logout", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}})
			if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("origin %s granted: %v", origin, r.header)
			}
		}
	})
}

// TestPendingSetup: a school pending setup still signs users in; its admins go to /setup, the
// others see that the school is being set up.
func TestPendingSetup(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StatePendingSetup)

	admin := e.browser()
	admin.signInAs(tid, e.user(tid, platformsim.RoleAdministrator).SourcedID)
	hops := admin.follow(e.app.srv.URL + "/launch?" + launchQuery(tid).Encode())
	last := hops[len(hops)-1]
	if last.url != e.app.srv.URL+"/setup" || last.status != http.StatusOK || !strings.Contains(last.body, "Set up the app") {
		t.Errorf("admin ended on %s %d:\n%s", last.url, last.status, last.body)
	}
	teacher := e.browser()
	teacher.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	end := teacher.launch(launchQuery(tid))
	if end.status != http.StatusOK || !strings.Contains(end.body, "still has to") || strings.Contains(end.body, `href="/setup"`) {
		t.Errorf("teacher sees %d:\n%s", end.status, end.body)
	}
	if r := teacher.get(e.app.srv.URL + "/setup"); r.status != http.StatusForbidden {
		t.Errorf("teacher on /setup = %d", r.status)
	}
	if r := e.browser().get(e.app.srv.URL + "/setup"); r.status != http.StatusUnauthorized {
		t.Errorf("anonymous /setup = %d", r.status)
	}
}

// TestDeactivatedSchoolEndsSessions: once a school is not active, its sessions stop answering
// (the onboarding issue deletes them; the lookup refuses them even before that).
func TestDeactivatedSchoolEndsSessions(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid, other := e.newSchool(store.StateActive), e.newSchool(store.StateActive)
	a, b := e.browser(), e.browser()
	a.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	b.signInAs(other, e.user(other, platformsim.RoleTeacher).SourcedID)
	a.launch(launchQuery(tid))
	b.launch(launchQuery(other))
	if err := e.store.UpsertTenant(e.ctx(), tid, store.StateDeactivated, ""); err != nil {
		t.Fatal(err)
	}
	if r := a.me(); r.status != http.StatusUnauthorized {
		t.Errorf("session of a deactivated school = %d", r.status)
	}
	if r := b.me(); r.status != http.StatusOK {
		t.Errorf("another school's session = %d", r.status)
	}
}

// TestEmbedMode: cookies for the platform's iFrame, framing for the platform only, and the
// "open in a new tab" page when the browser withheld the flow cookie.
func TestEmbedMode(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{embed: true})
	tid := e.newSchool(store.StateActive)
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	hops := b.follow(e.app.srv.URL + "/launch?" + launchQuery(tid, "lesson_id", "5").Encode())
	for _, h := range []answer{hops[0], hops[2]} {
		for _, c := range h.header.Values("Set-Cookie") {
			if strings.HasPrefix(c, session.CookieName+"=; ") && strings.Contains(c, "Max-Age=0; HttpOnly; Secure; SameSite=Lax") {
				continue // the removal of the other mode's session cookie (TestSessionCookieOfEachMode)
			}
			if !strings.Contains(c, "SameSite=None") || !strings.Contains(c, "Partitioned") || !strings.Contains(c, "Secure") ||
				!strings.Contains(c, "HttpOnly") || !strings.HasPrefix(c, "__Host-") {
				t.Errorf("embed-mode cookie %s", c)
			}
		}
	}
	home := hops[len(hops)-1]
	if csp := home.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'self' "+e.simURL) {
		t.Errorf("CSP %s", csp)
	}
	if xfo := home.header.Get("X-Frame-Options"); xfo != "" {
		t.Errorf("X-Frame-Options %s in embed mode", xfo)
	}
	// Third-party cookies blocked: the callback arrives without the flow cookie.
	cb := b.authorize(e.app, launchQuery(tid, "lesson_id", "5"))
	end := e.browser().get(cb)
	if end.status != http.StatusBadRequest || !strings.Contains(end.body, "Open the app in a new tab") ||
		!strings.Contains(end.body, `target="_blank"`) || !strings.Contains(end.body, "/launch?lesson_id=5&amp;tenant_id="+tid) {
		t.Errorf("blocked cookie page %d:\n%s", end.status, end.body)
	}
}

// In embed mode a callback without its flow cookie is almost always a browser that blocked the
// cookie inside WebUntis' frame: the page offers the launch in a new tab. A callback the browser
// opened in a tab of its own (Sec-Fetch-Dest: document) is not framed, so "open it in a new tab"
// would send the reader round in circles: it gets the page for a tab, which asks to allow
// cookies and starts the same launch again in the same tab.
func TestEmbedModeMissingFlowCookieOutsideTheFrame(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{embed: true})
	tid := e.newSchool(store.StateActive)
	for _, tc := range []struct {
		dest, want, notWant string
	}{
		{"document", "Sign-in needs cookies", "Open the app in a new tab"},
		{"iframe", "Open the app in a new tab", "Sign-in needs cookies"},
	} {
		b := e.browser()
		b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
		cb := b.authorize(e.app, launchQuery(tid, "lesson_id", "5"))
		end := e.browser().do(http.MethodGet, cb, http.Header{"Sec-Fetch-Dest": {tc.dest}, "Sec-Fetch-Mode": {"navigate"}})
		if end.status != http.StatusBadRequest || !strings.Contains(end.body, tc.want) || strings.Contains(end.body, tc.notWant) ||
			!strings.Contains(end.body, "/launch?lesson_id=5&amp;tenant_id="+tid) {
			t.Errorf("Sec-Fetch-Dest %s: page %d, want %q:\n%s", tc.dest, end.status, tc.want, end.body)
		}
		if tc.dest == "document" && strings.Contains(end.body, `target="_blank"`) {
			t.Errorf("the page for a tab opens yet another tab:\n%s", end.body)
		}
	}
}

// TestKeyRotation: after the platform rotates its signing key, sign-ins go on once the JWKS
// may be fetched again, and a flood of unknown key ids fetches the JWKS at most once per 30 s.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{sim: platformsim.Config{FreshKeys: true}})
	clk := e.sim
	tid := e.newSchool(store.StateActive)
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	jwks := func() int {
		n := 0
		for _, c := range e.sim.Stats().JWKSFetches {
			n += c
		}
		return n
	}
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("first sign-in = %d", end.status)
	}
	if n := jwks(); n != 1 {
		t.Fatalf("%d JWKS fetches for the first sign-in", n)
	}
	// A flood of id_tokens signed by a key the JWKS does not hold (random key ids).
	for range 20 {
		if err := e.sim.InjectIDTokenFault(tid, platformsim.ForeignKey); err != nil {
			t.Fatal(err)
		}
		if end := b.launch(launchQuery(tid)); end.status != http.StatusForbidden {
			t.Fatalf("foreign key accepted: %d", end.status)
		}
	}
	if n := jwks(); n > 2 {
		t.Errorf("%d JWKS fetches for 20 unknown key ids within 30 s, want at most one more", n)
	}
	clk.Advance(sso.DefaultJWKSMinInterval + time.Second)
	before := jwks()
	if _, err := e.sim.RotateSigningKey(false); err != nil {
		t.Fatal(err)
	}
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("sign-in after the rotation = %d:\n%s", end.status, end.body)
	}
	if n := jwks(); n != before+1 {
		t.Errorf("rotation cost %d JWKS fetches, want 1", n-before)
	}
	if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Errorf("second sign-in after the rotation = %d", end.status)
	}
}
