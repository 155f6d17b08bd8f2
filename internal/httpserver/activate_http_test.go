package httpserver_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/store"
)

// activateForm opens /activate in b and returns the form's token, checking it is the form cookie's.
func activateForm(t *testing.T, b *browser) string {
	t.Helper()
	page := b.get(b.e.app.srv.URL + "/activate")
	if page.status != http.StatusOK {
		t.Fatalf("GET /activate = %d", page.status)
	}
	token := obCSRF(t, page.body)
	if c := b.cookie(session.FormCookieName); c == "" || c != token {
		t.Fatalf("form token %q, cookie %q", token, c)
	}
	return token
}

func activateValues(csrf, tid, clientID, secret, password string) url.Values {
	return url.Values{"csrf": {csrf}, "tenantId": {tid}, "clientId": {clientID}, "secret": {secret}, "password": {password}}
}

// auditOf returns the school's audit events with the given action, newest first.
func (e *signinEnv) auditOf(tid, action string) []store.AuditEvent {
	e.t.Helper()
	trail, err := e.store.AuditTrail(e.ctx(), tid, 100)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []store.AuditEvent
	for _, ev := range trail {
		if ev.Action == action {
			out = append(out, ev)
		}
	}
	return out
}

func TestActivatePage(t *testing.T) {
	t.Parallel()
	// At most activatePerIP (10) attempts reach the platform in this test: they all come from
	// 127.0.0.1.
	e := newSigninEnv(t, signinOptions{})
	activateURL := e.app.srv.URL + "/activate"

	t.Run("form", func(t *testing.T) {
		b := e.browser()
		got := b.get(activateURL + "?tenant_id=6601")
		sc := strings.Join(got.header.Values("Set-Cookie"), "\n")
		if got.status != http.StatusOK || !strings.Contains(sc, session.FormCookieName+"=") || !strings.Contains(sc, "HttpOnly") ||
			!strings.Contains(sc, "Secure") || !strings.Contains(sc, "Path=/") {
			t.Errorf("GET /activate = %d, Set-Cookie %q", got.status, sc)
		}
		if !strings.Contains(got.body, `name="tenantId" value="6601"`) {
			t.Errorf("the tenant hint is not in the form:\n%s", got.body)
		}
		token := obCSRF(t, got.body)
		if b.cookie(session.FormCookieName) != token {
			t.Error("the form's token is not the cookie's")
		}
		// The token stays the same while the cookie lives.
		if again := activateForm(t, b); again != token {
			t.Error("a second GET changed the token")
		}
		if got := b.get(activateURL + "?tenant_id=../etc"); strings.Contains(got.body, "../etc") {
			t.Error("a malformed tenant hint is echoed")
		}
	})

	t.Run("success", func(t *testing.T) {
		tid := e.obAddSchool("6602")
		clientID, sec, pw, _ := e.sim.Credentials(tid)
		b := e.browser()
		// Pasted values often carry spaces and line breaks.
		got := b.formPost(activateURL, activateValues(activateForm(t, b), tid, clientID, " "+sec+"\n", pw+" "), nil)
		if got.status != http.StatusOK || !strings.Contains(got.body, "The app is activated") {
			t.Fatalf("activation = %d\n%s", got.status, got.body)
		}
		if strings.Contains(got.body, sec) || strings.Contains(got.body, pw) {
			t.Error("the answer page shows a credential")
		}
		if s := e.obState(tid); s != store.StateActive {
			t.Errorf("state %q", s)
		}
		c, err := e.store.ActiveCredentials(e.ctx(), tid)
		if err != nil || c.Secret != sec || c.Password != pw || c.Source != store.SourceManual || c.Version != 1 {
			t.Errorf("stored %v, %v", c, err)
		}
		ev := e.auditOf(tid, "credentials.stored")
		if len(ev) != 1 || ev[0].Actor != "activation page" || ev[0].Detail["source"] != store.SourceManual {
			t.Errorf("audit %+v", ev)
		}
		if _, home := e.obSignIn(tid, platformsim.RoleTeacher); home.status != http.StatusOK || !strings.Contains(home.body, "Hello,") {
			t.Errorf("sign-in after manual activation: %d", home.status)
		}
	})

	t.Run("refused", func(t *testing.T) {
		tid := e.obAddSchool("6603")
		clientID, sec, pw, _ := e.sim.Credentials(tid)
		b := e.browser()
		token := activateForm(t, b)
		for _, tc := range []struct {
			name              string
			tid, client, s, p string
			want              string
			secrets           []string
		}{
			{"wrong password", tid, clientID, sec, "Wrong-Password-6603", "refused the client id or the password",
				[]string{sec, "Wrong-Password-6603"}},
			{"swapped", tid, clientID, pw, sec, "swapped", []string{sec, pw}},
			{"unknown tenant", "6699", clientID, sec, pw, "does not know this tenant id", []string{sec, pw}},
		} {
			got := b.formPost(activateURL, activateValues(token, tc.tid, tc.client, tc.s, tc.p), nil)
			if got.status != http.StatusBadRequest || !strings.Contains(got.body, tc.want) || !strings.Contains(got.body, "Nothing was stored") {
				t.Errorf("%s: %d\n%s", tc.name, got.status, got.body)
			}
			if !strings.Contains(got.body, `class="field has-problem"`) {
				t.Errorf("%s: no field marked", tc.name)
			}
			for _, s := range tc.secrets {
				if strings.Contains(got.body, s) {
					t.Errorf("%s: the page shows a secret or password value", tc.name)
				}
			}
			if !strings.Contains(got.body, `value="`+tc.client+`"`) {
				t.Errorf("%s: the client id is not kept", tc.name)
			}
			if e.obState(tc.tid) != "" || e.obVersions(tc.tid) != 0 {
				t.Errorf("%s: something was stored", tc.name)
			}
		}
	})

	t.Run("missing fields", func(t *testing.T) {
		b := e.browser()
		got := b.formPost(activateURL, url.Values{"csrf": {activateForm(t, b)}, "secret": {"only-a-secret-value"}}, nil)
		if got.status != http.StatusBadRequest {
			t.Fatalf("missing fields = %d", got.status)
		}
		if n := strings.Count(got.body, "is required"); n != 3 {
			t.Errorf("%d 'is required' messages, want 3 (tenant id, client id, password):\n%s", n, got.body)
		}
		if strings.Contains(got.body, "only-a-secret-value") {
			t.Error("the page shows the secret it was sent")
		}
		got = b.formPost(activateURL, activateValues(activateForm(t, b), "../6604", "c", "s\x00", "p"), nil)
		if got.status != http.StatusBadRequest || !strings.Contains(got.body, "must be the school&#39;s tenant id") ||
			!strings.Contains(got.body, "not allowed") {
			t.Errorf("malformed fields = %d\n%s", got.status, got.body)
		}
	})

	t.Run("CSRF", func(t *testing.T) {
		tid := e.obAddSchool("6605")
		clientID, sec, pw, _ := e.sim.Credentials(tid)
		b, other := e.browser(), e.browser()
		activateForm(t, b)
		otherToken := activateForm(t, other)
		for name, token := range map[string]string{"no token": "", "another browser's token": otherToken} {
			got := b.formPost(activateURL, activateValues(token, tid, clientID, sec, pw), nil)
			if got.status != http.StatusForbidden || strings.Contains(got.body, sec) || strings.Contains(got.body, pw) {
				t.Errorf("%s: %d\n%s", name, got.status, got.body)
			}
		}
		// A browser without the form cookie cannot post the form either.
		fresh := e.browser()
		if got := fresh.formPost(activateURL, activateValues(otherToken, tid, clientID, sec, pw), nil); got.status != http.StatusForbidden {
			t.Errorf("without the cookie: %d", got.status)
		}
		if got := b.formPost(activateURL, activateValues(activateForm(t, b), tid, clientID, sec, pw),
			http.Header{"Sec-Fetch-Site": {"cross-site"}}); got.status != http.StatusForbidden {
			t.Errorf("cross-site: %d", got.status)
		}
		if e.obState(tid) != "" || e.obVersions(tid) != 0 {
			t.Error("a refused form stored something")
		}
	})

	t.Run("replaces webhook credentials only with proved ones", func(t *testing.T) {
		tid := "6606"
		e.obActivate(tid)
		clientID, sec, pw, _ := e.sim.Credentials(tid)
		before, err := e.store.ActiveCredentials(e.ctx(), tid)
		if err != nil || before.Source != store.SourceWebhook {
			t.Fatalf("%v %v", before, err)
		}
		b := e.browser()
		token := activateForm(t, b)
		if got := b.formPost(activateURL, activateValues(token, tid, clientID, sec, "Not-The-Password-6606"), nil); got.status != http.StatusBadRequest {
			t.Errorf("wrong password for an active school: %d", got.status)
		}
		if c, _ := e.store.ActiveCredentials(e.ctx(), tid); c.Version != 1 || c.Password != pw || e.obState(tid) != store.StateActive {
			t.Errorf("a refused activation changed the school: version %d, state %q", c.Version, e.obState(tid))
		}
		if got := b.formPost(activateURL, activateValues(token, tid, clientID, sec, pw), nil); got.status != http.StatusOK {
			t.Fatalf("right credentials: %d\n%s", got.status, got.body)
		}
		c, err := e.store.ActiveCredentials(e.ctx(), tid)
		if err != nil || c.Version != 2 || c.Source != store.SourceManual || e.obState(tid) != store.StateActive {
			t.Errorf("after replacing: %v %v, state %q", c, err, e.obState(tid))
		}
		ev := e.auditOf(tid, "credentials.stored")
		if len(ev) != 2 || ev[0].Actor != "activation page" || ev[0].Detail["replaces_source"] != store.SourceWebhook {
			t.Errorf("audit %+v", ev)
		}
	})
}

// activateLimits is the outcome of a run of the rate-limit scenario.
type activateLimits struct {
	statuses   []int
	retryAfter []string
}

func TestActivateRateLimits(t *testing.T) {
	t.Parallel()
	const window = 10 * time.Minute // activateWindow: fixed windows of wall-clock time
	// The limits count in fixed windows: a run that straddles a window's end starts counting
	// again halfway. Such a run is repeated once, with a fresh database.
	var res activateLimits
	for attempt := 0; ; attempt++ {
		start := time.Now().Truncate(window)
		res = runActivateLimits(t)
		if time.Now().Truncate(window).Equal(start) {
			break
		}
		if attempt == 1 {
			t.Fatal("two runs straddled a window's end")
		}
	}
	// Attempts 1-5 for school X are refused by the platform (wrong password); the 6th is over the
	// per-school limit. Attempts 7-10, for other schools, are under both limits; the 11th is over
	// the per-address limit (10).
	want := []int{400, 400, 400, 400, 400, 429, 400, 400, 400, 400, 429}
	for i, s := range res.statuses {
		if i >= len(want) || s != want[i] {
			t.Errorf("attempt statuses %v, want %v", res.statuses, want)
			break
		}
		if s == http.StatusTooManyRequests {
			if n, err := strconv.Atoi(res.retryAfter[i]); err != nil || n < 1 || n > int(window.Seconds())+1 {
				t.Errorf("attempt %d: Retry-After %q", i+1, res.retryAfter[i])
			}
		}
	}
}

func runActivateLimits(t *testing.T) activateLimits {
	e := newSigninEnv(t, signinOptions{})
	x := e.obAddSchool("6701")
	clientID, sec, pw, _ := e.sim.Credentials(x)
	b := e.browser()
	token := activateForm(t, b)
	var res activateLimits
	post := func(tid, password string) {
		got := b.formPost(e.app.srv.URL+"/activate", activateValues(token, tid, clientID, sec, password), nil)
		res.statuses = append(res.statuses, got.status)
		res.retryAfter = append(res.retryAfter, got.header.Get("Retry-After"))
		if strings.Contains(got.body, sec) || strings.Contains(got.body, pw) {
			t.Error("a page shows a credential")
		}
	}
	for range 6 {
		post(x, "wrong-password")
	}
	for i := range 5 {
		post(e.obAddSchool("670"+strconv.Itoa(2+i)), "wrong-password")
	}
	// The 6th attempt for school X was refused before the platform was asked; the right
	// credentials are refused too while the limits hold, and nothing is stored.
	if e.obVersions(x) != 0 {
		t.Error("something was stored")
	}
	return res
}
