package httpserver_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// Helpers shared by the onboarding tests (webhooks, /setup, /activate, /admin).

// obClient is a plain HTTP client without cookies that does not follow redirects.
var obClient = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// obSend sends one request with obClient and reads the answer.
func obSend(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := obClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(body), header: resp.Header, location: resp.Header.Get("Location"), url: req.URL.String()}
}

// formPost posts form from this browser (with its cookies), without following a redirect.
func (b *browser) formPost(u string, form url.Values, header http.Header) answer {
	b.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	for k, vs := range header {
		h[k] = vs
	}
	return b.send(http.MethodPost, u, strings.NewReader(form.Encode()), h)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// obCSRF returns the CSRF token of the (first) form on a page.
func obCSRF(t testing.TB, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		t.Fatalf("no csrf field in the page:\n%s", page)
	}
	return m[1]
}

// obState is the school's state in the store ("" when unknown).
func (e *signinEnv) obState(tid string) string {
	e.t.Helper()
	tn, err := e.store.Tenant(e.ctx(), tid)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return tn.State
}

// obCount runs a count(*) query.
func (e *signinEnv) obCount(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.store.Pool().QueryRow(e.ctx(), query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// obVersions counts a school's stored credentials versions.
func (e *signinEnv) obVersions(tid string) int {
	return e.obCount(`SELECT count(*) FROM tenant_credentials WHERE tenant_id = $1`, tid)
}

// obReceipts counts a school's webhook receipts.
func (e *signinEnv) obReceipts(tid string) int {
	return e.obCount(`SELECT count(*) FROM webhook_receipts WHERE tenant_id = $1`, tid)
}

// obAudit counts a school's audit events.
func (e *signinEnv) obAudit(tid string) int {
	return e.obCount(`SELECT count(*) FROM audit_events WHERE tenant_id = $1`, tid)
}

// obAddSchool adds a school to the simulated platform only (the server knows nothing yet).
func (e *signinEnv) obAddSchool(id string) string {
	e.t.Helper()
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: id, Name: "School " + id}); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// obActivate adds a school to the platform and activates it by the platform's CREATED webhook.
func (e *signinEnv) obActivate(id string) *platformsim.WebhookResult {
	e.t.Helper()
	e.obAddSchool(id)
	res, err := e.sim.Activate(e.ctx(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.Status != http.StatusOK {
		e.t.Fatalf("CREATED for %s = %d %s", id, res.Status, res.ResponseBody)
	}
	return res
}

// obSignIn signs a user of the school with the given role in with a new browser and returns it.
func (e *signinEnv) obSignIn(tid, role string) (*browser, answer) {
	e.t.Helper()
	b := e.browser()
	b.signInAs(tid, e.user(tid, role).SourcedID)
	return b, b.launch(launchQuery(tid))
}

// credsBody is a credentials webhook body as the platform sends it.
func credsBody(tid, event, clientID, secret, password string) []byte {
	b, _ := json.Marshal(map[string]string{
		"tenantId": tid, "clientId": clientID, "secret": secret, "password": password,
		"host": "school.example", "country": "AT", "region": "AT-9", "language": "de", "eventType": event,
		"activatorEmail": "admin@school.example", "activatorUsername": "Admin", "schoolEmail": "office@school.example",
		"schoolPhoneNumber": "+43 1 234",
	})
	return b
}

// deactivationBody is a deactivation webhook body.
func deactivationBody(tid, event string) []byte {
	b, _ := json.Marshal(map[string]string{"tenantId": tid, "eventType": event, "reasonType": "NO_REASON", "reasonText": "test"})
	return b
}

// webhookRequest builds a POST of body to route on base with exactly the given header.
func (e *signinEnv) webhookRequest(base, route string, body io.Reader, header http.Header) *http.Request {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+route, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	return req
}

// signedHeader is the header of a signed JSON webhook.
func (e *signinEnv) signedHeader(body []byte) http.Header {
	auth, alg := e.sim.SignWebhook(body)
	return http.Header{"Authorization": {auth}, "Algorithm": {alg}, "Content-Type": {"application/json"}}
}

// postWebhook posts a signed body to route on base.
func (e *signinEnv) postWebhook(base, route string, body []byte) answer {
	e.t.Helper()
	return obSend(e.t, e.webhookRequest(base, route, bytes.NewReader(body), e.signedHeader(body)))
}

// webhookStatus is the "status" word of a webhook answer.
func webhookStatus(t testing.TB, body string) string {
	t.Helper()
	var a struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("webhook answer %q: %v", body, err)
	}
	return a.Status
}

func TestWebhookLifecycle(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	ctx := e.ctx()
	a := "6101"
	created := e.obActivate(a)
	if webhookStatus(t, created.ResponseBody) != "processed" || e.obState(a) != store.StateActive {
		t.Fatalf("CREATED: %s, state %q", created.ResponseBody, e.obState(a))
	}
	createdBody := append([]byte(nil), created.Body...)
	createdAuth, createdAlg := e.sim.SignWebhook(createdBody)

	// A user can sign in with the credentials the webhook brought.
	teacherA, home := e.obSignIn(a, platformsim.RoleTeacher)
	if home.status != http.StatusOK || !strings.Contains(home.body, "Hello,") {
		t.Fatalf("sign-in after CREATED: %d\n%s", home.status, home.body)
	}

	// The platform client uses the stored password, and caches its token.
	org, _ := e.sim.School(a)
	tokens := func() int { return e.sim.Stats().TokenRequestCount(a, platformsim.GrantClientCredentials) }
	if _, err := e.app.platform.For(a).School(ctx, org.SourcedID); err != nil {
		t.Fatalf("platform call after CREATED: %v", err)
	}
	before := tokens()
	if _, err := e.app.platform.For(a).School(ctx, org.SourcedID); err != nil || tokens() != before {
		t.Fatalf("second platform call: %v, token requests %d -> %d (want the cached token)", err, before, tokens())
	}

	t.Run("RESET", func(t *testing.T) {
		res, err := e.sim.Reset(ctx, a)
		if err != nil || res.Status != http.StatusOK || webhookStatus(t, res.ResponseBody) != "processed" {
			t.Fatalf("RESET: %v %+v", err, res)
		}
		_, sec, pw, _ := e.sim.Credentials(a)
		got, err := e.store.ActiveCredentials(ctx, a)
		if err != nil || got.Secret != sec || got.Password != pw || got.Version != 2 || got.Source != store.SourceWebhook {
			t.Errorf("after RESET the store has %v, %v", got, err)
		}
		// The old token was dropped: the next call fetches one with the new password, and works.
		n := tokens()
		if _, err := e.app.platform.For(a).School(ctx, org.SourcedID); err != nil {
			t.Errorf("platform call after RESET: %v", err)
		}
		if tokens() != n+1 {
			t.Errorf("token requests after RESET: %d -> %d, want a new token", n, tokens())
		}
		// The new secret works for sign-in.
		if _, end := e.obSignIn(a, platformsim.RoleStudent); end.status != http.StatusOK {
			t.Errorf("sign-in after RESET: %d\n%s", end.status, end.body)
		}
	})

	b := "6102"
	e.obActivate(b)
	teacherB, end := e.obSignIn(b, platformsim.RoleTeacher)
	if end.status != http.StatusOK {
		t.Fatalf("sign-in at %s: %d", b, end.status)
	}

	t.Run("DEACTIVATION", func(t *testing.T) {
		if e.sessionsOf(a) == 0 {
			t.Fatal("no session to end")
		}
		res, err := e.sim.Deactivate(ctx, a, false)
		if err != nil || res.Status != http.StatusOK || webhookStatus(t, res.ResponseBody) != "processed" {
			t.Fatalf("DEACTIVATION: %v %+v", err, res)
		}
		if s := e.obState(a); s != store.StateDeactivated {
			t.Errorf("state %q", s)
		}
		if me := teacherA.me(); me.status != http.StatusUnauthorized {
			t.Errorf("deactivated school's session: /api/me = %d", me.status)
		}
		if n := e.sessionsOf(a); n != 0 || e.obVersions(a) != 0 {
			t.Errorf("after DEACTIVATION: %d sessions, %d credentials", n, e.obVersions(a))
		}
		if me := teacherB.me(); me.status != http.StatusOK {
			t.Errorf("the other school's session ended: %d", me.status)
		}
	})

	t.Run("replay", func(t *testing.T) {
		receipts, audit := e.obReceipts(a), e.obAudit(a)
		res, err := e.sim.ReplayLastWebhook(ctx, a)
		if err != nil || res.Status != http.StatusOK || webhookStatus(t, res.ResponseBody) != "duplicate" {
			t.Fatalf("replay: %v %+v", err, res)
		}
		// An old CREATED body, captured with its signature, does not bring the school back.
		old := obSend(t, e.webhookRequest(e.app.srv.URL, "/webhooks/credentials", bytes.NewReader(createdBody),
			http.Header{"Authorization": {createdAuth}, "Algorithm": {createdAlg}, "Content-Type": {"application/json"}}))
		if old.status != http.StatusOK || webhookStatus(t, old.body) != "duplicate" {
			t.Errorf("old CREATED replayed: %d %s", old.status, old.body)
		}
		if s := e.obState(a); s != store.StateDeactivated || e.obVersions(a) != 0 {
			t.Errorf("after replays: state %q, %d credentials", s, e.obVersions(a))
		}
		if e.obReceipts(a) != receipts || e.obAudit(a) != audit {
			t.Errorf("replays changed the ledger (%d -> %d) or the audit trail (%d -> %d)", receipts, e.obReceipts(a), audit, e.obAudit(a))
		}
		// A RESET (a new body) for a deactivated school is received, but does not bring it back.
		clientID, _, _, _ := e.sim.Credentials(a)
		reset := e.postWebhook(e.app.srv.URL, "/webhooks/credentials", credsBody(a, "RESET", clientID, "reset-secret-6101", "reset-password-6101"))
		if reset.status != http.StatusOK || webhookStatus(t, reset.body) != "ignored" {
			t.Errorf("RESET for a deactivated school: %d %s", reset.status, reset.body)
		}
		if s := e.obState(a); s != store.StateDeactivated || e.obVersions(a) != 0 {
			t.Errorf("after a RESET: state %q, %d credentials", s, e.obVersions(a))
		}
	})

	t.Run("REACTIVATED", func(t *testing.T) {
		res, err := e.sim.Reactivate(ctx, a)
		if err != nil || res.Status != http.StatusOK || webhookStatus(t, res.ResponseBody) != "processed" {
			t.Fatalf("REACTIVATED: %v %+v", err, res)
		}
		if s := e.obState(a); s != store.StateActive {
			t.Errorf("state %q", s)
		}
		if _, end := e.obSignIn(a, platformsim.RoleTeacher); end.status != http.StatusOK {
			t.Errorf("sign-in after REACTIVATED: %d", end.status)
		}
		// Its own replay is a duplicate: the school stays as it is.
		versions := e.obVersions(a)
		if res, err := e.sim.ReplayLastWebhook(ctx, a); err != nil || webhookStatus(t, res.ResponseBody) != "duplicate" ||
			e.obState(a) != store.StateActive || e.obVersions(a) != versions {
			t.Errorf("replayed REACTIVATED: %v %+v, state %q, %d -> %d credentials", err, res, e.obState(a), versions, e.obVersions(a))
		}
	})

	t.Run("DELETION", func(t *testing.T) {
		res, err := e.sim.DeactivateWith(ctx, a, platformsim.DeactivationOptions{Deletion: true})
		if err != nil || res.Status != http.StatusOK || webhookStatus(t, res.ResponseBody) != "processed" {
			t.Fatalf("DELETION: %v %+v", err, res)
		}
		if s := e.obState(a); s != store.StateDeleted {
			t.Errorf("state %q", s)
		}
		if n := e.obCount(`SELECT count(*) FROM users WHERE tenant_id = $1`, a); n != 0 || e.sessionsOf(a) != 0 || e.obVersions(a) != 0 {
			t.Errorf("after DELETION: %d users, %d sessions, %d credentials", n, e.sessionsOf(a), e.obVersions(a))
		}
	})

	t.Run("legacy type field", func(t *testing.T) {
		res, err := e.sim.DeactivateWith(ctx, b, platformsim.DeactivationOptions{LegacyTypeField: true})
		if err != nil || res.Status != http.StatusOK || webhookStatus(t, res.ResponseBody) != "processed" {
			t.Fatalf("DEACTIVATION with type: %v %+v", err, res)
		}
		if !strings.Contains(string(res.Body), `"type":"DEACTIVATION"`) || strings.Contains(string(res.Body), "eventType") {
			t.Fatalf("the simulator sent %s", res.Body)
		}
		if s := e.obState(b); s != store.StateDeactivated {
			t.Errorf("state %q", s)
		}
		if me := teacherB.me(); me.status != http.StatusUnauthorized {
			t.Errorf("session after deactivation: %d", me.status)
		}
	})

	t.Run("each route takes both kinds", func(t *testing.T) {
		c := e.obAddSchool("6103")
		clientID, sec, pw, _ := e.sim.Credentials(c)
		res := e.postWebhook(e.app.srv.URL, "/webhooks/deactivation", credsBody(c, "CREATED", clientID, sec, pw))
		if res.status != http.StatusOK || webhookStatus(t, res.body) != "processed" || e.obState(c) != store.StateActive {
			t.Fatalf("CREATED on the deactivation route: %d %s, state %q", res.status, res.body, e.obState(c))
		}
		res = e.postWebhook(e.app.srv.URL, "/webhooks/credentials", deactivationBody(c, "DEACTIVATION"))
		if res.status != http.StatusOK || webhookStatus(t, res.body) != "processed" || e.obState(c) != store.StateDeactivated {
			t.Fatalf("DEACTIVATION on the credentials route: %d %s, state %q", res.status, res.body, e.obState(c))
		}
		// A deactivation for a school we never knew is answered, and creates nothing.
		res = e.postWebhook(e.app.srv.URL, "/webhooks/deactivation", deactivationBody("6104", "DELETION"))
		if res.status != http.StatusOK || webhookStatus(t, res.body) != "ignored" || e.obState("6104") != "" {
			t.Fatalf("DELETION of an unknown school: %d %s, state %q", res.status, res.body, e.obState("6104"))
		}
	})
}

// otherKeySignature signs body with a key the server does not trust.
var (
	otherKeyOnce sync.Once
	otherKey     *rsa.PrivateKey
)

func otherKeySignature(t testing.TB, body []byte) string {
	otherKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		otherKey = k
	})
	sum := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(rand.Reader, otherKey, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// hiddenLength hides a reader's length from net/http, so the body is sent chunked.
type hiddenLength struct{ io.Reader }

func TestWebhookStatusCodes(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	base := e.app.srv.URL
	good := func(tid string) []byte { return credsBody(tid, "CREATED", "client", "s3cr3t-"+tid, "pa55-"+tid) }
	big := func(tid string) []byte {
		m := map[string]string{"tenantId": tid, "eventType": "CREATED", "clientId": "c", "secret": "s", "password": "p",
			"padding": strings.Repeat("x", 70<<10)}
		b, _ := json.Marshal(m)
		return b
	}
	// exactly is a valid CREATED body of n bytes.
	exactly := func(tid string, n int) []byte {
		b := good(tid)
		pad := n - len(b) - len(`,"padding":""`)
		out := append(b[:len(b)-1], []byte(`,"padding":"`+strings.Repeat("x", pad)+`"}`)...)
		if len(out) != n {
			t.Fatalf("padded body of %d bytes, want %d", len(out), n)
		}
		return out
	}
	type req struct {
		name       string
		tid        string // a fresh school per case
		body       func(tid string) []byte
		header     func(body []byte) http.Header
		chunked    bool
		wantStatus int
		wantWord   string // the answer's status word ("" for none: a plain-text answer)
		wantInMsg  string // a word the message must hold
	}
	signed := e.signedHeader
	with := func(k, v string) func([]byte) http.Header {
		return func(b []byte) http.Header {
			h := e.signedHeader(b)
			h.Set(k, v)
			return h
		}
	}
	without := func(k string) func([]byte) http.Header {
		return func(b []byte) http.Header {
			h := e.signedHeader(b)
			h.Del(k)
			return h
		}
	}
	oneByteChanged := func(b []byte) http.Header { return e.signedHeader(bytes.Replace(b, []byte("AT-9"), []byte("AT-8"), 1)) }
	cases := []req{
		{name: "no signature headers", tid: "6201", body: good, header: func([]byte) http.Header {
			return http.Header{"Content-Type": {"application/json"}}
		}, wantStatus: 401, wantWord: "unauthorized"},
		{name: "no Algorithm", tid: "6202", body: good, header: without("Algorithm"), wantStatus: 401, wantWord: "unauthorized"},
		{name: "no Authorization", tid: "6203", body: good, header: without("Authorization"), wantStatus: 401, wantWord: "unauthorized"},
		{name: "wrong Algorithm", tid: "6204", body: good, header: with("Algorithm", "SHA1withRSA"), wantStatus: 401, wantWord: "unauthorized"},
		{name: "Authorization not base64", tid: "6205", body: good, header: with("Authorization", "not*base64!"), wantStatus: 401, wantWord: "unauthorized"},
		{name: "Bearer prefix", tid: "6206", body: good, header: func(b []byte) http.Header {
			h := e.signedHeader(b)
			h.Set("Authorization", "Bearer "+h.Get("Authorization"))
			return h
		}, wantStatus: 401, wantWord: "unauthorized"},
		{name: "another key", tid: "6207", body: good, header: func(b []byte) http.Header {
			h := e.signedHeader(b)
			h.Set("Authorization", otherKeySignature(t, b))
			return h
		}, wantStatus: 401, wantWord: "unauthorized"},
		{name: "body changed by one byte", tid: "6208", body: good, header: oneByteChanged, wantStatus: 401, wantWord: "unauthorized"},
		{name: "over 64 KiB with Content-Length", tid: "6209", body: big, header: signed, wantStatus: 413},
		{name: "over 64 KiB chunked", tid: "6210", body: big, header: signed, chunked: true, wantStatus: 413, wantWord: "too_large"},
		{name: "text/plain", tid: "6211", body: good, header: with("Content-Type", "text/plain"), wantStatus: 415, wantWord: "unsupported_media_type"},
		{name: "not JSON, no Content-Type", tid: "6212", body: func(tid string) []byte { return []byte("tenantId=" + tid + "&eventType=CREATED") }, header: without("Content-Type"),
			wantStatus: 415, wantWord: "unsupported_media_type"},
		{name: "not JSON as application/json", tid: "6213", body: func(tid string) []byte { return []byte("tenantId=" + tid + "&eventType=CREATED") }, header: signed,
			wantStatus: 400, wantWord: "bad_request"},
		{name: "truncated JSON", tid: "6214", body: func(tid string) []byte { return good(tid)[:40] }, header: signed, wantStatus: 400, wantWord: "bad_request"},
		{name: "missing tenantId", tid: "6215", body: func(string) []byte {
			return []byte(`{"eventType":"CREATED","clientId":"c","secret":"s","password":"p"}`)
		},
			header: signed, wantStatus: 400, wantWord: "bad_request", wantInMsg: "tenantId"},
		{name: "missing clientId", tid: "6216", body: func(tid string) []byte {
			return []byte(`{"tenantId":"` + tid + `","eventType":"CREATED","secret":"s","password":"p"}`)
		},
			header: signed, wantStatus: 400, wantWord: "bad_request", wantInMsg: "clientId"},
		{name: "unknown eventType", tid: "6217", body: func(tid string) []byte {
			return []byte(`{"tenantId":"` + tid + `","eventType":"UPGRADED","clientId":"c","secret":"s","password":"p"}`)
		},
			header: signed, wantStatus: 400, wantWord: "bad_request", wantInMsg: "eventType"},
		{name: "numeric tenantId", tid: "6218", body: func(string) []byte { return []byte(`{"tenantId":6218,"eventType":"DEACTIVATION"}`) },
			header: signed, wantStatus: 400, wantWord: "bad_request", wantInMsg: "tenantId"},
		{name: "unknown fields are ignored", tid: "6219", body: func(tid string) []byte {
			return []byte(`{"tenantId":"` + tid + `","eventType":"CREATED","clientId":"c","secret":"s",` +
				`"password":"p","futureField":{"nested":[1,2]},"schoolName":"HTL"}`)
		}, header: signed, wantStatus: 200, wantWord: "processed"},
		{name: "exactly 64 KiB", tid: "6221", body: func(tid string) []byte { return exactly(tid, 64<<10) }, header: signed,
			wantStatus: 200, wantWord: "processed"},
		{name: "64 KiB and one byte", tid: "6222", body: func(tid string) []byte { return exactly(tid, 64<<10+1) }, header: signed,
			chunked: true, wantStatus: 413, wantWord: "too_large"},
		{name: "JSON with charset", tid: "6220", body: good, header: with("Content-Type", "application/json; charset=utf-8"),
			wantStatus: 200, wantWord: "processed"},
	}
	for _, tc := range cases {
		for _, route := range []string{"/webhooks/credentials", "/webhooks/deactivation"} {
			t.Run(tc.name+" "+route, func(t *testing.T) {
				t.Parallel()
				// The same case on each route, for a school of its own.
				tid := tc.tid
				if route == "/webhooks/deactivation" {
					tid += "d"
				}
				body := tc.body(tid)
				var r io.Reader = bytes.NewReader(body)
				if tc.chunked {
					r = hiddenLength{r}
				}
				got := obSend(t, e.webhookRequest(base, route, r, tc.header(body)))
				if got.status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", got.status, tc.wantStatus, got.body)
				}
				if tc.wantWord != "" {
					if w := webhookStatus(t, got.body); w != tc.wantWord {
						t.Errorf("answer %s, want status %q", got.body, tc.wantWord)
					}
				}
				if tc.wantStatus == http.StatusUnauthorized {
					// No detail at all: the sender learns nothing but 401.
					var m map[string]any
					_ = json.Unmarshal([]byte(got.body), &m)
					if len(m) != 1 {
						t.Errorf("401 answer has detail: %s", got.body)
					}
					for _, w := range []string{"Algorithm", "base64", "key", "signature", "header", "missing", "verif"} {
						if strings.Contains(strings.ToLower(got.body), strings.ToLower(w)) {
							t.Errorf("401 answer says %q: %s", w, got.body)
						}
					}
				}
				if tc.wantInMsg != "" && !strings.Contains(got.body, tc.wantInMsg) {
					t.Errorf("answer %s does not name %s", got.body, tc.wantInMsg)
				}
				if tc.wantStatus != http.StatusOK {
					if e.obReceipts(tid) != 0 || e.obState(tid) != "" || e.obVersions(tid) != 0 {
						t.Errorf("a refused webhook left something in the store")
					}
				} else if e.obState(tid) != store.StateActive || e.obVersions(tid) != 1 {
					t.Errorf("state %q, %d credentials", e.obState(tid), e.obVersions(tid))
				}
			})
		}
	}
	t.Run("other methods", func(t *testing.T) {
		t.Parallel()
		for _, route := range []string{"/webhooks/credentials", "/webhooks/deactivation"} {
			for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
				req, _ := http.NewRequest(m, base+route, nil)
				if got := obSend(t, req); got.status != http.StatusMethodNotAllowed {
					t.Errorf("%s %s = %d, want 405", m, route, got.status)
				}
			}
		}
	})
	t.Run("metrics", func(t *testing.T) {
		t.Parallel()
		tid := "6290"
		if got := e.postWebhook(base, "/webhooks/credentials", good(tid)); got.status != http.StatusOK {
			t.Fatalf("webhook = %d %s", got.status, got.body)
		}
		req, _ := http.NewRequest(http.MethodPost, base+"/webhooks/credentials", strings.NewReader("{}"))
		obSend(t, req) // unsigned: bad_signature
		req, _ = http.NewRequest(http.MethodGet, base+"/metrics", nil)
		m := obSend(t, req)
		for _, want := range []string{
			`webhooks_received_total{event="CREATED",outcome="processed"}`,
			`webhooks_received_total{event="unknown",outcome="bad_signature"}`,
		} {
			if !strings.Contains(m.body, want) {
				t.Errorf("/metrics has no %s", want)
			}
		}
	})
}

// TestWebhookStoreDown: with the database unreachable the webhook is answered 503 and nothing of
// it is stored, so the platform's next delivery of the same body is processed.
func TestWebhookStoreDown(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	down := e.newInstance()
	down.store.Close()
	tid := e.obAddSchool("6301")
	clientID, sec, pw, _ := e.sim.Credentials(tid)
	body := credsBody(tid, "CREATED", clientID, sec, pw)
	header := e.signedHeader(body)
	got := obSend(t, e.webhookRequest(down.srv.URL, "/webhooks/credentials", bytes.NewReader(body), header))
	if got.status != http.StatusServiceUnavailable || webhookStatus(t, got.body) != "unavailable" {
		t.Fatalf("with the store down: %d %s", got.status, got.body)
	}
	if e.obReceipts(tid) != 0 || e.obState(tid) != "" || e.obVersions(tid) != 0 || e.obAudit(tid) != 0 {
		t.Fatal("a webhook answered 503 left something in the store")
	}
	// The platform delivers it again, to a healthy replica.
	got = obSend(t, e.webhookRequest(e.app.srv.URL, "/webhooks/credentials", bytes.NewReader(body), header))
	if got.status != http.StatusOK || webhookStatus(t, got.body) != "processed" {
		t.Fatalf("redelivery: %d %s", got.status, got.body)
	}
	if e.obState(tid) != store.StateActive || e.obVersions(tid) != 1 {
		t.Errorf("after the redelivery: state %q, %d credentials", e.obState(tid), e.obVersions(tid))
	}
	// A deactivation meets the same fate while the store is down.
	dbody := deactivationBody(tid, "DEACTIVATION")
	got = obSend(t, e.webhookRequest(down.srv.URL, "/webhooks/deactivation", bytes.NewReader(dbody), e.signedHeader(dbody)))
	if got.status != http.StatusServiceUnavailable || e.obState(tid) != store.StateActive || e.obReceipts(tid) != 1 {
		t.Errorf("deactivation with the store down: %d %s, state %q", got.status, got.body, e.obState(tid))
	}
}

// TestWebhookConcurrentDuplicates: the platform may deliver the same body several times at once;
// exactly one delivery applies it.
func TestWebhookConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.obAddSchool("6401")
	clientID, sec, pw, _ := e.sim.Credentials(tid)
	body := credsBody(tid, "CREATED", clientID, sec, pw)
	header := e.signedHeader(body)
	const n = 8
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		words = map[string]int{}
		start = make(chan struct{})
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, e.app.srv.URL+"/webhooks/credentials", bytes.NewReader(body))
			req.Header = header.Clone()
			<-start
			resp, err := obClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			mu.Lock()
			defer mu.Unlock()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("delivery = %d %s", resp.StatusCode, b)
				return
			}
			var a struct{ Status string }
			_ = json.Unmarshal(b, &a)
			words[a.Status]++
		}()
	}
	close(start)
	wg.Wait()
	if words["processed"] != 1 || words["duplicate"] != n-1 {
		t.Errorf("answers %v, want 1 processed and %d duplicate", words, n-1)
	}
	if e.obVersions(tid) != 1 || e.obReceipts(tid) != 1 || e.obState(tid) != store.StateActive {
		t.Errorf("%d credentials versions, %d receipts, state %q", e.obVersions(tid), e.obReceipts(tid), e.obState(tid))
	}
	if n := e.obCount(`SELECT count(*) FROM audit_events WHERE tenant_id = $1 AND action = 'credentials.stored'`, tid); n != 1 {
		t.Errorf("%d credentials.stored audit events", n)
	}
}
