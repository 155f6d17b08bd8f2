package httpserver_test

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// addOperator creates a console account, hashed cheaply (the manager reads the cost from the hash).
func (e *signinEnv) addOperator(email, password string) {
	e.t.Helper()
	hash, err := testHashParams.Hash(password)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.app.store.UpsertOperator(e.ctx(), email, hash); err != nil {
		e.t.Fatal(err)
	}
}

// consoleLogin posts the console's sign-in form from b (opening the form first when b has no
// form token yet).
func consoleLogin(t *testing.T, b *browser, email, password string) answer {
	t.Helper()
	return consoleLoginFrom(t, b, "", email, password)
}

// consoleLoginFrom is consoleLogin from the client address ip, as a trusted proxy in front of the
// server says (X-Forwarded-For; the test server must trust 127.0.0.1). "" is the direct peer.
func consoleLoginFrom(t *testing.T, b *browser, ip, email, password string) answer {
	t.Helper()
	page := b.get(b.e.app.srv.URL + "/admin/login")
	if page.status != http.StatusOK {
		t.Fatalf("GET /admin/login = %d", page.status)
	}
	var h http.Header
	if ip != "" {
		h = http.Header{"X-Forwarded-For": {ip}}
	}
	return b.formPost(b.e.app.srv.URL+"/admin/login",
		url.Values{"csrf": {obCSRF(t, page.body)}, "email": {email}, "password": {password}}, h)
}

// consoleBrowser signs an operator in with a new browser and returns it with the CSRF token of
// its console pages.
func (e *signinEnv) consoleBrowser(t *testing.T, email, password string) (*browser, string) {
	t.Helper()
	b := e.browser()
	if got := consoleLogin(t, b, email, password); got.status != http.StatusSeeOther || got.location != e.app.srv.URL+"/admin" {
		t.Fatalf("console sign-in = %d to %q\n%s", got.status, got.location, got.body)
	}
	page := b.get(e.app.srv.URL + "/admin")
	if page.status != http.StatusOK {
		t.Fatalf("GET /admin = %d", page.status)
	}
	return b, obCSRF(t, page.body)
}

const genericSignInRefusal = "Wrong e-mail address or password."

func TestConsoleSignIn(t *testing.T) {
	t.Parallel()
	// The server's clock is the simulator's: advancing it lets the limits decay. The server
	// trusts the test as its proxy, so X-Forwarded-For names the client.
	e := newSigninEnv(t, signinOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	loginURL := e.app.srv.URL + "/admin/login"

	page := e.browser().get(loginURL)
	if page.status != http.StatusOK || !strings.Contains(page.body, `action="/admin/login"`) || !strings.Contains(page.body, `type="password"`) {
		t.Fatalf("sign-in page: %d\n%s", page.status, page.body)
	}

	t.Run("one message for every refusal", func(t *testing.T) {
		b := e.browser()
		wrong := consoleLogin(t, b, email, "not the password at all")
		unknown := consoleLogin(t, b, "nobody@partner.example", pw)
		for name, got := range map[string]answer{"wrong password": wrong, "unknown e-mail": unknown} {
			if got.status != http.StatusUnauthorized || !strings.Contains(got.body, genericSignInRefusal) {
				t.Errorf("%s: %d\n%s", name, got.status, got.body)
			}
			if strings.Contains(got.header.Get("Set-Cookie"), operator.CookieName) {
				t.Errorf("%s: a console cookie was set", name)
			}
		}
		if got := consoleLogin(t, b, "", ""); got.status != http.StatusUnauthorized || !strings.Contains(got.body, genericSignInRefusal) {
			t.Errorf("empty form: %d", got.status)
		}
		// The form token is required.
		if got := b.formPost(loginURL, url.Values{"email": {email}, "password": {pw}}, nil); got.status != http.StatusForbidden {
			t.Errorf("without the form token: %d", got.status)
		}
		// And so is our own site.
		token := obCSRF(t, b.get(loginURL).body)
		if got := b.formPost(loginURL, url.Values{"csrf": {token}, "email": {email}, "password": {pw}},
			http.Header{"Origin": {"https://evil.example"}}); got.status != http.StatusForbidden {
			t.Errorf("cross-origin sign-in: %d", got.status)
		}
	})

	t.Run("success and cookie", func(t *testing.T) {
		b := e.browser()
		got := consoleLogin(t, b, "  OPS@Partner.Example ", pw)
		if got.status != http.StatusSeeOther || got.location != e.app.srv.URL+"/admin" {
			t.Fatalf("sign-in = %d to %q\n%s", got.status, got.location, got.body)
		}
		var c *http.Cookie
		for _, sc := range got.header.Values("Set-Cookie") {
			if k, err := http.ParseSetCookie(sc); err == nil && k.Name == operator.CookieName {
				c = k
			}
		}
		if c == nil || c.Value == "" || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("console cookie %+v (Set-Cookie %q)", c, got.header.Values("Set-Cookie"))
		}
		if page := b.get(e.app.srv.URL + "/admin"); page.status != http.StatusOK || !strings.Contains(page.body, email) {
			t.Errorf("GET /admin = %d", page.status)
		}
		// Signed in, the sign-in page sends the operator on.
		if again := b.get(loginURL); again.status != http.StatusSeeOther {
			t.Errorf("GET /admin/login while signed in = %d", again.status)
		}
		// Sign-out ends the session.
		csrf := obCSRF(t, b.get(e.app.srv.URL+"/admin").body)
		if out := b.formPost(e.app.srv.URL+"/admin/logout", url.Values{"csrf": {csrf}}, nil); out.status != http.StatusSeeOther ||
			out.location != loginURL {
			t.Errorf("sign-out = %d to %q", out.status, out.location)
		}
		if page := b.get(e.app.srv.URL + "/admin"); page.status != http.StatusSeeOther || page.location != loginURL {
			t.Errorf("after sign-out GET /admin = %d to %q", page.status, page.location)
		}
	})

	t.Run("held back per account and network, never locked out", func(t *testing.T) {
		const email2, pw2 = "locked@partner.example", "another long password"
		e.addOperator(email2, pw2)
		b := e.browser()
		const attacker = "203.0.113.66"
		for i := range 5 {
			if got := consoleLoginFrom(t, b, attacker, email2, "guess "+strconv.Itoa(i)); got.status != http.StatusUnauthorized {
				t.Fatalf("guess %d = %d", i+1, got.status)
			}
		}
		// The attacker's network is held back for this account, even with the right password.
		got := consoleLoginFrom(t, b, attacker, email2, pw2)
		wait, _ := strconv.Atoi(got.header.Get("Retry-After"))
		if got.status != http.StatusTooManyRequests || !strings.Contains(got.body, "Too many failed sign-ins to this account from your network") ||
			!strings.Contains(got.body, "server operator unlock") || wait < 60 || wait > 15*60 {
			t.Fatalf("the right password from the guessing network = %d (Retry-After %q)\n%s", got.status, got.header.Get("Retry-After"), got.body)
		}
		if n := e.obCount(`SELECT count(*) FROM operator_sessions s JOIN operators o ON o.id = s.operator_id WHERE o.email = $1`, email2); n != 0 {
			t.Errorf("%d sessions for a held-back sign-in", n)
		}
		// An address without an account is held back the same way: the answer tells nothing
		// about which accounts exist.
		for i := range 5 {
			consoleLoginFrom(t, b, attacker, "nobody@partner.example", "guess "+strconv.Itoa(i))
		}
		if got := consoleLoginFrom(t, b, attacker, "nobody@partner.example", pw2); got.status != http.StatusTooManyRequests ||
			!strings.Contains(got.body, "Too many failed sign-ins to this account from your network") {
			t.Errorf("an unknown address after 5 failures = %d", got.status)
		}
		// The operator, from anywhere else (the office, an IPv6 network), signs in at once: the
		// guesses locked no one else out. (Before, five guesses an hour from one client kept the
		// console closed to the right password from everywhere.)
		for _, ip := range []string{"198.51.100.20", "2001:db8:42:1::7"} {
			if got := consoleLoginFrom(t, e.browser(), ip, email2, pw2); got.status != http.StatusSeeOther {
				t.Errorf("the right password from %s = %d\n%s", ip, got.status, got.body)
			}
		}
		// The count decays: after the wait, one more attempt from the guessing network is
		// checked, and the right password gets in.
		e.sim.Advance(time.Duration(wait) * time.Second)
		if got := consoleLoginFrom(t, b, attacker, email2, pw2); got.status != http.StatusSeeOther {
			t.Errorf("after the wait: %d\n%s", got.status, got.body)
		}
		// A success empties that network's count for the account.
		b = e.browser()
		for i := range 4 {
			if got := consoleLoginFrom(t, b, attacker, email2, "guess again "+strconv.Itoa(i)); got.status != http.StatusUnauthorized {
				t.Errorf("guess %d after a success = %d", i+1, got.status)
			}
		}
	})
}

func TestConsoleSignInRateLimitPerNetwork(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	b := e.browser()
	const network = "2001:db8:7:7::1"
	var statuses []int
	var last answer
	// Other addresses of the same IPv6 /64 are the same network.
	for i := range 21 {
		last = consoleLoginFrom(t, b, "2001:db8:7:7::"+strconv.FormatInt(int64(i+1), 16), "nobody"+strconv.Itoa(i)+"@partner.example", "whatever it is")
		statuses = append(statuses, last.status)
	}
	for i, s := range statuses[:20] {
		if s != http.StatusUnauthorized {
			t.Errorf("attempt %d = %d, want 401", i+1, s)
		}
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" ||
		!strings.Contains(last.body, "Too many sign-in attempts from your network") {
		t.Errorf("attempt 21 = %d (Retry-After %q), want 429", last.status, last.header.Get("Retry-After"))
	}
	// Over the limit, even the right password is refused from that network...
	if right := consoleLoginFrom(t, b, network, email, pw); right.status != http.StatusTooManyRequests {
		t.Errorf("the right password over the limit = %d", right.status)
	}
	// ...and only from that network.
	if other := consoleLoginFrom(t, e.browser(), "2001:db8:7:8::1", email, pw); other.status != http.StatusSeeOther {
		t.Errorf("the right password from the next /64 = %d", other.status)
	}
	// The limit decays: a minute later, two more attempts (one every 30 s).
	e.sim.Advance(time.Minute + time.Second)
	for i := range 2 {
		if got := consoleLoginFrom(t, b, network, "nobody@partner.example", "x"); got.status != http.StatusUnauthorized {
			t.Errorf("attempt %d after a minute = %d", i+1, got.status)
		}
	}
	if got := consoleLoginFrom(t, b, network, "nobody@partner.example", "x"); got.status != http.StatusTooManyRequests {
		t.Errorf("third attempt after a minute = %d", got.status)
	}
}

// consoleRow returns the list's table row of a school.
func consoleRow(t *testing.T, page, tid string) string {
	t.Helper()
	i := strings.Index(page, `<a href="/admin/tenants/`+tid+`">`)
	if i < 0 {
		t.Fatalf("school %s is not listed", tid)
	}
	j := strings.Index(page[i:], "</tr>")
	return page[i : i+j]
}

func TestConsole(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	e.addOperator("second@partner.example", "second operator's password")
	base := e.app.srv.URL

	a, b := "6801", "6802"
	e.obActivate(a)
	e.obActivate(b)
	teacherA, _ := e.obSignIn(a, platformsim.RoleTeacher)
	teacherB, _ := e.obSignIn(b, platformsim.RoleTeacher)
	schoolAdmin, adminHome := e.obSignIn(b, platformsim.RoleAdministrator)
	schoolCSRF := obCSRF(t, adminHome.body)
	_, secA, pwA, _ := e.sim.Credentials(a)
	clientID, secB, pwB, _ := e.sim.Credentials(b)

	ops, csrf := e.consoleBrowser(t, email, pw)
	_, otherCSRF := e.consoleBrowser(t, "second@partner.example", "second operator's password")
	if csrf == otherCSRF {
		t.Fatal("two console sessions share a CSRF token")
	}

	gets := []string{"/admin", "/admin/tenants/" + a}
	posts := []string{"/admin/tenants/" + a + "/credentials", "/admin/tenants/" + a + "/deactivate", "/admin/logout"}
	unchanged := func(t *testing.T) {
		t.Helper()
		if e.obState(a) != store.StateActive || e.obVersions(a) != 1 || e.sessionsOf(a) != 1 {
			t.Errorf("school %s changed: state %q, %d credentials, %d sessions", a, e.obState(a), e.obVersions(a), e.sessionsOf(a))
		}
		if got := ops.get(base + "/admin"); got.status != http.StatusOK {
			t.Errorf("the operator's session ended: %d", got.status)
		}
	}
	fullForm := func(token string) url.Values {
		return url.Values{"csrf": {token}, "confirm": {a}, "clientId": {clientID}, "secret": {secA}, "password": {pwA}}
	}

	t.Run("no console session", func(t *testing.T) {
		for name, c := range map[string]*browser{"anonymous": e.browser(), "school admin": schoolAdmin} {
			for _, p := range gets {
				if got := c.get(base + p); got.status != http.StatusSeeOther || got.location != base+"/admin/login" {
					t.Errorf("%s: GET %s = %d to %q", name, p, got.status, got.location)
				}
			}
			for _, p := range posts {
				if got := c.formPost(base+p, fullForm(schoolCSRF), nil); got.status != http.StatusUnauthorized {
					t.Errorf("%s: POST %s = %d", name, p, got.status)
				}
			}
		}
		unchanged(t)
	})

	t.Run("CSRF", func(t *testing.T) {
		for _, p := range posts {
			for name, token := range map[string]string{"no token": "", "another operator's token": otherCSRF, "a school session's token": schoolCSRF} {
				form := fullForm(token)
				if token == "" {
					form.Del("csrf")
				}
				if got := ops.formPost(base+p, form, nil); got.status != http.StatusForbidden {
					t.Errorf("POST %s with %s = %d", p, name, got.status)
				}
			}
			if got := ops.formPost(base+p, fullForm(csrf), http.Header{"Sec-Fetch-Site": {"cross-site"}}); got.status != http.StatusForbidden {
				t.Errorf("cross-site POST %s = %d", p, got.status)
			}
		}
		unchanged(t)
	})

	t.Run("list", func(t *testing.T) {
		page := ops.get(base + "/admin")
		row := consoleRow(t, page.body, a)
		for _, want := range []string{">Active<", "CREATED ", "version 1, set ", " by the platform&#39;s webhook", `data-label="Health">ok</td>`, `data-label="Users">1</td>`} {
			if !strings.Contains(row, want) {
				t.Errorf("row of %s has no %q: %s", a, want, row)
			}
		}
		// School B: a teacher and an admin signed in.
		if row := consoleRow(t, page.body, b); strings.Count(row, ">2</td>") != 2 {
			t.Errorf("row of %s: want 2 users and 2 sessions: %s", b, row)
		}
		for _, s := range []string{secA, pwA, secB, pwB} {
			if strings.Contains(page.body, s) {
				t.Error("the list shows a secret or password value")
			}
		}
		if got := ops.get(base + "/admin?tenant_id=" + a); got.status != http.StatusSeeOther || got.location != base+"/admin/tenants/"+a {
			t.Errorf("find a school = %d to %q", got.status, got.location)
		}
	})

	t.Run("detail", func(t *testing.T) {
		page := ops.get(base + "/admin/tenants/" + a)
		for _, want := range []string{"School " + a, "The platform&#39;s CREATED webhook brought credentials, version 1.", "The platform (webhook)", "version 1", "client id <code>" + clientID + "</code>",
			`action="/admin/tenants/` + a + `/deactivate"`, "office@"} {
			if !strings.Contains(page.body, want) {
				t.Errorf("the detail page has no %q", want)
			}
		}
		for _, s := range []string{secA, pwA} {
			if strings.Contains(page.body, s) {
				t.Error("the detail page shows a secret or password value")
			}
		}
		if got := ops.get(base + "/admin/tenants/6899"); got.status != http.StatusNotFound || !strings.Contains(got.body, "not known here yet") {
			t.Errorf("unknown school = %d", got.status)
		}
	})

	t.Run("manual credentials", func(t *testing.T) {
		// Wrong: refused by the platform, nothing stored, the refusal audited.
		wrong := url.Values{"csrf": {csrf}, "clientId": {clientID}, "secret": {secA}, "password": {"Not-The-Password-6801"}}
		got := ops.formPost(base+"/admin/tenants/"+a+"/credentials", wrong, nil)
		if got.status != http.StatusBadRequest || !strings.Contains(got.body, "Nothing was stored") {
			t.Errorf("wrong credentials = %d\n%s", got.status, got.body)
		}
		if strings.Contains(got.body, "Not-The-Password-6801") || strings.Contains(got.body, secA) {
			t.Error("the page shows a value that was entered")
		}
		if e.obVersions(a) != 1 {
			t.Errorf("%d credentials versions after a refusal", e.obVersions(a))
		}
		if ev := e.auditOf(a, "credentials.refused"); len(ev) != 1 || ev[0].Actor != "operator "+email {
			t.Errorf("refusal audit %+v", ev)
		}
		// Right: a new version, from the operator. The path names the school, not the form.
		right := url.Values{"csrf": {csrf}, "clientId": {clientID}, "secret": {secA}, "password": {pwA}, "tenantId": {b}}
		got = ops.formPost(base+"/admin/tenants/"+a+"/credentials", right, nil)
		if got.status != http.StatusSeeOther || got.location != base+"/admin/tenants/"+a {
			t.Fatalf("right credentials = %d to %q\n%s", got.status, got.location, got.body)
		}
		c, err := e.store.ActiveCredentials(e.ctx(), a)
		if err != nil || c.Version != 2 || c.Source != store.SourceOperator {
			t.Errorf("stored %v, %v", c, err)
		}
		if ev := e.auditOf(a, "credentials.stored"); len(ev) != 2 || ev[0].Actor != "operator "+email || ev[0].Detail["replaces_source"] != store.SourceWebhook {
			t.Errorf("audit %+v", ev)
		}
		if e.obVersions(b) != 1 {
			t.Errorf("school %s got credentials from a form field", b)
		}
		page := ops.get(got.location)
		if !strings.Contains(page.body, "version 2") || !strings.Contains(page.body, "by an operator") || !strings.Contains(page.body, "Operator "+email) {
			t.Errorf("detail after manual entry:\n%s", page.body)
		}
		// The page says what the action did, once.
		if want := "New credentials for school " + a + " are stored (version 2); the school is now: Active."; !strings.Contains(page.body, want) {
			t.Errorf("the page after manual entry does not say %q:\n%s", want, page.body)
		}
		if again := ops.get(got.location); strings.Contains(again.body, "New credentials for school") {
			t.Error("the confirmation is shown a second time")
		}
		// Missing values: per field, nothing stored.
		got = ops.formPost(base+"/admin/tenants/"+a+"/credentials", url.Values{"csrf": {csrf}}, nil)
		if got.status != http.StatusBadRequest || strings.Count(got.body, `aria-invalid="true"`) != 3 || e.obVersions(a) != 2 {
			t.Errorf("empty form = %d", got.status)
		}
	})

	t.Run("deactivate", func(t *testing.T) {
		if me := teacherA.me(); me.status != http.StatusOK {
			t.Fatalf("teacher of %s not signed in: %d", a, me.status)
		}
		for _, confirm := range []string{"", b, "68O1"} {
			got := ops.formPost(base+"/admin/tenants/"+a+"/deactivate", url.Values{"csrf": {csrf}, "confirm": {confirm}}, nil)
			if got.status != http.StatusBadRequest || !strings.Contains(got.body, "type the school") {
				t.Errorf("confirm %q = %d", confirm, got.status)
			}
		}
		if e.obState(a) != store.StateActive || teacherA.me().status != http.StatusOK {
			t.Fatal("a wrong confirmation deactivated the school")
		}
		got := ops.formPost(base+"/admin/tenants/"+a+"/deactivate",
			url.Values{"csrf": {csrf}, "confirm": {a}, "tenantId": {b}, "reason": {"contract ended"}}, nil)
		if got.status != http.StatusSeeOther || got.location != base+"/admin/tenants/"+a {
			t.Fatalf("deactivate = %d to %q\n%s", got.status, got.location, got.body)
		}
		if e.obState(a) != store.StateDeactivated || e.obVersions(a) != 0 || e.sessionsOf(a) != 0 {
			t.Errorf("school %s: state %q, %d credentials, %d sessions", a, e.obState(a), e.obVersions(a), e.sessionsOf(a))
		}
		if me := teacherA.me(); me.status != http.StatusUnauthorized {
			t.Errorf("deactivated school's session: %d", me.status)
		}
		if e.obState(b) != store.StateActive || teacherB.me().status != http.StatusOK {
			t.Errorf("school %s was touched: state %q", b, e.obState(b))
		}
		if ev := e.auditOf(a, "tenant.deactivated"); len(ev) != 1 || ev[0].Actor != "operator "+email || ev[0].Detail["reason_text"] != "contract ended" {
			t.Errorf("audit %+v", ev)
		}
		// The next page says what happened, with the sessions it ended; the trail reads as sentences.
		page := ops.get(got.location)
		for _, want := range []string{"School " + a + " is deactivated; its 1 session was ended.", "Deactivated the school.",
			"Reason: contract ended", "1 session was ended.", "State: Active → Deactivated"} {
			if !strings.Contains(page.body, want) {
				t.Errorf("the page after deactivating does not say %q:\n%s", want, page.body)
			}
		}
		if strings.Contains(page.body, "map[") {
			t.Errorf("the audit trail shows program syntax:\n%s", page.body)
		}
		if got := ops.formPost(base+"/admin/tenants/6899/deactivate", url.Values{"csrf": {csrf}, "confirm": {"6899"}}, nil); got.status != http.StatusNotFound {
			t.Errorf("deactivate an unknown school = %d", got.status)
		}
	})
}
