package httpserver_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/calendar"
	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// Nothing the platform did not sign gets an answer, and the app is never asked: the webhooks'
// signature rules (SHA256withRSA over the raw body, one of UNTIS_WEBHOOK_KEYS) and their limit.
func TestCalendarRefusesWhatThePlatformDidNotSign(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	tid := c.school(platformsim.TenantSpec{ID: "7101"}, store.StateActive)
	c.app.answerWith(http.StatusOK, "text/calendar", icsEvents("2023-03-10", 2))
	body := calendarBody(tid, "u-1", "2023-03-10", "2023-03-13")
	auth, alg := c.sim.SignWebhook(body)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	otherSig, _ := rsa.SignPKCS1v15(rand.Reader, other, crypto.SHA256, sum[:])
	changed := bytes.Replace(body, []byte("2023-03-13"), []byte("2023-03-14"), 1) // one byte
	rawSig, _ := base64.StdEncoding.DecodeString(auth)
	hdr := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json"}}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	big := append(append([]byte{}, body[:len(body)-1]...), []byte(`,"pad":"`+strings.Repeat("x", calendar.MaxRequestBody)+`"}`)...)
	bigAuth, _ := c.sim.SignWebhook(big)

	for _, tc := range []struct {
		name   string
		body   []byte
		header http.Header
		status int
	}{
		{"no signature headers", body, hdr(), http.StatusUnauthorized},
		{"no Algorithm", body, hdr("Authorization", auth), http.StatusUnauthorized},
		{"no Authorization", body, hdr("Algorithm", alg), http.StatusUnauthorized},
		{"Algorithm SHA256", body, hdr("Authorization", auth, "Algorithm", "SHA256"), http.StatusUnauthorized},
		{"Algorithm in lower case", body, hdr("Authorization", auth, "Algorithm", "sha256withrsa"), http.StatusUnauthorized},
		{"Algorithm none", body, hdr("Authorization", auth, "Algorithm", "none"), http.StatusUnauthorized},
		{"a Bearer prefix", body, hdr("Authorization", "Bearer "+auth, "Algorithm", alg), http.StatusUnauthorized},
		{"bad base64", body, hdr("Authorization", "!!not base64!!", "Algorithm", alg), http.StatusUnauthorized},
		{"URL-safe base64", body, hdr("Authorization", base64.URLEncoding.EncodeToString(rawSig)+"-_", "Algorithm", alg), http.StatusUnauthorized},
		{"a truncated signature", body, hdr("Authorization", base64.StdEncoding.EncodeToString(rawSig[:128]), "Algorithm", alg), http.StatusUnauthorized},
		{"signed by another key", body, hdr("Authorization", base64.StdEncoding.EncodeToString(otherSig), "Algorithm", alg), http.StatusUnauthorized},
		{"the body changed by one byte", changed, hdr("Authorization", auth, "Algorithm", alg), http.StatusUnauthorized},
		{"an empty body with the signature", nil, hdr("Authorization", auth, "Algorithm", alg), http.StatusUnauthorized},
		{"over 64 KiB, signed", big, hdr("Authorization", bigAuth, "Algorithm", alg), http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := c.postCalendar(tc.body, tc.header)
			if a.status != tc.status || a.header.Get("Content-Type") != "application/json" {
				t.Errorf("%d %s %s, want %d", a.status, a.header.Get("Content-Type"), a.body, tc.status)
			}
			if tc.status == http.StatusUnauthorized && strings.TrimSpace(a.body) != `{"error":"bad_signature"}` {
				t.Errorf("the refusal says more than no: %s", a.body)
			}
		})
	}
	// Over the limit without a declared length (chunked): refused once the reading passes it.
	req, _ := http.NewRequest(http.MethodPost, c.app0()+httpserver.CalendarPath, io.MultiReader(bytes.NewReader(big)))
	req.Header = hdr("Authorization", bigAuth, "Algorithm", alg)
	req.ContentLength = -1
	if a := obSend(t, req); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked over the limit: %d %s", a.status, a.body)
	}
	if n := c.app.hits.Load(); n != 0 {
		t.Errorf("the app was asked %d times", n)
	}
	if got := c.outcomeCount(t, "bad_signature"); got != "13" {
		t.Errorf("bad_signature counted %s times", got)
	}
	if got := c.outcomeCount(t, "too_large"); got != "2" {
		t.Errorf("too_large counted %s times", got)
	}
	if len(c.logs.Find(t, "calendar request refused")) != 13 {
		t.Errorf("refusals logged: %d", len(c.logs.Find(t, "calendar request refused")))
	}
	// The same body, signed, is answered.
	if a := c.postCalendar(body, nil); a.status != http.StatusOK || len(calendarOf(t, a)) != 2 {
		t.Errorf("signed: %d %s", a.status, a.body)
	}
}

// Signed but malformed: 400 naming the field (never a calendar of the wrong days), 415 for a
// body that says it is no JSON. The app is not asked.
func TestCalendarRefusesMalformedRequestsAndRanges(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	tid := c.school(platformsim.TenantSpec{ID: "7201"}, store.StateActive)
	c.app.answerWith(http.StatusOK, "text/calendar", icsEvents("2023-03-10", 1))
	raw := func(s string) []byte { return []byte(s) }
	for _, tc := range []struct {
		name  string
		body  []byte
		field string
	}{
		{"reversed", calendarBody(tid, "u", "2023-03-13", "2023-03-10"), "endDate"},
		{"63 days", calendarBody(tid, "u", "2023-03-01", "2023-05-02"), "endDate"},
		{"a school year", calendarBody(tid, "u", "2022-09-01", "2023-07-01"), "endDate"},
		{"one-digit month", calendarBody(tid, "u", "2023-3-10", "2023-03-13"), "startDate"},
		{"February 30", calendarBody(tid, "u", "2023-02-30", "2023-03-13"), "startDate"},
		{"a timestamp", calendarBody(tid, "u", "2023-03-10", "2023-03-13T23:59:59Z"), "endDate"},
		{"German dates", calendarBody(tid, "u", "10.03.2023", "13.03.2023"), "startDate"},
		{"no user", calendarBody(tid, "", "2023-03-10", "2023-03-13"), "user"},
		{"a user with NUL", raw(`{"tenantId":"` + tid + `","user":"u\u0000","startDate":"2023-03-10","endDate":"2023-03-13"}`), "user"},
		{"tenant a number", raw(`{"tenantId":7201,"user":"u","startDate":"2023-03-10","endDate":"2023-03-13"}`), "tenantId"},
		{"tenant with a path", calendarBody("../7201", "u", "2023-03-10", "2023-03-13"), "tenantId"},
		{"no endDate", raw(`{"tenantId":"` + tid + `","user":"u","startDate":"2023-03-10"}`), "endDate"},
		{"not an object", raw(`["7201"]`), ""},
		{"not JSON", raw(`tenantId=7201`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := c.postCalendar(tc.body, nil)
			var e struct{ Error, Message string }
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || a.status != http.StatusBadRequest || e.Error != "bad_request" ||
				!strings.Contains(e.Message, tc.field) {
				t.Errorf("%d %s, want 400 naming %q", a.status, a.body, tc.field)
			}
		})
	}
	body := calendarBody(tid, "u", "2023-03-10", "2023-03-13")
	auth, alg := c.sim.SignWebhook(body)
	if a := c.postCalendar(body, http.Header{"Authorization": {auth}, "Algorithm": {alg}, "Content-Type": {"text/plain"}}); a.status != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d %s", a.status, a.body)
	}
	if n := c.app.hits.Load(); n != 0 {
		t.Errorf("the app was asked %d times", n)
	}
	// The edges: 62 days, and one day, are answered; without a Content-Type too.
	for _, b := range [][]byte{calendarBody(tid, "u", "2023-03-01", "2023-05-01"), calendarBody(tid, "u", "2023-03-10", "2023-03-10")} {
		auth, alg := c.sim.SignWebhook(b)
		if a := c.postCalendar(b, http.Header{"Authorization": {auth}, "Algorithm": {alg}}); a.status != http.StatusOK {
			t.Errorf("%s: %d %s", b, a.status, a.body)
		}
	}
	if got := c.outcomeCount(t, "bad_request"); got != "14" {
		t.Errorf("bad_request counted %s times", got)
	}
}

// Only an active school's app is asked; a school being set up gets an empty calendar (its users
// cannot reach the app yet either); unknown and ended schools are refused.
func TestCalendarAnswersOnlyForActiveSchools(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	active := c.school(platformsim.TenantSpec{ID: "7301"}, store.StateActive)
	pending := c.school(platformsim.TenantSpec{ID: "7302"}, store.StatePendingSetup)
	off := c.school(platformsim.TenantSpec{ID: "7303"}, store.StateDeactivated)
	deleted := c.school(platformsim.TenantSpec{ID: "7304"}, store.StateDeleted)
	c.app.answerWith(http.StatusOK, "text/calendar", icsEvents("2023-03-10", 3))
	ask := func(tid string) answer {
		return c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-10"), nil)
	}
	for _, tc := range []struct {
		tid, errWord string
		status       int
	}{
		{"7399", "unknown_school", http.StatusNotFound},
		{off, "school_not_active", http.StatusForbidden},
		{deleted, "school_not_active", http.StatusForbidden},
	} {
		a := ask(tc.tid)
		if a.status != tc.status || !strings.Contains(a.body, `"error":"`+tc.errWord+`"`) {
			t.Errorf("school %s: %d %s", tc.tid, a.status, a.body)
		}
	}
	if a := ask(pending); len(calendarOf(t, a)) != 0 {
		t.Errorf("pending school: %s", a.body)
	}
	if n := c.app.hits.Load(); n != 0 {
		t.Fatalf("the app was asked %d times for schools that are not active", n)
	}
	if a := ask(active); len(calendarOf(t, a)) != 3 {
		t.Errorf("active school: %s", a.body)
	}
	if c.app.hits.Load() != 1 || c.outcomeCount(t, "pending_setup") != "1" || c.outcomeCount(t, "served") != "1" ||
		c.outcomeCount(t, "school_not_active") != "2" || c.outcomeCount(t, "unknown_school") != "1" {
		t.Errorf("outcomes: served %s pending %s", c.outcomeCount(t, "served"), c.outcomeCount(t, "pending_setup"))
	}
}

// The app is asked for the days at its calendar path, as the user: the identity headers of the
// school and the user (with their profile when they signed in before, the school and the id
// only when not), the signed assertion, and the public host, like a proxied request.
func TestCalendarAsksTheAppAsTheUser(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	north := c.school(platformsim.TenantSpec{ID: "7401", Name: "Gymnasium Nord"}, store.StateActive)
	south := c.school(platformsim.TenantSpec{ID: "7402", Name: "Volksschule Süd"}, store.StateActive)
	if _, err := c.store.SaveSetup(c.ctx(), north, map[string]string{"district": "Nord-Ost"}, "test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.store.SetTenantName(c.ctx(), north, "Gymnasium Nord"); err != nil {
		t.Fatal(err)
	}
	teacher := c.user(north, platformsim.RoleTeacher)
	b := c.browser()
	b.signInAs(north, teacher.SourcedID)
	b.launch(launchQuery(north)) // lands on the app
	if u, err := c.store.User(c.ctx(), north, teacher.SourcedID); err != nil || u.GivenName != teacher.GivenName {
		t.Fatalf("the sign-in stored %+v, %v", u, err)
	}
	c.app.answerWith(http.StatusOK, "text/calendar", icsEvents("2023-03-10", 1))
	base := c.app0()
	pub, _ := url.Parse(base)

	a := c.postCalendar(calendarBody(north, teacher.SourcedID, "2023-03-10", "2023-03-13"), nil)
	if len(calendarOf(t, a)) != 1 {
		t.Fatal(a.body)
	}
	seen := c.app.last(t)
	if seen.Method != http.MethodGet || seen.RequestURI != "/untis/calendar?end=2023-03-13&start=2023-03-10" || seen.Host != pub.Host ||
		seen.Header.Get("X-Forwarded-Host") != pub.Host || seen.Header.Get("X-Forwarded-Proto") != "http" ||
		!strings.HasPrefix(seen.Header.Get("Accept"), "text/calendar") || seen.Header.Get("X-Request-Id") == "" {
		t.Errorf("the app was asked %s %s (Host %s) with %v", seen.Method, seen.RequestURI, seen.Host, seen.Header)
	}
	id := decoded(t, seen.Header)
	want := map[string]string{
		gateway.HeaderTenantID: north, gateway.HeaderUserID: teacher.SourcedID, gateway.HeaderRole: platformsim.RoleTeacher,
		gateway.HeaderGivenName: teacher.GivenName, gateway.HeaderFamilyName: teacher.FamilyName, gateway.HeaderEmail: teacher.Email,
		gateway.HeaderSchoolName: "Gymnasium Nord", gateway.HeaderLaunch: "", gateway.HeaderSetup: "district=Nord-Ost",
	}
	for k, v := range want {
		if id[k] != v {
			t.Errorf("%s = %q, want %q", k, id[k], v)
		}
	}
	claims, err := verifyAssertion(t, base, id[gateway.HeaderIdentity], c.clock.Now(), base)
	if err != nil || claims.TenantID != north || claims.UserID != teacher.SourcedID || claims.Role != platformsim.RoleTeacher {
		t.Errorf("assertion %+v: %v", claims, err)
	}

	// The same user id asked for another school is another user there: nothing of the first
	// school's profile, its name or its setup reaches the app.
	c.postCalendar(calendarBody(south, teacher.SourcedID, "2023-03-10", "2023-03-10"), nil)
	id = decoded(t, c.app.last(t).Header)
	for _, k := range gateway.IdentityHeaders {
		wantV := map[string]string{gateway.HeaderTenantID: south, gateway.HeaderUserID: teacher.SourcedID}[k]
		if k != gateway.HeaderIdentity && id[k] != wantV {
			t.Errorf("another school: %s = %q, want %q", k, id[k], wantV)
		}
	}
	if claims, err := verifyAssertion(t, base, id[gateway.HeaderIdentity], c.clock.Now(), base); err != nil ||
		claims.TenantID != south || claims.Role != "" || claims.GivenName != "" {
		t.Errorf("another school's assertion %+v: %v", claims, err)
	}
	// A client cannot add identity headers of its own to the platform's request.
	body := calendarBody(north, "u-9", "2023-03-10", "2023-03-10")
	auth, alg := c.sim.SignWebhook(body)
	c.postCalendar(body, http.Header{"Authorization": {auth}, "Algorithm": {alg}, "X-Untis-Role": {"administrator"}, "X-Untis-User-Id": {teacher.SourcedID}})
	if id := decoded(t, c.app.last(t).Header); id[gateway.HeaderRole] != "" || id[gateway.HeaderUserID] != "u-9" {
		t.Errorf("a client's headers reached the app: %v", id)
	}
}

// A broken, slow or strange app gives the platform a valid empty calendar (never a 5xx), and the
// log and the metrics say why.
func TestCalendarGivesAnEmptyCalendarWhenTheAppFails(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{maxBytes: 64 << 10})
	tid := c.school(platformsim.TenantSpec{ID: "7501"}, store.StateActive)
	// The slow apps never answer, so a short timeout decides nothing but the test's length; the
	// others get the default 5 s, which no healthy answer on a busy machine comes near.
	slow := newCalendarEnv(t, calOptions{timeout: 300 * time.Millisecond})
	slow.school(platformsim.TenantSpec{ID: tid}, store.StateActive)
	good := icsEvents("2023-03-10", 2)
	for _, tc := range []struct {
		name, outcome, reason string
		app                   http.HandlerFunc
	}{
		{"slow", "app_timeout", "timeout", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // until the server stops waiting
		}},
		{"slow body", "app_timeout", "timeout", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/calendar")
			_, _ = io.WriteString(w, good[:40])
			_ = http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}},
		{"500", "app_unavailable", "answered 500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "panic: runtime error: index out of range\ngoroutine 1 [running]:", http.StatusInternalServerError)
		}},
		{"404", "app_unavailable", "answered 404", http.NotFound},
		{"a redirect", "app_unavailable", "answered 302", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/cal", http.StatusFound)
		}},
		{"an HTML page", "app_invalid", `"text/html"`, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			_, _ = io.WriteString(w, "<html><body>Login</body></html>")
		}},
		{"no Content-Type", "app_invalid", "no usable Content-Type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			_, _ = io.WriteString(w, good)
		}},
		{"not iCalendar", "app_invalid", "not an iCalendar object", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/calendar")
			_, _ = io.WriteString(w, "Stundenplan: Mo 8:00 Mathe")
		}},
		{"latin-1", "app_invalid", "charset", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/calendar; charset=ISO-8859-1")
			_, _ = io.WriteString(w, good)
		}},
		{"JSON that is no event list", "app_invalid", "events", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `[{"start":"2023-03-10"}]`)
		}},
		{"huge, declared", "app_invalid", "over 65536 bytes (Content-Length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/calendar")
			w.Header().Set("Content-Length", strconv.Itoa(10<<20))
			_, _ = io.WriteString(w, good)
		}},
		{"huge, chunked", "app_invalid", "over 65536 bytes", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/calendar")
			_, _ = io.WriteString(w, icsEvents("2023-03-10", 1000))
		}},
		{"the connection cut", "app_unavailable", "EOF", func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_, _ = io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/calendar\r\nContent-Length: 5000\r\n\r\nBEGIN:VCALENDAR\r\n")
				conn.Close()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c
			if tc.outcome == "app_timeout" {
				c = slow
			}
			c.app.answer(tc.app)
			a := c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-10"), nil)
			if events := calendarOf(t, a); len(events) != 0 {
				t.Errorf("%d events", len(events))
			}
			if got := c.outcomeCount(t, tc.outcome); got == "" || got == "0" {
				t.Errorf("outcome %s not counted", tc.outcome)
			}
			logs := c.logs.Find(t, "calendar: the app gave no usable answer; empty calendar")
			if len(logs) == 0 || logs[len(logs)-1]["outcome"] != tc.outcome || !strings.Contains(fmt.Sprint(logs[len(logs)-1]["reason"]), tc.reason) {
				t.Errorf("logged %v, want outcome %s with a reason naming %q", logs[len(logs)-1:], tc.outcome, tc.reason)
			}
		})
	}
	if strings.Contains(c.logs.String(), "goroutine 1") {
		t.Error("the app's answer reached the log")
	}
	// The app working again: its events are back.
	c.app.answerWith(http.StatusOK, "text/calendar; charset=UTF-8", good)
	if events := calendarOf(t, c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-10"), nil)); len(events) != 2 {
		t.Errorf("%d events after the app recovered", len(events))
	}
	// No app at all (nothing listens): the same.
	c.app.srv.Close()
	if events := calendarOf(t, c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-10"), nil)); len(events) != 0 {
		t.Errorf("%d events without an app", len(events))
	}
}

// Events the platform cannot take are dropped one by one, with the reasons logged and counted;
// every other event reaches the platform, escaped and folded, whichever format the app chose.
func TestCalendarDropsInvalidEventsAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	tid := c.school(platformsim.TenantSpec{ID: "7601"}, store.StateActive)
	c.app.answerWith(http.StatusOK, "text/calendar", "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:app\n"+
		"BEGIN:VEVENT\nUID:1-ok\nDTSTART;TZID=Europe/Vienna:20230310T080000\nDTEND;TZID=Europe/Vienna:20230310T085000\n"+
		"SUMMARY:Deutsch\\, Gedichte\\; Goethe & Schiller – Übung\nDESCRIPTION:"+strings.Repeat("Lange Beschreibung mit Umlauten äöü. ", 10)+"\nEND:VEVENT\n"+
		"BEGIN:VEVENT\nUID:2\nDTSTART:20230310T090000Z\nEND:VEVENT\n"+ // no DTEND
		"BEGIN:VEVENT\nUID:math\nDTSTART:20230310T090000Z\nDTEND:20230310T095000Z\nEND:VEVENT\n"+ // UID form
		"BEGIN:VEVENT\nUID:4\nDTSTART:20230310T090000Z\nDTEND:20230310T095000Z\nSTATUS:DONE\nEND:VEVENT\n"+
		"BEGIN:VEVENT\nUID:5\nDTSTART:20230310T100000Z\nDTEND:20230310T090000Z\nEND:VEVENT\n"+ // reversed
		"BEGIN:VEVENT\nUID:1-ok\nDTSTART:20230310T110000Z\nDTEND:20230310T115000Z\nEND:VEVENT\n"+ // UID again
		"BEGIN:VEVENT\nDTSTART;VALUE=DATE:20230313\nDTEND;VALUE=DATE:20230314\nSUMMARY:Wandertag\nSTATUS:tentative\nEND:VEVENT\n"+
		"END:VCALENDAR\n")
	a := c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-13"), nil)
	events := calendarOf(t, a)
	if len(events) != 2 {
		t.Fatalf("%d events kept:\n%s", len(events), a.body)
	}
	first, second := events[0], events[1]
	if first.Id() != "1-ok" || first.GetProperty("SUMMARY").Value != "Deutsch, Gedichte; Goethe & Schiller – Übung" ||
		first.GetProperty("DTSTART").Value != "20230310T070000Z" || !strings.Contains(a.body, "SUMMARY:Deutsch\\, Gedichte\\; Goethe") {
		t.Errorf("first event: %+v\n%s", first, a.body)
	}
	if !strings.HasSuffix(second.Id(), "-untis-partner") || second.GetProperty("STATUS").Value != "TENTATIVE" ||
		second.GetProperty("DTSTART").Value != "20230313" {
		t.Errorf("second event (UID made up): %+v", second)
	}
	logs := c.logs.Find(t, "calendar: events of the app dropped")
	if len(logs) != 1 || logs[0]["dropped"] != float64(5) || logs[0]["tenant_id"] != tid ||
		logs[0]["reasons"] != "bad_status=1 bad_uid=1 duplicate_uid=1 end_not_after_start=1 missing_dtend=1" ||
		!strings.Contains(fmt.Sprint(logs[0]["first"]), "event 2") {
		t.Errorf("logged %v", logs)
	}
	if got := c.metricValue(t, `calendar_events_dropped_total{reason="missing_dtend"}`); got != "1" {
		t.Errorf("dropped missing_dtend = %q", got)
	}
	// The same in JSON.
	c.app.answerWith(http.StatusOK, "application/json", `{"events": [
		{"uid": 7, "start": "2023-03-10T08:00:00+01:00", "end": "2023-03-10T08:50:00+01:00", "summary": "Englisch\nVokabeltest", "location": "R 2, 1. Stock"},
		{"uid": "x", "start": "2023-03-10T09:00:00Z", "end": "2023-03-10T09:50:00Z"},
		{"start": "2023-03-10T10:00:00", "end": "2023-03-10T10:50:00", "status": "CANCELLED"},
		{"start": "2023-03-10T11:00:00Z"}
	]}`)
	events = calendarOf(t, c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-10"), nil))
	if len(events) != 2 || events[0].Id() != "7" || events[0].GetProperty("SUMMARY").Value != "Englisch\nVokabeltest" ||
		events[0].GetProperty("LOCATION").Value != "R 2, 1. Stock" || events[0].GetProperty("DTSTART").Value != "20230310T070000Z" ||
		events[1].GetProperty("DTSTART").Value != "20230310T100000" || events[1].GetProperty("STATUS").Value != "CANCELLED" {
		t.Errorf("JSON events: %+v", events)
	}
}

// A large calendar: 1,000 events pass whole, and a standard parser reads the answer.
func TestCalendarLargeCalendar(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	tid := c.school(platformsim.TenantSpec{ID: "7701"}, store.StateActive)
	c.app.answerWith(http.StatusOK, "text/calendar", icsEvents("2023-03-01", 1000))
	events := calendarOf(t, c.postCalendar(calendarBody(tid, "u-1", "2023-03-01", "2023-04-30"), nil))
	if len(events) != 1000 || events[999].Id() != "1999-lesson" {
		t.Fatalf("%d events", len(events))
	}
	// And past CALENDAR_MAX_EVENTS the rest is dropped, counted, and the first ones kept.
	c2 := newCalendarEnv(t, calOptions{maxEvents: 300})
	c2.school(platformsim.TenantSpec{ID: tid}, store.StateActive)
	c2.app.answerWith(http.StatusOK, "text/calendar", icsEvents("2023-03-01", 1000))
	if events := calendarOf(t, c2.postCalendar(calendarBody(tid, "u-1", "2023-03-01", "2023-04-30"), nil)); len(events) != 300 {
		t.Errorf("%d events with a limit of 300", len(events))
	}
	if got := c2.metricValue(t, `calendar_events_dropped_total{reason="too_many"}`); got != "700" {
		t.Errorf("too_many = %q", got)
	}
}

// Without an app behind the server (no UPSTREAM_URL) an active school gets an empty calendar.
func TestCalendarWithoutAnAppIsEmpty(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{noApp: true})
	tid := c.school(platformsim.TenantSpec{ID: "7801"}, store.StateActive)
	if events := calendarOf(t, c.postCalendar(calendarBody(tid, "u-1", "2023-03-10", "2023-03-13"), nil)); len(events) != 0 {
		t.Errorf("%d events", len(events))
	}
	if c.outcomeCount(t, "no_app") != "1" || c.app.hits.Load() != 0 {
		t.Errorf("no_app %s", c.outcomeCount(t, "no_app"))
	}
	// Other methods on the path are not the calendar's.
	if a := obSend(t, mustRequest(t, http.MethodGet, c.app0()+httpserver.CalendarPath)); a.status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", a.status)
	}
}

func mustRequest(t *testing.T, method, u string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// exampleCalendar is what an app does at its calendar path: the signed-in user's events of the
// days asked for, from the identity headers and the query (here: a lesson each morning, in the
// school's local time, and a cancelled one for teachers).
func exampleCalendar(w http.ResponseWriter, r *http.Request) {
	user, _ := url.PathUnescape(r.Header.Get(gateway.HeaderUserID))
	role := r.Header.Get(gateway.HeaderRole)
	given, _ := url.PathUnescape(r.Header.Get(gateway.HeaderGivenName))
	start, err1 := time.Parse(time.DateOnly, r.URL.Query().Get("start"))
	end, err2 := time.Parse(time.DateOnly, r.URL.Query().Get("end"))
	if user == "" || err1 != nil || err2 != nil {
		http.Error(w, "who and when?", http.StatusBadRequest)
		return
	}
	type event struct {
		UID      string `json:"uid"`
		Start    string `json:"start"`
		End      string `json:"end"`
		Summary  string `json:"summary"`
		Location string `json:"location,omitempty"`
		Status   string `json:"status,omitempty"`
	}
	var out struct {
		Events []event `json:"events"`
	}
	for d := start; !d.After(end); d = d.AddDate(0, 0, 1) {
		day := d.Format(time.DateOnly)
		out.Events = append(out.Events, event{UID: d.Format("20060102") + "-lernzeit", Start: day + "T08:00:00", End: day + "T08:50:00",
			Summary: "Lernzeit für " + given, Location: "Bibliothek, 1. Stock"})
		if role == platformsim.RoleTeacher {
			out.Events = append(out.Events, event{UID: d.Format("20060102") + "-konferenz", Start: day + "T14:00:00", End: day + "T15:00:00",
				Summary: "Konferenz; Raumwechsel", Status: "CANCELLED"})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// End to end: the simulator's timetable view asks the server's Calendar-Path, the server asks the
// app behind it as the user, and the timetable shows the app's events, read by the simulator's
// own iCalendar library with nothing to object to; the simulator's page shows them.
func TestCalendarEndToEndThroughTheTimetableView(t *testing.T) {
	t.Parallel()
	c := newCalendarEnv(t, calOptions{})
	tid := c.school(platformsim.TenantSpec{ID: "7901", Name: "Gymnasium am See"}, store.StateActive)
	c.app.answer(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/untis/calendar" {
			http.NotFound(w, r)
			return
		}
		exampleCalendar(w, r)
	})
	teacher := c.user(tid, platformsim.RoleTeacher)
	b := c.browser()
	b.signInAs(tid, teacher.SourcedID)
	b.launch(launchQuery(tid)) // the teacher opened the app once: the server knows their name and role

	res, err := c.sim.TimetableView(c.ctx(), tid, teacher.SourcedID, time.Date(2023, 3, 13, 0, 0, 0, 0, time.UTC), time.Date(2023, 3, 17, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || len(res.Problems) != 0 || len(res.Events) != 10 {
		t.Fatalf("timetable: %d %s, %d events, problems %v, %s", res.Status, res.Error, len(res.Events), res.Problems, res.ResponseBody)
	}
	first, cancelled := res.Events[0], res.Events[1]
	if first.UID != "20230313-lernzeit" || first.Summary != "Lernzeit für "+teacher.GivenName || first.Location != "Bibliothek, 1. Stock" ||
		first.When != "Mon 13 Mar 2023, 08:00–08:50 (school time)" || cancelled.Status != "CANCELLED" || cancelled.Summary != "Konferenz; Raumwechsel" {
		t.Errorf("events %+v", res.Events[:2])
	}
	// A student of the school, who never opened the app: the app knows only the id, and answers
	// without the teachers' events.
	student := c.user(tid, platformsim.RoleStudent)
	res, err = c.sim.TimetableView(c.ctx(), tid, student.SourcedID, time.Date(2023, 3, 13, 0, 0, 0, 0, time.UTC), time.Date(2023, 3, 13, 0, 0, 0, 0, time.UTC))
	if err != nil || len(res.Events) != 1 || res.Events[0].Summary != "Lernzeit für " {
		t.Errorf("student: %+v %v", res, err)
	}
	// The page a person sees: pick the teacher and the week, press the button, see the events.
	form := url.Values{"user": {teacher.SourcedID}, "start": {"2023-03-13"}, "end": {"2023-03-14"}}
	req, _ := http.NewRequest(http.MethodPost, c.simURL+"/sim/tenants/"+tid+"/timetable", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := obSend(t, req); a.status != http.StatusSeeOther {
		t.Fatalf("the page's form: %d %s", a.status, a.body)
	}
	_, page := get(t, nil, c.simURL+"/", nil)
	for _, want := range []string{"with <strong>4</strong> event(s)", "Lernzeit für " + teacher.GivenName, "Konferenz; Raumwechsel",
		"Mon 13 Mar 2023, 08:00–08:50 (school time)", "Bibliothek, 1. Stock", "20230314-konferenz"} {
		if !strings.Contains(page, want) {
			t.Errorf("the simulator's page lacks %q", want)
		}
	}
	if strings.Contains(page, "A strict platform objects") {
		t.Error("the simulator objects to the server's answer")
	}
}
