package platformsim_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
)

func (e *env) postJSON(path, body string) *http.Response {
	e.t.Helper()
	return e.do(http.MethodPost, e.url+path, "", strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
}

func TestControlAPI(t *testing.T) {
	t.Parallel()
	rc, partner := newReceiver(t)
	e := newEnv(t, platformsim.Config{PartnerURL: partner.URL})
	rc.pub = parseWebhookKey(t, e.sim.WebhookPublicKey())

	var tenants []platformsim.TenantInfo
	if err := json.NewDecoder(e.get(e.url + "/sim/api/tenants").Body).Decode(&tenants); err != nil || len(tenants) != 2 {
		t.Fatalf("tenants: %v %v", tenants, err)
	}
	if tenants[0].ID != "1001" || tenants[0].Password == "" || tenants[0].Issuer != e.sim.Issuer("1001") {
		t.Errorf("tenant = %+v", tenants[0])
	}

	// make run's call.
	resp := e.postJSON("/sim/api/tenants/1001/activate", "")
	var res platformsim.WebhookResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 || res.Status != 200 || res.EventType != "CREATED" {
		t.Fatalf("activate: %d %+v %v", resp.StatusCode, res, err)
	}
	if resp := e.postJSON("/sim/api/tenants/1001/deactivate", `{"legacyTypeField":true}`); resp.StatusCode != 200 {
		t.Errorf("deactivate: %d", resp.StatusCode)
	}
	if !strings.Contains(string(rc.last().body), `"type":"DEACTIVATION"`) {
		t.Errorf("legacy deactivation body %s", rc.last().body)
	}
	for path, want := range map[string]int{
		"/sim/api/tenants/1001/replay":  200,
		"/sim/api/tenants/1001/explode": 404,
		"/sim/api/tenants/9/activate":   404,
	} {
		if resp := e.postJSON(path, ""); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}

	// Add a tenant, sign a user in, inject a fault, read stats.
	if resp := e.postJSON("/sim/api/tenants", `{"tenantId":"2001","name":"Volksschule Süd","students":3}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("add tenant: %d", resp.StatusCode)
	}
	var users []platformsim.User
	_ = json.NewDecoder(e.get(e.url + "/sim/api/tenants/2001/users?role=student").Body).Decode(&users)
	if len(users) != 3 {
		t.Fatalf("students = %d", len(users))
	}
	if resp := e.postJSON("/sim/api/tenants/2001/signed-in-user", `{"sourcedId":"`+users[0].SourcedID+`"}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("signed-in-user: %d", resp.StatusCode)
	}
	if resp := e.postJSON("/sim/api/faults", `{"fault":"id_token","tenantId":"2001","kind":"expired"}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("fault: %d", resp.StatusCode)
	}
	_, tok := e.login("2001", users[0].SourcedID)
	if _, err := e.verifier("2001").Verify(e.ctx(), tok.Extra("id_token").(string)); err == nil {
		t.Error("expired fault via the control API had no effect")
	}
	for _, body := range []string{
		`{"fault":"api","tenantId":"2001","status":503,"n":2}`,
		`{"fault":"token","tenantId":"2001","status":500}`,
		`{"fault":"authorize","tenantId":"2001"}`,
		`{"fault":"wrong_nonce","tenantId":"2001"}`,
		`{"fault":"token_delay","delayMs":0}`,
		`{"fault":"revoke_tokens","tenantId":"2001"}`,
		`{"fault":"clear"}`,
	} {
		if resp := e.postJSON("/sim/api/faults", body); resp.StatusCode != http.StatusNoContent {
			t.Errorf("%s: %d", body, resp.StatusCode)
		}
	}
	if resp := e.postJSON("/sim/api/faults", `{"fault":"meteor"}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown fault: %d", resp.StatusCode)
	}
	var st platformsim.Stats
	_ = json.NewDecoder(e.get(e.url + "/sim/api/stats").Body).Decode(&st)
	if st.TokenRequestCount("2001", "authorization_code") != 1 || st.WebhooksSent != 3 {
		t.Errorf("stats = %+v", st)
	}
	if key := e.get(e.url + "/sim/api/webhook-public-key"); !strings.HasPrefix(readAll(key), e.sim.WebhookPublicKey()) {
		t.Error("webhook-public-key")
	}
	if resp := e.postJSON("/sim/api/clock", `{"advanceSeconds":200}`); resp.StatusCode != 200 {
		t.Errorf("clock: %d", resp.StatusCode)
	}
	if resp := e.oneRoster("/users", tok.AccessToken, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token after +200 s: %d", resp.StatusCode)
	}

	// Browsers on other origins cannot drive the control API.
	resp = e.do(http.MethodPost, e.url+"/sim/api/tenants/1002/activate", "", nil,
		http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin control call: %d", resp.StatusCode)
	}
}

func TestPages(t *testing.T) {
	t.Parallel()
	sim, srv := simtest.NewServer(t, platformsim.Config{PartnerURL: partnerURL})
	sim.SeedDemo()
	sim.SeedDemo() // idempotent
	e := &env{t: t, sim: sim, url: srv.URL, client: srv.Client()}
	e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if n := len(sim.Tenants()); n != 2 {
		t.Fatalf("demo tenants = %d", n)
	}

	home := e.get(srv.URL + "/")
	page := readAll(home)
	for _, want := range []string{"Gymnasium am See", "Mittelschule Nord", "Activate", "Main menu", "Lesson details", "Examinations", sim.WebhookPublicKey()[:44]} {
		if !strings.Contains(page, want) {
			t.Errorf("home page lacks %q", want)
		}
	}

	teacher := mustUser(t, sim, "1001", platformsim.RoleTeacher)
	lesson := sim.Classes("1001")[1]
	form := func(v url.Values) *http.Response {
		return e.do(http.MethodPost, srv.URL+"/sim/tenants/1001/launch", "", strings.NewReader(v.Encode()),
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	}
	for _, tc := range []struct {
		entry string
		want  []string
	}{
		{"main", []string{"tenant_id", "school"}},
		{"lesson", []string{"tenant_id", "school", "lesson_id", "period_id", "class_ids", "subject_ids", "date", "start", "end"}},
		{"exam", []string{"tenant_id", "school", "exam_id"}},
	} {
		resp := form(url.Values{"entry": {tc.entry}, "user": {teacher.SourcedID}, "lesson": {lesson.SourcedID}})
		loc := e.redirectTo(resp)
		if loc.Scheme+"://"+loc.Host+loc.Path != partnerURL+"/launch" {
			t.Errorf("%s: launch URL %s", tc.entry, loc)
		}
		for _, k := range tc.want {
			if loc.Query().Get(k) == "" {
				t.Errorf("%s: no %s in %s", tc.entry, k, loc)
			}
		}
		if len(loc.Query()) != len(tc.want) {
			t.Errorf("%s: parameters %v", tc.entry, loc.Query())
		}
		if tc.entry == "lesson" && loc.Query().Get("lesson_id") != lesson.SourcedID {
			t.Errorf("lesson_id = %s", loc.Query().Get("lesson_id"))
		}
		var cookie bool
		for _, c := range resp.Cookies() {
			cookie = cookie || (c.Name == "sim_user_1001" && c.Value == teacher.SourcedID)
		}
		if !cookie {
			t.Errorf("%s: launch did not sign the user in", tc.entry)
		}
	}
	// The iFrame variant frames the partner URL.
	loc := e.redirectTo(form(url.Values{"entry": {"main:iframe"}, "user": {teacher.SourcedID}}))
	embed := readAll(e.get(srv.URL + loc.String()))
	if !strings.Contains(embed, "<iframe") || !strings.Contains(embed, partnerURL+"/launch?") || !strings.Contains(embed, partnerURL+"/logout") {
		t.Errorf("embed page:\n%s", embed)
	}
	if resp := e.get(srv.URL + "/sim/embed?tenant_id=1001&src=" + url.QueryEscape("https://evil.example/")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("embedding a foreign URL: %d", resp.StatusCode)
	}

	// App-store buttons send the webhook (the partner is unreachable here,
	// so the card shows the failure) and come back to the card.
	resp := e.do(http.MethodPost, srv.URL+"/sim/tenants/1001/activate", "", nil, nil)
	if loc := e.redirectTo(resp); loc.Fragment != "t-1001" {
		t.Errorf("after activate: %s", loc)
	}
	if ti, _ := sim.Tenant("1001"); ti.Status != platformsim.StatusActive || ti.LastWebhookError == "" {
		t.Errorf("tenant = %+v", ti)
	}
	if !strings.Contains(readAll(e.get(srv.URL+"/")), "Delivery failed") {
		t.Error("the card does not show the failed delivery")
	}
	// Signing in and out through the page.
	resp = e.do(http.MethodPost, srv.URL+"/sim/tenants/1002/signin", "", strings.NewReader("user="+mustUser(t, sim, "1002", "parent").SourcedID),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Errorf("signin: %d %v", resp.StatusCode, resp.Cookies())
	}
	resp = e.do(http.MethodPost, srv.URL+"/sim/tenants/1002/signout", "", strings.NewReader("partner_status=answered+200"),
		http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
	if c := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(c) != 1 || c[0].MaxAge >= 0 {
		t.Errorf("signout: %d %v", resp.StatusCode, c)
	}
}

// TestConcurrentLogins runs many logins and API calls at once; with -race
// it proves the simulator's state is guarded.
func TestConcurrentLogins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{SigningKey: ecKey()})
	verifiers := map[string]*oidc.IDTokenVerifier{"1001": e.verifier("1001"), "1002": e.verifier("1002")}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Go(func() {
			tid := []string{"1001", "1002"}[i%2]
			users := e.sim.Users(tid)
			for j := range 5 {
				u := users[(i+j)%len(users)]
				// Cookie per request, as separate browsers would.
				verifier := oauth2.GenerateVerifier()
				authURL := e.oauthConfig(tid).AuthCodeURL("s", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n"))
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, authURL, nil)
				req.AddCookie(&http.Cookie{Name: platformsim.UserCookieName(tid), Value: u.SourcedID})
				resp, err := e.client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				loc, _ := url.Parse(resp.Header.Get("Location"))
				tok, err := e.oauthConfig(tid).Exchange(e.ctx(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					errs <- err
					return
				}
				idt, err := verifiers[tid].Verify(e.ctx(), tok.Extra("id_token").(string))
				if err != nil {
					errs <- err
					return
				}
				if idt.Subject != u.SourcedID {
					errs <- fmt.Errorf("sub %s, want %s", idt.Subject, u.SourcedID)
					return
				}
				if i%4 == 0 {
					_ = e.sim.InjectIDTokenFault(tid, platformsim.WrongNonce)
					_ = e.sim.FailNextAPICalls(tid, 0, 500)
					_ = e.sim.Stats()
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
