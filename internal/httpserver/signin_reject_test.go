package httpserver_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
)

// refusal finds the "sign-in refused" log line of the request that got answer a, and checks its
// reason.
func (e *signinEnv) refusal(t *testing.T, a answer, wantReason string) {
	t.Helper()
	id := a.header.Get("X-Request-Id")
	for _, rec := range e.logs.Find(t, "sign-in refused") {
		if rec["request_id"] == id {
			if rec["reason"] != wantReason {
				t.Errorf("refused with reason %v, want %s (record %v)", rec["reason"], wantReason, rec)
			}
			return
		}
	}
	t.Errorf("no 'sign-in refused' log line for request %s (want reason %s)", id, wantReason)
}

// sessionsOf counts the sessions of one school.
func (e *signinEnv) sessionsOf(tenantID string) int {
	e.t.Helper()
	var n int
	if err := e.store.Pool().QueryRow(e.ctx(), `SELECT count(*) FROM sessions WHERE tenant_id = $1`, tenantID).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

var schoolSeq atomic.Int64

// newSchool adds a school with a fresh id.
func (e *signinEnv) newSchool(state string) string {
	id := fmt.Sprintf("%d", 4000+schoolSeq.Add(1))
	return e.school(platformsim.TenantSpec{ID: id, Name: "School " + id}, state)
}

// TestSignInRejections runs each way a sign-in must fail through real HTTP against the
// simulator: each ends on a 4xx page in plain words, creates no session, and logs its reason.
func TestSignInRejections(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	reasons := map[platformsim.IDTokenFault]string{
		platformsim.WrongNonce:         "nonce_mismatch",
		platformsim.WrongIssuer:        "wrong_issuer",
		platformsim.WrongAudience:      "wrong_audience",
		platformsim.MissingAudience:    "wrong_audience",
		platformsim.Expired:            "id_token_expired",
		platformsim.AlgNone:            "malformed_or_unsigned",
		platformsim.HS256WithPublicKey: "malformed_or_unsigned",
		platformsim.ForeignKey:         "unknown_key",
		platformsim.MissingSub:         "missing_sub",
		platformsim.OneRosterMismatch:  "profile_mismatch",
	}
	for _, fault := range platformsim.IDTokenFaults {
		t.Run(string(fault), func(t *testing.T) {
			t.Parallel()
			tid := e.newSchool(store.StateActive)
			b := e.browser()
			b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
			if err := e.sim.InjectIDTokenFault(tid, fault); err != nil {
				t.Fatal(err)
			}
			end := b.launch(launchQuery(tid))
			if end.status != http.StatusForbidden || !strings.Contains(end.body, "did not pass our security checks") {
				t.Errorf("end = %d:\n%s", end.status, end.body)
			}
			e.refusal(t, end, reasons[fault])
			if n := e.sessionsOf(tid); n != 0 {
				t.Errorf("%d sessions after a refused sign-in", n)
			}
			if me := b.me(); me.status != http.StatusUnauthorized {
				t.Errorf("/api/me after a refused sign-in = %d", me.status)
			}
			// The school is not broken by it: the next sign-in works.
			if end := b.launch(launchQuery(tid)); end.status != http.StatusOK || !strings.Contains(end.body, "Hello,") {
				t.Errorf("sign-in after the fault = %d", end.status)
			}
		})
	}

	// The platform sends the user back with an OAuth error instead of a code.
	for _, tc := range []struct {
		code   string
		status int
		words  string
	}{
		{"access_denied", http.StatusForbidden, "refused to sign you in to this app (access denied)"},
		{"invalid_ressource", http.StatusBadRequest, "does not match the one registered for it (invalid_ressource)"},
		{"login_required", http.StatusUnauthorized, "Sign in to WebUntis first"},
		{"<script>", http.StatusBadRequest, "WebUntis refused the sign-in (other)"},
	} {
		t.Run("platform error "+tc.code, func(t *testing.T) {
			t.Parallel()
			tid := e.newSchool(store.StateActive)
			b := e.browser()
			b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
			var end answer
			if strings.HasPrefix(tc.code, "<") {
				// Not an OAuth word: shown as "other", never echoed.
				cb := b.authorize(e.app, launchQuery(tid))
				u, _ := url.Parse(cb)
				q := u.Query()
				q.Del("code")
				q.Set("error", tc.code)
				u.RawQuery = q.Encode()
				end = b.get(u.String())
			} else {
				if err := e.sim.InjectAuthorizeError(tid, tc.code); err != nil {
					t.Fatal(err)
				}
				end = b.launch(launchQuery(tid))
			}
			if end.status != tc.status || !strings.Contains(end.body, tc.words) || strings.Contains(end.body, "<script>") {
				t.Errorf("end = %d, want %d with %q:\n%s", end.status, tc.status, tc.words, end.body)
			}
			e.refusal(t, end, "platform_error")
			if n := e.sessionsOf(tid); n != 0 {
				t.Errorf("%d sessions", n)
			}
		})
	}

	t.Run("code of school B in a flow of school A", func(t *testing.T) {
		t.Parallel()
		a, bTid := e.newSchool(store.StateActive), e.newSchool(store.StateActive)
		br := e.browser()
		br.signInAs(a, e.user(a, platformsim.RoleTeacher).SourcedID)
		br.signInAs(bTid, e.user(bTid, platformsim.RoleTeacher).SourcedID)
		cbB, _ := url.Parse(br.authorize(e.app, launchQuery(bTid)))
		cbA, _ := url.Parse(br.authorize(e.app, launchQuery(a)))
		q := cbA.Query()
		q.Set("code", cbB.Query().Get("code"))
		cbA.RawQuery = q.Encode()
		end := br.get(cbA.String())
		if end.status != http.StatusForbidden {
			t.Errorf("end = %d:\n%s", end.status, end.body)
		}
		e.refusal(t, end, "code_rejected")
		if e.sessionsOf(a)+e.sessionsOf(bTid) != 0 {
			t.Error("a session was created")
		}
	})

	t.Run("callback names another school in its URL", func(t *testing.T) {
		t.Parallel()
		// The school comes from the flow, never from the callback: a tenant_id added to the
		// callback is ignored, and the session is the flow's school's.
		a, other := e.newSchool(store.StateActive), e.newSchool(store.StateActive)
		br := e.browser()
		u := e.user(a, platformsim.RoleTeacher)
		br.signInAs(a, u.SourcedID)
		cb, _ := url.Parse(br.authorize(e.app, launchQuery(a)))
		q := cb.Query()
		q.Set("tenant_id", other)
		cb.RawQuery = q.Encode()
		if end := br.get(cb.String()); end.status != http.StatusSeeOther {
			t.Fatalf("callback = %d", end.status)
		}
		if m := decodeMe(t, br.me()); m.TenantID != a || m.Sub != u.SourcedID {
			t.Errorf("signed in as %s/%s, want %s/%s", m.TenantID, m.Sub, a, u.SourcedID)
		}
	})

	t.Run("state replay", func(t *testing.T) {
		t.Parallel()
		tid := e.newSchool(store.StateActive)
		br := e.browser()
		br.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
		cb := br.authorize(e.app, launchQuery(tid))
		u, _ := url.Parse(cb)
		tag := sso.FlowCookieTag(u.Query().Get("state"))
		flowCookie := br.cookie("__Host-untis-flow-" + tag)
		if flowCookie == "" {
			t.Fatalf("no flow cookie; browser has %v", br.cookieNames())
		}
		if first := br.get(cb); first.status != http.StatusSeeOther {
			t.Fatalf("first callback = %d", first.status)
		}
		before := e.sessionsOf(tid)
		// The same callback again, even with the flow cookie put back (an attacker who saw both).
		replay := e.browser()
		appURL, _ := url.Parse(e.app.srv.URL)
		replay.jar.SetCookies(asHTTPS(appURL), []*http.Cookie{{Name: "__Host-untis-flow-" + tag, Value: flowCookie, Path: "/"}})
		end := replay.get(cb)
		if end.status != http.StatusBadRequest || !strings.Contains(end.body, "already used") {
			t.Errorf("replay = %d:\n%s", end.status, end.body)
		}
		e.refusal(t, end, "unknown_flow")
		if after := e.sessionsOf(tid); after != before {
			t.Errorf("sessions %d -> %d after a replay", before, after)
		}
	})

	t.Run("missing flow cookie", func(t *testing.T) {
		t.Parallel()
		tid := e.newSchool(store.StateActive)
		br := e.browser()
		br.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
		cb := br.authorize(e.app, launchQuery(tid, "lesson_id", "77", "return_to", "/x"))
		end := e.browser().get(cb) // another browser: no flow cookie
		if end.status != http.StatusBadRequest || !strings.Contains(end.body, "Sign-in needs cookies") ||
			!strings.Contains(end.body, `href="/launch?lesson_id=77&amp;return_to=%2Fx&amp;tenant_id=`+tid+`"`) {
			t.Errorf("end = %d:\n%s", end.status, end.body)
		}
		e.refusal(t, end, "no_flow_cookie")
		// The flow is gone: the original browser cannot complete it either.
		if again := br.get(cb); again.status != http.StatusBadRequest {
			t.Errorf("the original browser completed an abandoned flow: %d", again.status)
		}
		if e.sessionsOf(tid) != 0 {
			t.Error("a session was created")
		}
	})

	t.Run("foreign flow cookie", func(t *testing.T) {
		t.Parallel()
		tid := e.newSchool(store.StateActive)
		victim, attacker := e.browser(), e.browser()
		victim.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
		attacker.signInAs(tid, e.user(tid, platformsim.RoleStudent).SourcedID)
		cbVictim := victim.authorize(e.app, launchQuery(tid))
		cbAttacker, _ := url.Parse(attacker.authorize(e.app, launchQuery(tid)))
		attackerFlow := attacker.cookie("__Host-untis-flow-" + sso.FlowCookieTag(cbAttacker.Query().Get("state")))
		// The attacker's flow id under the name the victim's callback looks for.
		u, _ := url.Parse(cbVictim)
		appURL, _ := url.Parse(e.app.srv.URL)
		attacker.jar.SetCookies(asHTTPS(appURL), []*http.Cookie{{
			Name: "__Host-untis-flow-" + sso.FlowCookieTag(u.Query().Get("state")), Value: attackerFlow, Path: "/"}})
		end := attacker.get(cbVictim)
		if end.status != http.StatusBadRequest {
			t.Errorf("end = %d:\n%s", end.status, end.body)
		}
		e.refusal(t, end, "state_mismatch")
		if e.sessionsOf(tid) != 0 {
			t.Error("a session was created")
		}
	})

	t.Run("unknown and deactivated schools", func(t *testing.T) {
		t.Parallel()
		off := e.newSchool(store.StateDeactivated)
		for _, tc := range []struct {
			query  url.Values
			status int
			words  string
		}{
			{launchQuery("999999"), http.StatusNotFound, "has not activated this app yet"},
			{launchQuery(off), http.StatusForbidden, "switched off for your school"},
			{url.Values{"school": {"x"}}, http.StatusBadRequest, "does not say which school"},
			{url.Values{"tenant_id": {"../1"}}, http.StatusBadRequest, "does not say which school"},
			{url.Values{"tenant_id": {"1"}, "tenantId": {"2"}}, http.StatusBadRequest, "does not say which school"},
		} {
			end := e.browser().get(e.app.srv.URL + "/launch?" + tc.query.Encode())
			if end.status != tc.status || !strings.Contains(end.body, tc.words) || strings.Contains(end.body, "goroutine") {
				t.Errorf("%v: %d:\n%s", tc.query, end.status, end.body)
			}
		}
	})
}

// TestSignInFlowExpiry: a flow older than 10 minutes is refused, and consumed.
func TestSignInFlowExpiry(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	br := e.browser()
	br.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	cb := br.authorize(e.app, launchQuery(tid))
	e.sim.Advance(sso.DefaultFlowTTL + time.Second) // the server's clock is the simulator's here
	end := br.get(cb)
	if end.status != http.StatusBadRequest || !strings.Contains(end.body, "more than 10 minutes ago") {
		t.Errorf("end = %d:\n%s", end.status, end.body)
	}
	e.refusal(t, end, "flow_expired")
	if e.countRows("auth_flows") != 0 || e.sessionsOf(tid) != 0 {
		t.Error("the expired flow was kept, or a session created")
	}
}

// TestSignInIssParameter: with RFC 9207's iss in the callback, it must name the school's issuer.
func TestSignInIssParameter(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{sim: platformsim.Config{IncludeIssParam: true}})
	tid := e.newSchool(store.StateActive)
	other := e.newSchool(store.StateActive)
	br := e.browser()
	br.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	if end := br.launch(launchQuery(tid)); end.status != http.StatusOK {
		t.Fatalf("sign-in with a correct iss = %d:\n%s", end.status, end.body)
	}
	cb, _ := url.Parse(br.authorize(e.app, launchQuery(tid)))
	q := cb.Query()
	q.Set("iss", e.sim.Issuer(other))
	cb.RawQuery = q.Encode()
	end := br.get(cb.String())
	if end.status != http.StatusForbidden {
		t.Errorf("mixed-up iss = %d", end.status)
	}
	e.refusal(t, end, "iss_param_mismatch")
}

// TestSignInLogsNoSecrets runs whole sign-ins, good and refused, with a capturing logger and
// checks that no code, state, nonce, token, secret or cookie value reaches the log.
func TestSignInLogsNoSecrets(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	_, clientSecret, password, _ := e.sim.Credentials(tid)
	secrets := []string{clientSecret, password}
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	collect := func(callback string) {
		u, _ := url.Parse(callback)
		for _, k := range []string{"code", "state"} {
			if v := u.Query().Get(k); v != "" {
				secrets = append(secrets, v)
			}
		}
		for _, name := range b.cookieNames() {
			// Not the simulator's sim_user_ (a user id), nor a used flow's constant mark.
			if v := b.cookie(name); strings.HasPrefix(name, "__Host-") && v != "used" {
				secrets = append(secrets, v)
			}
		}
	}
	for _, fault := range []platformsim.IDTokenFault{"", platformsim.WrongNonce, platformsim.Expired, platformsim.ForeignKey, platformsim.OneRosterMismatch} {
		if fault != "" {
			if err := e.sim.InjectIDTokenFault(tid, fault); err != nil {
				t.Fatal(err)
			}
		}
		start := b.get(e.app.srv.URL + "/launch?" + launchQuery(tid).Encode())
		au, _ := url.Parse(start.location)
		secrets = append(secrets, au.Query().Get("nonce"), au.Query().Get("state"))
		back := b.get(start.location)
		collect(back.location)
		b.get(back.location)
		collect(back.location)
		// Replayed and cookie-less callbacks log too.
		e.browser().get(back.location)
	}
	b.me()
	b.do(http.MethodPost, e.app.srv.URL+"/logout", nil)
	e.logs.AssertNoSecrets(t, secrets...)
	if strings.Contains(e.logs.String(), "eyJ") {
		t.Error("a JWT (id_token) reached the log")
	}
	if len(e.logs.Find(t, "signed in")) == 0 || len(e.logs.Find(t, "sign-in refused")) < 4 {
		t.Error("the flows did not log what they should; the test proves nothing")
	}
}

// TestFailedRelaunchEndsPreviousSession: when another WebUntis user takes over the browser and
// their sign-in fails, the previous user is not left signed in behind the error page.
func TestFailedRelaunchEndsPreviousSession(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.newSchool(store.StateActive)
	b := e.browser()
	b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	for _, fail := range []func(){
		func() { _ = e.sim.InjectAuthorizeError(tid, "access_denied") },
		func() { _ = e.sim.InjectIDTokenFault(tid, platformsim.WrongNonce) },
	} {
		if end := b.launch(launchQuery(tid)); end.status != http.StatusOK {
			t.Fatalf("sign-in = %d", end.status)
		}
		b.signInAs(tid, e.user(tid, platformsim.RoleStudent).SourcedID)
		fail()
		if end := b.launch(launchQuery(tid)); end.status < 400 {
			t.Fatalf("failing sign-in = %d", end.status)
		}
		if me := b.me(); me.status != http.StatusUnauthorized {
			t.Errorf("after a failed sign-in the previous user is still signed in: %d %s", me.status, me.body)
		}
		if n := e.sessionsOf(tid); n != 0 {
			t.Errorf("%d sessions left", n)
		}
		b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	}
}
