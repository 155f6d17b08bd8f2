package httpserver_test

import (
	"net/http"
	"net/netip"
	"net/url"
	"slices"
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
			// The client id is the one this app uses for school 6602 (the success above).
			{"wrong password", tid, clientID, sec, "Wrong-Password-6603", "refused the password",
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
		// Each wrong field is marked, its message tied to it, and the summary on top links to it.
		for _, id := range []string{"a-tenant", "a-client", "a-password"} {
			for _, want := range []string{`aria-describedby="` + id + `-problem"`, `<p class="problem" id="` + id + `-problem">Please fill this in.</p>`, `<a href="#` + id + `">`} {
				if !strings.Contains(got.body, want) {
					t.Errorf("the page has no %s", want)
				}
			}
		}
		if n := strings.Count(got.body, `aria-invalid="true"`); n != 3 || !strings.Contains(got.body, `role="alert"`) {
			t.Errorf("%d fields marked invalid, want 3 (tenant id, client id, password), and an announced summary:\n%s", n, got.body)
		}
		if strings.Contains(got.body, "only-a-secret-value") {
			t.Error("the page shows the secret it was sent")
		}
		got = b.formPost(activateURL, activateValues(activateForm(t, b), "../6604", "c", "s\x01", "p"), nil)
		if got.status != http.StatusBadRequest || !strings.Contains(got.body, "Enter the school&#39;s tenant id") ||
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

// activateFrom posts the activation form from b as the client ip (X-Forwarded-For from the
// trusted test proxy) and returns the answer.
func activateFrom(t *testing.T, b *browser, ip string, form url.Values) answer {
	t.Helper()
	return b.formPost(b.e.app.srv.URL+"/activate", form, http.Header{"X-Forwarded-For": {ip}})
}

func TestActivateRateLimits(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	x := e.obAddSchool("6701")
	clientID, sec, pw, _ := e.sim.Credentials(x)
	b := e.browser()
	token := activateForm(t, b)
	const attacker, admin = "203.0.113.9", "2001:db8:5:6::10"
	var statuses []int
	var retryAfter []string
	post := func(ip, tid, password string) answer {
		got := activateFrom(t, b, ip, activateValues(token, tid, clientID, sec, password))
		statuses = append(statuses, got.status)
		retryAfter = append(retryAfter, got.header.Get("Retry-After"))
		if strings.Contains(got.body, sec) || strings.Contains(got.body, pw) {
			t.Error("a page shows a credential")
		}
		return got
	}
	// Attempts 1-5 for school X are refused by the platform (wrong password); the 6th is over the
	// limit of that school from that network. Attempts 7-10, for other schools, are under both
	// limits; the 11th is over the limit of the network (10).
	for range 6 {
		post(attacker, x, "wrong-password")
	}
	for i := range 5 {
		post(attacker, e.obAddSchool("670"+strconv.Itoa(2+i)), "wrong-password")
	}
	want := []int{400, 400, 400, 400, 400, 429, 400, 400, 400, 400, 429}
	if !slices.Equal(statuses, want) {
		t.Fatalf("attempt statuses %v, want %v", statuses, want)
	}
	for _, i := range []int{5, 10} {
		if n, err := strconv.Atoi(retryAfter[i]); err != nil || n < 1 || n > 2*60+1 {
			t.Errorf("attempt %d: Retry-After %q", i+1, retryAfter[i])
		}
	}
	if e.obVersions(x) != 0 {
		t.Error("something was stored")
	}
	// The school's own administrator, from another network, is not held back: the attempts of
	// one client use up no one else's. (Before, five requests from anywhere blocked a school's
	// activation for everyone for ten minutes.)
	nb := e.browser()
	if got := activateFrom(t, nb, admin, activateValues(activateForm(t, nb), x, clientID, sec, pw)); got.status != http.StatusOK ||
		!strings.Contains(got.body, "The app is activated") {
		t.Fatalf("the right credentials from another network = %d\n%s", got.status, got.body)
	}
	if e.obVersions(x) != 1 {
		t.Error("the activation was not stored")
	}
	// The limits decay: after the wait it was told, the attacker's network may try again, once.
	wait, _ := strconv.Atoi(retryAfter[5])
	e.sim.Advance(time.Duration(wait) * time.Second)
	if got := post(attacker, x, "wrong-password"); got.status != http.StatusBadRequest {
		t.Errorf("after the wait: %d", got.status)
	}
	if got := post(attacker, x, "wrong-password"); got.status != http.StatusTooManyRequests ||
		!strings.Contains(got.body, "Too many attempts from your network") {
		t.Errorf("right after: %d", got.status)
	}
}

// A wrong password must be named as such, with who can fix it, and not mark the client id,
// which is right (issue 12: the form marked the client id as refused).
func TestActivateWrongPasswordNamesThePassword(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	b := e.browser()
	fresh := e.obAddSchool("6801")
	clientID, sec, _, _ := e.sim.Credentials(fresh)
	marked := func(page, field string) bool {
		i := strings.Index(page, `name="`+field+`"`)
		j := strings.LastIndex(page[:max(i, 0)], `<div class="field`)
		return i >= 0 && j >= 0 && strings.HasPrefix(page[j:], `<div class="field has-problem"`)
	}

	// No school uses a client id yet: the platform's invalid_client does not say which part it
	// refused, so the page says so, marks both, and says who can fix them.
	got := b.formPost(e.app.srv.URL+"/activate", activateValues(activateForm(t, b), fresh, clientID, sec, "Wrong-Password-1"), nil)
	if got.status != http.StatusBadRequest || !strings.Contains(got.body, "refused the client id or the password") ||
		!strings.Contains(got.body, "does not say which") || !strings.Contains(got.body, "WebUntis administrator of your school") ||
		!marked(got.body, "clientId") || !marked(got.body, "password") || marked(got.body, "secret") {
		t.Errorf("a wrong password, no client id known = %d\n%s", got.status, got.body)
	}

	// Another school is active with the same client id (one platform application, one client id):
	// the client id is right, and the password is what was refused.
	e.obActivate("6802")
	got = b.formPost(e.app.srv.URL+"/activate", activateValues(activateForm(t, b), fresh, clientID, sec, "Wrong-Password-2"), nil)
	if got.status != http.StatusBadRequest || !strings.Contains(got.body, "refused the password for this school") ||
		!strings.Contains(got.body, "the client id is right") || !strings.Contains(got.body, "WebUntis administrator of your school") ||
		!marked(got.body, "password") || marked(got.body, "clientId") || marked(got.body, "secret") {
		t.Errorf("a wrong password, client id in use = %d\n%s", got.status, got.body)
	}
	if !strings.Contains(got.body, `value="`+clientID+`"`) {
		t.Error("the client id is not kept in the form")
	}
	// A wrong client id is still not taken for a wrong password.
	got = b.formPost(e.app.srv.URL+"/activate", activateValues(activateForm(t, b), fresh, "another-app", sec, "Wrong-Password-3"), nil)
	if got.status != http.StatusBadRequest || !strings.Contains(got.body, "refused the client id or the password") || !marked(got.body, "clientId") {
		t.Errorf("a wrong client id = %d\n%s", got.status, got.body)
	}
	if e.obVersions(fresh) != 0 {
		t.Error("a refused activation stored something")
	}
}
