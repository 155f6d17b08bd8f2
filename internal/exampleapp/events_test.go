package exampleapp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/untis-partner/server/internal/events"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// waitFor polls cond until it holds (the server's worker delivers in the background).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func typesOf(evs []receivedEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

// The whole way: the platform activates, resets, deactivates, reactivates and deletes a school
// with its signed webhooks; the server writes each change's event and its worker POSTs it to the
// app as a Standard Webhooks message; the app verifies it with the Standard Webhooks library,
// keeps it in order, and on school.deleted deletes everything it kept of the school but that
// event. Another school's events are untouched, and each school's users see only their own.
func TestLifecycleEventsFromTheServerArriveVerifiedAndInOrder(t *testing.T) {
	t.Parallel()
	e := newServerEnv(t, nil)
	a := e.school(platformsim.TenantSpec{ID: "1001", Name: "Gymnasium am See", Teachers: 2})
	b := e.school(platformsim.TenantSpec{ID: "1002", Name: "Mittelschule Nord", Teachers: 2})
	deactivate := func(deletion bool) func(context.Context, string) (*platformsim.WebhookResult, error) {
		return func(ctx context.Context, id string) (*platformsim.WebhookResult, error) {
			return e.sim.Deactivate(ctx, id, deletion)
		}
	}
	e.webhook(e.sim.Reset, a)
	e.webhook(deactivate(false), a)
	e.webhook(e.sim.Reactivate, a)

	want := []string{"school.activated", "school.credentials_reset", "school.deactivated", "school.activated"}
	var got schoolLog
	waitFor(t, "four events of school "+a, func() bool { got, _ = e.app.events.school(a); return len(got.Events) == len(want) })
	if strings.Join(typesOf(got.Events), " ") != strings.Join(want, " ") {
		t.Errorf("events of %s: %v, want %v", a, typesOf(got.Events), want)
	}
	for i, ev := range got.Events {
		if i > 0 && ev.Sequence <= got.Events[i-1].Sequence {
			t.Errorf("sequence %d after %d", ev.Sequence, got.Events[i-1].Sequence)
		}
		if ev.Skipped != "" || !strings.HasPrefix(ev.MessageID, "msg_") || ev.TenantID != a || ev.Source != "webhook" {
			t.Errorf("event %+v", ev)
		}
	}
	if got.State != "active" || got.Events[2].State != "deactivated" || got.Events[2].PreviousState != "active" {
		t.Errorf("states: %+v", got)
	}
	waitFor(t, "the activation of school "+b, func() bool { s, _ := e.app.events.school(b); return len(s.Events) == 1 })

	teacherOf := func(id, school string) user {
		u, _ := e.sim.UserByRole(id, platformsim.RoleTeacher)
		return userOf(u, id, school)
	}
	_, txt := e.page("/events", teacherOf(a, "Gymnasium am See"))
	for _, w := range []string{"School 1001", "As of event", "the school is active", "school.credentials_reset", "active → deactivated", "new → active"} {
		if !strings.Contains(txt, w) {
			t.Errorf("events page of %s lacks %q:\n%s", a, w, txt)
		}
	}
	if strings.Contains(txt, "Mittelschule Nord") {
		t.Errorf("school %s's events page shows school %s:\n%s", a, b, txt)
	}

	// The platform deletes the school: the app keeps only the deletion event.
	e.webhook(deactivate(true), a)
	waitFor(t, "the deletion of school "+a, func() bool { got, _ = e.app.events.school(a); return got.State == "deleted" })
	if len(got.Events) != 1 || got.Events[0].Type != "school.deleted" || got.Events[0].ActionRequired != "delete_personal_data" {
		t.Errorf("after the deletion the app keeps %+v", got.Events)
	}
	if s, _ := e.app.events.school(b); len(s.Events) != 1 || s.State != "active" {
		t.Errorf("school %s after %s's deletion: %+v", b, a, s)
	}
	// The platform brings the school back: a new start, after the deletion.
	deletion := got.Events[0].Sequence
	e.webhook(e.sim.Reactivate, a)
	waitFor(t, "the reactivation of school "+a, func() bool { got, _ = e.app.events.school(a); return got.State == "active" })
	if strings.Join(typesOf(got.Events), " ") != "school.deleted school.activated" {
		t.Errorf("after the deletion and a reactivation: %v", typesOf(got.Events))
	}
	_, txt = e.page("/events", teacherOf(a, "Gymnasium am See"))
	if !strings.Contains(txt, fmt.Sprintf("The school was deleted (event %d): the app deleted what it kept of it from before", deletion)) ||
		strings.Contains(txt, "school.credentials_reset") || !strings.Contains(txt, "deleted → active") {
		t.Errorf("events page after the deletion:\n%s", txt)
	}
}

// signedEvent is an event as the server renders (events.Body) and signs (events.Sign) it.
type signedEvent struct {
	id, typ, tenant string
	seq             int64
	data            map[string]any
	ts              time.Time // webhook-timestamp (default now)
	secrets         string    // the server's EVENTS_SECRET (default eventsSecret)
}

func (s signedEvent) request(t *testing.T, url string) *http.Request {
	t.Helper()
	data := map[string]any{"tenantId": s.tenant, "sequence": s.seq, "state": "active", "previousState": "", "source": "webhook",
		"message": "The school activated the app.", "name": "Schule " + s.tenant}
	for k, v := range s.data {
		data[k] = v
	}
	raw, _ := json.Marshal(data)
	body, err := events.Body(store.OutboxEvent{ID: s.seq, MessageID: s.id, TenantID: s.tenant, Type: s.typ, Data: raw, CreatedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return s.sign(t, url, body)
}

func (s signedEvent) sign(t *testing.T, url string, body []byte) *http.Request {
	t.Helper()
	if s.secrets == "" {
		s.secrets = eventsSecret
	}
	secrets, err := events.ParseSecrets(s.secrets)
	if err != nil {
		t.Fatal(err)
	}
	ts := s.ts
	if ts.IsZero() {
		ts = time.Now()
	}
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(events.HeaderID, s.id)
	req.Header.Set(events.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(events.HeaderSignature, events.Sign(secrets, s.id, ts.Unix(), body))
	return req
}

func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// eventsApp is the app with the events secret, on its own server.
func eventsApp(t *testing.T, secret string) (*app, string, *gateway) {
	t.Helper()
	g := newGateway(t)
	a, err := build(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: g.jwks.URL, EventsSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.routes())
	t.Cleanup(srv.Close)
	return a, srv.URL, g
}

// The receiver takes what the server signs (internal/events, including during a secret rotation)
// and refuses the rest with 401 before reading the body: another secret, a changed byte, missing
// headers, a timestamp off by more than 5 minutes. A second delivery of an event (same
// webhook-id) and an event older than one applied are answered 2xx, so the server stops sending
// them, but change nothing.
func TestEventsReceiverTakesOnlyWhatVerifies(t *testing.T) {
	t.Parallel()
	a, base, _ := eventsApp(t, eventsSecret)
	url := base + eventsPath
	ev := signedEvent{id: "msg_2sOrGhSX0Kr9fVvtGrvPMBHtSaw", typ: "school.activated", tenant: "1001", seq: 5}
	if code, msg := send(t, ev.request(t, url)); code != http.StatusOK || msg != "stored" {
		t.Fatalf("a signed event: %d %q", code, msg)
	}

	const other = "whsec_" + "c2VjcmV0LW9mLXNvbWVvbmUtZWxzZS0wMTIzNDU2Nzg5"
	tampered := ev.request(t, url)
	body, _ := io.ReadAll(tampered.Body)
	tamperedBody := strings.Replace(string(body), `"sequence":5`, `"sequence":9`, 1)
	noHeaders := ev.request(t, url)
	noHeaders.Header.Del(events.HeaderSignature)
	badTS := ev.request(t, url)
	badTS.Header.Set(events.HeaderTimestamp, "yesterday")
	for _, tc := range []struct {
		name string
		req  *http.Request
		want string
	}{
		{"another secret", signedEvent{id: "msg_x1", typ: "school.activated", tenant: "1001", seq: 6, secrets: other}.request(t, url), "no signature verifies"},
		{"a changed byte", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(tamperedBody))
			r.Header = tampered.Header.Clone()
			return r
		}(), "no signature verifies"},
		{"no signature", noHeaders, "webhook-id, webhook-timestamp and webhook-signature are required"},
		{"a timestamp that is no number", badTS, "webhook-timestamp is not a number"},
		{"signed 10 minutes ago (a replay)", signedEvent{id: "msg_x2", typ: "school.activated", tenant: "1001", seq: 7, ts: time.Now().Add(-10 * time.Minute)}.request(t, url), "more than 5 minutes off"},
		{"signed 10 minutes ahead", signedEvent{id: "msg_x3", typ: "school.activated", tenant: "1001", seq: 8, ts: time.Now().Add(10 * time.Minute)}.request(t, url), "more than 5 minutes off"},
	} {
		if code, msg := send(t, tc.req); code != http.StatusUnauthorized || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q", tc.name, code, msg)
		}
	}

	// A second delivery of the first event, signed again as the server's retry would be.
	if code, msg := send(t, ev.request(t, url)); code != http.StatusOK || msg != "duplicate: received before" {
		t.Errorf("second delivery: %d %q", code, msg)
	}
	// An older event of the school (an operator's retry after later events): skipped.
	older := signedEvent{id: "msg_older", typ: "school.deactivated", tenant: "1001", seq: 3, data: map[string]any{"state": "deactivated"}}
	if code, msg := send(t, older.request(t, url)); code != http.StatusOK || msg != "skipped: older than sequence 5 of school 1001" {
		t.Errorf("older event: %d %q", code, msg)
	}
	s, _ := a.events.school("1001")
	if len(s.Events) != 2 || s.State != "active" || s.LastSequence != 5 || s.Duplicates != 1 || s.Skipped != 1 {
		t.Errorf("the app keeps %+v", s)
	}
	if sk := s.Events[1]; sk.Skipped == "" || sk.Name != "" || sk.Message != "" {
		t.Errorf("a skipped event keeps %+v", sk)
	}

	// During a rotation the server signs with the new and the old secret; the app still has the old.
	const newer = "whsec_" + "bmV3LXNlY3JldC1hZnRlci10aGUtcm90YXRpb24tMDEyMzQ1"
	rot := signedEvent{id: "msg_rot", typ: "school.credentials_reset", tenant: "1001", seq: 10, secrets: newer + " " + eventsSecret}
	if code, msg := send(t, rot.request(t, url)); code != http.StatusOK || msg != "stored" {
		t.Errorf("signed with two secrets: %d %q", code, msg)
	}
}

// Input that is not an event, even when signed, is refused with a clear 4xx and changes nothing;
// a request that came through the gateway with a user's identity is refused before anything.
func TestEventsReceiverRefusesBadInput(t *testing.T) {
	t.Parallel()
	a, base, g := eventsApp(t, eventsSecret)
	url := base + eventsPath
	signed := func(id, body string) *http.Request { return signedEvent{id: id}.sign(t, url, []byte(body)) }
	viaGateway := signedEvent{id: "msg_gw", typ: "school.activated", tenant: "1001", seq: 1}.request(t, url)
	for k, v := range headers(jurgen, sign(t, g.kid, g.key, claimsOf(jurgen, time.Now()), jose.ES256)) {
		viaGateway.Header[k] = v
	}
	huge := strings.Repeat("x", maxEventBody+1)
	for _, tc := range []struct {
		name string
		req  *http.Request
		code int
	}{
		{"through the gateway", viaGateway, http.StatusForbidden},
		{"not JSON", signed("msg_1", "not json"), http.StatusBadRequest},
		{"no tenant", signed("msg_2", `{"type":"school.activated","data":{"sequence":1}}`), http.StatusBadRequest},
		{"a tenant that is no tenant id", signed("msg_3", `{"type":"school.activated","data":{"tenantId":"../1002","sequence":1}}`), http.StatusBadRequest},
		{"a tenant that is a number", signed("msg_4", `{"type":"school.activated","data":{"tenantId":1001,"sequence":1}}`), http.StatusBadRequest},
		{"no sequence", signed("msg_5", `{"type":"school.activated","data":{"tenantId":"1001"}}`), http.StatusBadRequest},
		{"no type", signed("msg_6", `{"data":{"tenantId":"1001","sequence":1}}`), http.StatusBadRequest},
		{"invalid UTF-8 and NUL", signed("msg_7", "{\"type\":\"\xff\x00\",\"data\":{\"tenantId\":\"1001\",\"sequence\":1}}"), http.StatusBadRequest},
		{"a long webhook-id", signed(strings.Repeat("m", 300), `{"type":"school.activated","data":{"tenantId":"1001","sequence":1}}`), http.StatusBadRequest},
		{"over 1 MiB", signed("msg_8", huge), http.StatusRequestEntityTooLarge},
	} {
		if code, msg := send(t, tc.req); code != tc.code {
			t.Errorf("%s: %d %q, want %d", tc.name, code, msg, tc.code)
		}
	}
	if s, ok := a.events.school("1001"); ok {
		t.Errorf("bad input was kept: %+v", s)
	}
	if code, _, _ := get(t, url, nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d", eventsPath, code)
	}
	// Without a secret the app takes no event at all.
	_, off, _ := eventsApp(t, "")
	if code, msg := send(t, signedEvent{id: "msg_9", typ: "school.activated", tenant: "1001", seq: 1}.request(t, off+eventsPath)); code != http.StatusServiceUnavailable {
		t.Errorf("without a secret: %d %q", code, msg)
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"} {
		_, err := build(Config{Issuer: testIssuer, EventsSecret: bad})
		if err == nil || strings.Contains(err.Error(), "MfKQ9") || strings.Contains(err.Error(), "base64!") {
			t.Errorf("secret %q: %v", bad, err)
		}
	}
}

// school.deleted asks the app to delete the school's personal data: the app deletes every event
// it kept of the school but the deletion itself, leaves other schools alone, and an older event
// of the school that arrives later (an operator's retry) does not bring any of it back.
func TestDeletionPurgesWhatTheAppKeptOfTheSchool(t *testing.T) {
	t.Parallel()
	a, base, g := eventsApp(t, eventsSecret)
	url := base + eventsPath
	post := func(ev signedEvent) {
		t.Helper()
		if code, msg := send(t, ev.request(t, url)); code != http.StatusOK || msg != "stored" {
			t.Fatalf("%s %d: %d %q", ev.typ, ev.seq, code, msg)
		}
	}
	post(signedEvent{id: "msg_a1", typ: "school.activated", tenant: "1001", seq: 1})
	post(signedEvent{id: "msg_b1", typ: "school.activated", tenant: "1002", seq: 2})
	post(signedEvent{id: "msg_a2", typ: "school.setup_changed", tenant: "1001", seq: 3,
		data: map[string]any{"changed": []string{"district"}, "setup": map[string]string{"district": "Nord"}, "message": "Setup of Frau Müller"}})
	post(signedEvent{id: "msg_a3", typ: "school.deactivated", tenant: "1001", seq: 4,
		data: map[string]any{"state": "deactivated", "previousState": "active", "reasonText": "Kündigung durch Direktorin Weiß"}})
	viewer := jurgen // a user of 1001
	tok := sign(t, g.kid, g.key, claimsOf(viewer, time.Now()), jose.ES256)
	_, _, page := get(t, base+"/events", headers(viewer, tok))
	if txt := text(page); !strings.Contains(txt, "changed: district") || !strings.Contains(txt, "Kündigung durch Direktorin Weiß") {
		t.Fatalf("before the deletion:\n%s", txt)
	}

	post(signedEvent{id: "msg_a4", typ: "school.deleted", tenant: "1001", seq: 5,
		data: map[string]any{"state": "deleted", "previousState": "deactivated", "action_required": "delete_personal_data"}})
	// A late, older event of the deleted school.
	if code, msg := send(t, signedEvent{id: "msg_a0", typ: "school.setup_changed", tenant: "1001", seq: 3,
		data: map[string]any{"message": "Setup of Frau Müller", "name": "Secret school name"}}.request(t, url)); code != http.StatusOK || !strings.HasPrefix(msg, "skipped") {
		t.Errorf("late older event: %d %q", code, msg)
	}
	s, _ := a.events.school("1001")
	if s.State != "deleted" || len(s.Events) != 2 || s.Events[0].Type != "school.deleted" || s.Events[1].Skipped == "" {
		t.Errorf("1001 after its deletion: %+v", s)
	}
	dump := fmt.Sprintf("%+v", s)
	for _, gone := range []string{"Müller", "Weiß", "district", "Secret school name"} {
		if strings.Contains(dump, gone) {
			t.Errorf("the app still keeps %q of the deleted school: %s", gone, dump)
		}
	}
	if b, _ := a.events.school("1002"); len(b.Events) != 1 || b.State != "active" {
		t.Errorf("1002 after 1001's deletion: %+v", b)
	}
	_, _, page = get(t, base+"/events", headers(viewer, tok))
	txt := text(page)
	if !strings.Contains(txt, "The school was deleted (event 5): the app deleted what it kept of it from before") || strings.Contains(txt, "Müller") || strings.Contains(txt, "Weiß") {
		t.Errorf("after the deletion:\n%s", txt)
	}
}

// The events page shows the school of the verified token only: not one named by a header that
// contradicts it, and none without a verified token.
func TestEventsPageShowsOnlyTheVerifiedSchool(t *testing.T) {
	t.Parallel()
	_, base, g := eventsApp(t, eventsSecret)
	for i, tenant := range []string{"1001", "1002"} {
		ev := signedEvent{id: fmt.Sprintf("msg_%d", i), typ: "school.activated", tenant: tenant, seq: int64(i + 1),
			data: map[string]any{"message": "Activated school " + tenant + " by its admin"}}
		if code, msg := send(t, ev.request(t, base+eventsPath)); code != http.StatusOK {
			t.Fatalf("%d %q", code, msg)
		}
	}
	tok := sign(t, g.kid, g.key, claimsOf(jurgen, time.Now()), jose.ES256) // school 1001
	h := headers(jurgen, tok)
	h.Set(HeaderTenantID, "1002")
	_, _, page := get(t, base+"/events?tenant=1002", h)
	if txt := text(page); !strings.Contains(txt, "Activated school 1001") || strings.Contains(txt, "Activated school 1002") {
		t.Errorf("as a user of 1001 claiming 1002:\n%s", txt)
	}
	forged := sign(t, g.kid, newKey(t), claimsOf(jurgen, time.Now()), jose.ES256)
	_, _, page = get(t, base+"/events", headers(jurgen, forged))
	if txt := text(page); !strings.Contains(txt, "did not verify") || strings.Contains(txt, "Activated school") {
		t.Errorf("with a forged token:\n%s", txt)
	}
}
