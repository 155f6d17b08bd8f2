package platformsim_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
)

// calendarPartner is a partner's Calendar-Path: it verifies the signature as the real server
// must, records the request, and answers what the test sets.
type calendarPartner struct {
	mu     sync.Mutex
	pub    *rsa.PublicKey
	got    []map[string]string
	paths  []string
	status int
	ctype  string
	answer string
}

func newCalendarPartner(t *testing.T) (*calendarPartner, *httptest.Server) {
	p := &calendarPartner{status: http.StatusOK, ctype: "text/calendar; charset=utf-8"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sig, err := base64.StdEncoding.DecodeString(r.Header.Get("Authorization"))
		sum := sha256.Sum256(body)
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil || r.Method != http.MethodPost || r.Header.Get("Algorithm") != "SHA256withRSA" ||
			!strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || rsa.VerifyPKCS1v15(p.pub, crypto.SHA256, sum[:], sig) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req map[string]string
		_ = json.Unmarshal(body, &req)
		p.got, p.paths = append(p.got, req), append(p.paths, r.URL.Path)
		w.Header().Set("Content-Type", p.ctype)
		w.WriteHeader(p.status)
		_, _ = io.WriteString(w, p.answer)
	}))
	t.Cleanup(srv.Close)
	return p, srv
}

func (p *calendarPartner) set(status int, ctype, answer string) {
	p.mu.Lock()
	p.status, p.ctype, p.answer = status, ctype, answer
	p.mu.Unlock()
}

const goodCalendar = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//partner//EN\r\n" +
	"BEGIN:VEVENT\r\nUID:4712-b\r\nDTSTAMP:20230309T120000Z\r\nDTSTART;VALUE=DATE:20230313\r\nDTEND;VALUE=DATE:20230314\r\nSUMMARY:Wandertag\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:4711-a\r\nDTSTAMP:20230309T120000Z\r\nDTSTART:20230310T070000Z\r\nDTEND:20230310T075000Z\r\nSTATUS:CANCELLED\r\n" +
	"SUMMARY:Mathematik\\, Gruppe A\\; Prüfung\r\nLOCATION:Raum 101\r\nDESCRIPTION:Zeile 1\\nZeile 2\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"

// The timetable view posts the documented body, signed with the webhook key, to the Calendar-Path
// and shows the events it reads: in Go, through the control API, and on the school's card.
func TestTimetableViewAsksTheCalendarPathAndShowsTheEvents(t *testing.T) {
	t.Parallel()
	p, partner := newCalendarPartner(t)
	e := newEnv(t, platformsim.Config{PartnerURL: partner.URL})
	p.pub = parseWebhookKey(t, e.sim.WebhookPublicKey())
	p.set(http.StatusOK, "text/calendar; charset=utf-8", goodCalendar)
	teacher, _ := e.sim.UserByRole("1001", platformsim.RoleTeacher)

	res, err := e.sim.TimetableView(t.Context(), "1001", teacher.SourcedID,
		time.Date(2023, 3, 10, 0, 0, 0, 0, time.UTC), time.Date(2023, 3, 13, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if p.paths[0] != platformsim.DefaultCalendarPath || p.got[0]["tenantId"] != "1001" || p.got[0]["user"] != teacher.SourcedID ||
		p.got[0]["startDate"] != "2023-03-10" || p.got[0]["endDate"] != "2023-03-13" || len(p.got[0]) != 4 {
		t.Errorf("the partner got %s %v", p.paths[0], p.got[0])
	}
	if !res.OK() || len(res.Problems) != 0 || len(res.Events) != 2 {
		t.Fatalf("result %+v", res)
	}
	// Sorted by start; texts unescaped by the library.
	a, b := res.Events[0], res.Events[1]
	if a.UID != "4711-a" || a.Summary != "Mathematik, Gruppe A; Prüfung" || a.Description != "Zeile 1\nZeile 2" || a.Status != "CANCELLED" ||
		a.When != "Fri 10 Mar 2023, 07:00–07:50 UTC" || b.UID != "4712-b" || b.When != "Mon 13 Mar 2023 (all day)" {
		t.Errorf("events %+v", res.Events)
	}
	if e.sim.Stats().CalendarRequests != 1 || e.sim.LastTimetable("1001") != res {
		t.Errorf("stats %+v", e.sim.Stats())
	}

	// The control API, with the signed-in user and this week by default.
	if err := e.sim.SetSignedInUser("1001", teacher.SourcedID); err != nil {
		t.Fatal(err)
	}
	resp, err := e.client.Post(e.url+"/sim/api/tenants/1001/timetable", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var api platformsim.TimetableResult
	if err := json.NewDecoder(resp.Body).Decode(&api); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("control API: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	monday, _ := time.Parse(time.DateOnly, api.StartDate)
	friday, _ := time.Parse(time.DateOnly, api.EndDate)
	if api.User != teacher.SourcedID || monday.Weekday() != time.Monday || friday.Sub(monday) != 4*24*time.Hour || len(api.Events) != 2 {
		t.Errorf("control API: %+v", api)
	}

	// The page: a person picks a user and the days, and sees the events on the school's card.
	form := url.Values{"user": {teacher.SourcedID}, "start": {"2023-03-10"}, "end": {"2023-03-13"}}
	resp, err = e.client.PostForm(e.url+"/sim/tenants/1001/timetable", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "#timetable-1001") {
		t.Fatalf("page form: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = e.url + loc
	}
	pageBytes, _ := io.ReadAll(e.get(loc).Body)
	page := string(pageBytes)
	for _, want := range []string{"Timetable view", "with <strong>2</strong> event(s)", "Mathematik, Gruppe A; Prüfung", "Raum 101",
		"Fri 10 Mar 2023, 07:00–07:50 UTC", "Mon 13 Mar 2023 (all day)", `class="cancelled"`, `value="2023-03-10"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
}

// A strict platform's objections are listed; a refusal or a page that is no calendar is an
// error, with the answer shown.
func TestTimetableViewSaysWhatIsWrongWithAnAnswer(t *testing.T) {
	t.Parallel()
	p, partner := newCalendarPartner(t)
	e := newEnv(t, platformsim.Config{PartnerURL: partner.URL})
	p.pub = parseWebhookKey(t, e.sim.WebhookPublicKey())
	day := time.Date(2023, 3, 10, 0, 0, 0, 0, time.UTC)
	ask := func() *platformsim.TimetableResult {
		t.Helper()
		res, err := e.sim.TimetableView(t.Context(), "1001", "u-1", day, day)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sloppy := "BEGIN:VCALENDAR\nPRODID:x\nBEGIN:VEVENT\nUID:abc\nDTSTART:20230310T070000Z\nSTATUS:DONE\nSUMMARY:" +
		strings.Repeat("x", 100) + "\nEND:VEVENT\nEND:VCALENDAR\n"
	p.set(http.StatusOK, "text/calendar", sloppy)
	res := ask()
	joined := strings.Join(res.Problems, "\n")
	for _, want := range []string{"bare CR or LF", "VERSION:2.0 is missing", "event 1: DTEND is missing", "event 1: DTSTAMP is missing",
		"UID abc is not digits", "STATUS DONE"} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems lack %q:\n%s", want, joined)
		}
	}
	long := strings.Replace(goodCalendar, "SUMMARY:Wandertag", "SUMMARY:"+strings.Repeat("W", 80), 1)
	p.set(http.StatusOK, "text/calendar", long)
	if res := ask(); len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "is 88 octets") {
		t.Errorf("long line: %v", res.Problems)
	}
	for _, tc := range []struct {
		status       int
		ctype, body  string
		wantErr, got string
	}{
		{http.StatusForbidden, "application/json", `{"error":"school_not_active"}`, "the partner answered 403", "school_not_active"},
		{http.StatusOK, "text/html", "<h1>Hello</h1>", "not text/calendar", "<h1>Hello</h1>"},
		{http.StatusOK, "text/calendar", "BEGIN:VEVENT\r\nEND:VEVENT\r\n", "not iCalendar", "BEGIN:VEVENT"},
	} {
		p.set(tc.status, tc.ctype, tc.body)
		res := ask()
		if res.OK() || !strings.Contains(res.Error, tc.wantErr) || !strings.Contains(res.ResponseBody, tc.got) || len(res.Events) != 0 {
			t.Errorf("%d %s: %+v", tc.status, tc.ctype, res)
		}
	}
	// Nobody listening: an error, shown on the card too.
	e.sim.SetPartnerURL("http://127.0.0.1:1")
	if _, err := e.sim.TimetableView(t.Context(), "1001", "u-1", day, day); err == nil {
		t.Error("no error without a partner")
	}
	if last := e.sim.LastTimetable("1001"); last == nil || last.Error == "" {
		t.Errorf("last result %+v", last)
	}
	if _, err := e.sim.TimetableView(t.Context(), "9999", "u-1", day, day); err != platformsim.ErrUnknownTenant {
		t.Errorf("unknown tenant: %v", err)
	}
	if !bytes.Contains(e.sim.LastTimetable("1001").Body, []byte(`"tenantId":"1001"`)) {
		t.Errorf("body kept: %s", e.sim.LastTimetable("1001").Body)
	}
}
