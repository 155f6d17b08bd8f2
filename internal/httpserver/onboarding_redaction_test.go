package httpserver_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
)

// TestOnboardingLogsNoSecrets runs every onboarding flow, the failing ones too, and then checks
// that no secret value of any of them reached the log: credentials (before and after a RESET),
// typed passwords, webhook signatures, cookies and CSRF tokens.
func TestOnboardingLogsNoSecrets(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{setupFields: parseSetupFields(t)})
	ctx := e.ctx()
	base := e.app.srv.URL
	var secrets []string
	keep := func(s ...string) { secrets = append(secrets, s...) }
	// keepCookies keeps the browser's cookies of the app: its session, form and console cookies,
	// whichever it has.
	keepCookies := func(b *browser) {
		for _, name := range []string{session.CookieName, session.FormCookieName, operator.CookieName} {
			if v := b.cookie(name); v != "" {
				keep(v)
			}
		}
	}
	must := func(what string, got answer, want int) {
		t.Helper()
		if got.status != want {
			t.Fatalf("%s = %d, want %d\n%s", what, got.status, want, got.body)
		}
	}

	// Webhook CREATED, then the setup by the school's admin (a wrong answer first).
	r := "6901"
	created := e.obActivate(r)
	_, sec0, pw0, _ := e.sim.Credentials(r)
	sig, _ := e.sim.SignWebhook(created.Body)
	keep(sec0, pw0, sig)
	admin, page := e.obSignIn(r, platformsim.RoleAdministrator)
	csrf := obCSRF(t, page.body)
	keep(csrf)
	keepCookies(admin)
	bad := validSetup(csrf)
	bad.Set("district", "nope")
	must("invalid setup", admin.formPost(base+"/setup", bad, nil), http.StatusBadRequest)
	must("setup with a foreign token", admin.formPost(base+"/setup", validSetup("forged-"+csrf[:10]), nil), http.StatusForbidden)
	must("setup", admin.formPost(base+"/setup", validSetup(csrf), nil), http.StatusSeeOther)

	// RESET: new credentials; a user signs in with them.
	res, err := e.sim.Reset(ctx, r)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("RESET: %v %+v", err, res)
	}
	clientID, sec1, pw1, _ := e.sim.Credentials(r)
	sig, _ = e.sim.SignWebhook(res.Body)
	keep(sec1, pw1, sig)
	teacher, home := e.obSignIn(r, platformsim.RoleTeacher)
	must("sign-in after RESET", home, http.StatusOK)
	keepCookies(teacher)
	keep(obCSRF(t, home.body))
	// A webhook with a bad signature, and one with a body that does not match it.
	forged := credsBody(r, "RESET", clientID, "forged-secret-value-6901", "forged-password-value-6901")
	h := e.signedHeader(forged)
	keep("forged-secret-value-6901", "forged-password-value-6901", h.Get("Authorization"))
	h.Set("Authorization", h.Get("Authorization")[:40]+"AAAA"+h.Get("Authorization")[44:])
	req := e.webhookRequest(base, "/webhooks/credentials", bytes.NewReader(forged), h)
	must("forged webhook", obSend(t, req), http.StatusUnauthorized)

	// Manual activation: refused (wrong password, swapped), then accepted.
	q := e.obAddSchool("6902")
	qClient, qSec, qPw, _ := e.sim.Credentials(q)
	keep(qSec, qPw, "Typed-Wrong-Password-6902")
	b := e.browser()
	token := activateForm(t, b)
	keep(token)
	keepCookies(b)
	must("activate, wrong password", b.formPost(base+"/activate", activateValues(token, q, qClient, qSec, "Typed-Wrong-Password-6902"), nil), http.StatusBadRequest)
	must("activate, swapped", b.formPost(base+"/activate", activateValues(token, q, qClient, qPw, qSec), nil), http.StatusBadRequest)
	must("activate, bad token", b.formPost(base+"/activate", activateValues(otherFirstChar(token), q, qClient, qSec, qPw), nil), http.StatusForbidden)
	must("activate", b.formPost(base+"/activate", activateValues(token, q, qClient, qSec, qPw), nil), http.StatusOK)

	// The console: a failed sign-in, a successful one, manual credentials (refused, then stored).
	const email, opPw, wrongOpPw = "ops@partner.example", "Operator-Password-6903", "Wrong-Operator-Password-6903"
	keep(opPw, wrongOpPw)
	e.addOperator(email, opPw)
	ob := e.browser()
	must("console sign-in, wrong password", consoleLogin(t, ob, email, wrongOpPw), http.StatusUnauthorized)
	keepCookies(ob)
	must("console sign-in", consoleLogin(t, ob, email, opPw), http.StatusSeeOther)
	keepCookies(ob)
	opCSRF := obCSRF(t, ob.get(base+"/admin").body)
	keep(opCSRF)
	credsURL := base + "/admin/tenants/" + r + "/credentials"
	must("manual credentials, wrong", ob.formPost(credsURL,
		url.Values{"csrf": {opCSRF}, "clientId": {clientID}, "secret": {sec1}, "password": {"Typed-Wrong-Password-6901"}}, nil), http.StatusBadRequest)
	keep("Typed-Wrong-Password-6901")
	must("manual credentials, bad token", ob.formPost(credsURL,
		url.Values{"csrf": {otherFirstChar(opCSRF)}, "clientId": {clientID}, "secret": {sec1}, "password": {pw1}}, nil), http.StatusForbidden)
	must("manual credentials", ob.formPost(credsURL,
		url.Values{"csrf": {opCSRF}, "clientId": {clientID}, "secret": {sec1}, "password": {pw1}}, nil), http.StatusSeeOther)

	// DEACTIVATION, and its replay.
	res, err = e.sim.Deactivate(ctx, r, false)
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("DEACTIVATION: %v %+v", err, res)
	}
	sig, _ = e.sim.SignWebhook(res.Body)
	keep(sig)
	if res, err := e.sim.ReplayLastWebhook(ctx, r); err != nil || res.Status != http.StatusOK {
		t.Fatalf("replay: %v %+v", err, res)
	}
	must("console sign-out", ob.formPost(base+"/admin/logout", url.Values{"csrf": {opCSRF}}, nil), http.StatusSeeOther)

	for i, s := range secrets {
		if len(s) < 8 {
			t.Fatalf("secret #%d is too short to search for (%d chars)", i+1, len(s))
		}
	}
	if len(e.logs.Records(t)) < 20 {
		t.Fatalf("only %d log records: is the log captured?", len(e.logs.Records(t)))
	}
	e.logs.AssertNoSecrets(t, secrets...)
}

// otherFirstChar is token with its first character changed: a forged token that is never the
// real one ("x"+token[1:] is the real token whenever it starts with x, one run in 64).
func otherFirstChar(token string) string {
	if strings.HasPrefix(token, "x") {
		return "y" + token[1:]
	}
	return "x" + token[1:]
}
