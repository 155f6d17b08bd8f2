package platformsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	ics "github.com/arran4/golang-ical"
)

// DefaultCalendarPath is the Calendar-Path the simulated PAM configuration has: the partner
// server's route.
const DefaultCalendarPath = "/_untis/calendar"

// maxCalendarAnswer bounds how much of a partner's calendar answer is read.
const maxCalendarAnswer = 8 << 20

// calendarRequest is the Calendar API's body (facts §6.4), fields in the documented order.
type calendarRequest struct {
	TenantID  string `json:"tenantId"`
	User      string `json:"user"`
	StartDate string `json:"startDate"`
	EndDate   string `json:"endDate"`
}

// TimetableEvent is one VEVENT of a partner's calendar as the timetable view shows it.
type TimetableEvent struct {
	UID string `json:"uid"`
	// Start and End are the values as sent (20230310T070000Z, 20230310T080000, 20230313).
	Start string `json:"start"`
	End   string `json:"end"`
	// When is a person's reading of them: "Fri 10 Mar 2023, 07:00–07:50 UTC", "… (school time)",
	// "Mon 13 Mar 2023 (all day)".
	When        string `json:"when"`
	Status      string `json:"status"`
	Summary     string `json:"summary"`
	Location    string `json:"location"`
	Description string `json:"description"`
}

// TimetableResult is the partner's answer to one Calendar API request.
type TimetableResult struct {
	TenantID  string    `json:"tenantId"`
	User      string    `json:"user"`
	StartDate string    `json:"startDate"`
	EndDate   string    `json:"endDate"`
	URL       string    `json:"url"`
	Time      time.Time `json:"time"`
	// Body is the exact JSON the simulator sent.
	Body json.RawMessage `json:"body"`
	// Status and ContentType are the partner's; Events the VEVENTs of a text/calendar answer,
	// read by an iCalendar library of its own (github.com/arran4/golang-ical, strict).
	Status      int              `json:"status"`
	ContentType string           `json:"contentType"`
	Events      []TimetableEvent `json:"events"`
	// Problems are what a strict platform objects to in the answer (RFC 5545's line rules,
	// required properties, the documented UID and STATUS forms); empty for a good answer.
	Problems []string `json:"problems"`
	// Error says why the answer could not be read as a calendar (a refusal, not a calendar).
	Error string `json:"error,omitempty"`
	// ResponseBody is the answer when it is not a calendar (at most 2 KiB).
	ResponseBody string `json:"responseBody,omitempty"`
}

// OK reports whether the answer is a calendar the timetable can show.
func (r *TimetableResult) OK() bool { return r.Status == http.StatusOK && r.Error == "" }

// TimetableView plays the timetable view: it asks the partner's Calendar-Path for the user's
// events between start and end (dates; both included) with a signed POST, as the platform does,
// and reads the answer. The result is also shown on the school's card. An error means the
// partner could not be asked at all.
func (s *Sim) TimetableView(ctx context.Context, tenantID, userID string, start, end time.Time) (*TimetableResult, error) {
	body, err := json.Marshal(calendarRequest{
		TenantID: tenantID, User: userID, StartDate: start.Format(time.DateOnly), EndDate: end.Format(time.DateOnly),
	})
	if err != nil {
		return nil, fmt.Errorf("platformsim: calendar request: %w", err)
	}
	return s.SendCalendarRequest(ctx, tenantID, body)
}

// SendCalendarRequest signs body and posts it to the partner's Calendar-Path: for tests that
// need a body the platform would not send.
func (s *Sim) SendCalendarRequest(ctx context.Context, tenantID string, body []byte) (*TimetableResult, error) {
	s.mu.Lock()
	_, ok := s.tenants[tenantID]
	s.mu.Unlock()
	if !ok {
		return nil, ErrUnknownTenant
	}
	var req calendarRequest
	_ = json.Unmarshal(body, &req) // for the page only; the bytes are sent as they are
	res := &TimetableResult{
		TenantID: tenantID, User: req.User, StartDate: req.StartDate, EndDate: req.EndDate,
		URL: s.PartnerURL() + s.calendarPath, Time: s.Now(), Body: body,
	}
	if !json.Valid(body) {
		res.Body, _ = json.Marshal(string(body))
	}
	err := s.postCalendar(ctx, res, body)
	s.mu.Lock()
	s.stats.calendarRequests++
	if t := s.tenants[tenantID]; t != nil {
		t.lastTimetable = res
		if err != nil {
			t.lastTimetable = &TimetableResult{TenantID: tenantID, User: req.User, StartDate: req.StartDate, EndDate: req.EndDate,
				URL: res.URL, Time: res.Time, Body: res.Body, Error: err.Error()}
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.log.Warn("platformsim: calendar request failed", "tenant_id", tenantID, "err", err)
		return nil, err
	}
	s.log.Info("platformsim: calendar answered", "tenant_id", tenantID, "status", res.Status, "events", len(res.Events),
		"problems", len(res.Problems))
	return res, nil
}

// LastTimetable is the last calendar answer for the school (nil if it was never asked).
func (s *Sim) LastTimetable(tenantID string) *TimetableResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[tenantID]; t != nil {
		return t.lastTimetable
	}
	return nil
}

func (s *Sim) postCalendar(ctx context.Context, res *TimetableResult, body []byte) error {
	auth, alg := s.SignWebhook(body)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, res.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("platformsim: calendar request: %w", err)
	}
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	r.Header.Set("Authorization", auth)
	r.Header.Set("Algorithm", alg)
	r.Header.Set("Accept", "text/calendar")
	r.Header.Set("User-Agent", "platformsim (Untis Platform simulator)")
	resp, err := s.client.Do(r)
	if err != nil {
		return fmt.Errorf("platformsim: calendar request: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCalendarAnswer+1))
	if err != nil {
		return fmt.Errorf("platformsim: read the calendar answer: %w", err)
	}
	res.Status, res.ContentType = resp.StatusCode, resp.Header.Get("Content-Type")
	readCalendarAnswer(res, data)
	return nil
}

// readCalendarAnswer reads a partner's answer as the platform would, strictly.
func readCalendarAnswer(res *TimetableResult, data []byte) {
	res.Events, res.Problems = []TimetableEvent{}, []string{}
	excerpt := func() string {
		if len(data) > 2048 {
			return strings.ToValidUTF8(string(data[:2048]), "?") + "…"
		}
		return strings.ToValidUTF8(string(data), "?")
	}
	if res.Status != http.StatusOK {
		res.Error, res.ResponseBody = fmt.Sprintf("the partner answered %d", res.Status), excerpt()
		return
	}
	if len(data) > maxCalendarAnswer {
		res.Error = fmt.Sprintf("the answer is over %d bytes", maxCalendarAnswer)
		return
	}
	if mt, params, err := mime.ParseMediaType(res.ContentType); err != nil || mt != "text/calendar" {
		res.Error, res.ResponseBody = "the answer is not text/calendar", excerpt()
		return
	} else if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" {
		res.Problems = append(res.Problems, "charset is "+cs+", not utf-8")
	}
	res.Problems = append(res.Problems, lineProblems(data)...)
	cal, err := ics.ParseCalendar(bytes.NewReader(data))
	if err != nil {
		res.Error, res.ResponseBody = "the answer is not iCalendar: "+err.Error(), excerpt()
		return
	}
	has := func(p ics.Property) string {
		for _, cp := range cal.CalendarProperties {
			if cp.IANAToken == string(p) {
				return cp.Value
			}
		}
		return ""
	}
	if has(ics.PropertyVersion) != "2.0" {
		res.Problems = append(res.Problems, "VERSION:2.0 is missing")
	}
	if has(ics.PropertyProductId) == "" {
		res.Problems = append(res.Problems, "PRODID is missing")
	}
	for i, e := range cal.Events() {
		te, problems := timetableEvent(e)
		for _, p := range problems {
			res.Problems = append(res.Problems, fmt.Sprintf("event %d: %s", i+1, p))
		}
		res.Events = append(res.Events, te)
	}
	slices.SortStableFunc(res.Events, func(a, b TimetableEvent) int { return strings.Compare(sortKey(a.Start), sortKey(b.Start)) })
}

// sortKey orders 20230313 and 20230310T070000Z by day and time.
func sortKey(v string) string { return (v + "T000000")[:15] }

var uidForm = regexp.MustCompile(`^[0-9]+(-[^\x00-\x1f\x7f]+)?$`)

// timetableEvent reads one VEVENT and says what the platform objects to in it.
func timetableEvent(e *ics.VEvent) (TimetableEvent, []string) {
	get := func(p ics.ComponentProperty) *ics.IANAProperty { return e.GetProperty(p) }
	val := func(p ics.ComponentProperty) string {
		if v := get(p); v != nil {
			return v.Value
		}
		return ""
	}
	te := TimetableEvent{
		UID: val(ics.ComponentPropertyUniqueId), Start: val(ics.ComponentPropertyDtStart), End: val(ics.ComponentPropertyDtEnd),
		Status: val(ics.ComponentPropertyStatus), Summary: val(ics.ComponentPropertySummary),
		Location: val(ics.ComponentPropertyLocation), Description: val(ics.ComponentPropertyDescription),
	}
	var problems []string
	for _, p := range []ics.ComponentProperty{ics.ComponentPropertyDtStart, ics.ComponentPropertyDtEnd, ics.ComponentPropertyUniqueId, ics.ComponentPropertyDtstamp} {
		if get(p) == nil {
			problems = append(problems, string(p)+" is missing")
		}
	}
	if te.UID != "" && !uidForm.MatchString(te.UID) {
		problems = append(problems, "UID "+te.UID+" is not digits, optionally followed by - and text")
	}
	switch te.Status {
	case "", "CONFIRMED", "CANCELLED", "TENTATIVE":
	default:
		problems = append(problems, "STATUS "+te.Status+" is not CONFIRMED, CANCELLED or TENTATIVE")
	}
	te.When = when(te.Start, te.End)
	return te, problems
}

// when is a person's reading of a start and an end.
func when(start, end string) string {
	parse := func(v string) (time.Time, string, bool) {
		for _, f := range []struct{ layout, zone string }{{"20060102T150405Z", " UTC"}, {"20060102T150405", " (school time)"}, {"20060102", ""}} {
			if t, err := time.Parse(f.layout, v); err == nil && len(v) == len(f.layout) {
				return t, f.zone, len(v) == 8
			}
		}
		return time.Time{}, "", false
	}
	s, zone, allDay := parse(start)
	e, _, _ := parse(end)
	switch {
	case s.IsZero():
		return start + " – " + end
	case allDay:
		last := e.AddDate(0, 0, -1) // DTEND of a date is the day after the last
		if e.IsZero() || !last.After(s) {
			return s.Format("Mon 2 Jan 2006") + " (all day)"
		}
		return s.Format("Mon 2 Jan 2006") + " – " + last.Format("Mon 2 Jan 2006") + " (all day)"
	case !e.IsZero() && e.Format(time.DateOnly) == s.Format(time.DateOnly):
		return s.Format("Mon 2 Jan 2006, 15:04") + "–" + e.Format("15:04") + zone
	}
	return s.Format("Mon 2 Jan 2006, 15:04") + " – " + e.Format("Mon 2 Jan 2006, 15:04") + zone
}

// lineProblems checks RFC 5545's rules for the octets: CRLF line ends, no line over 75 octets,
// UTF-8.
func lineProblems(data []byte) []string {
	var out []string
	add := func(format string, args ...any) {
		if len(out) < 10 {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	if !utf8.Valid(data) {
		add("the answer is not UTF-8")
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\r\n")) {
		add("the last line does not end with CRLF")
	}
	for i, l := range bytes.Split(data, []byte("\r\n")) {
		if bytes.ContainsAny(l, "\r\n") {
			add("line %d has a bare CR or LF (lines must end with CRLF)", i+1)
		}
		if len(l) > 75 {
			add("line %d is %d octets (at most 75: fold it)", i+1, len(l))
		}
	}
	return out
}

// errNotDate is returned for a timetable date that is not YYYY-MM-DD.
var errNotDate = errors.New("dates must be YYYY-MM-DD")

// timetableDates reads the timetable view's dates; empty ones are this week's Monday to Friday.
func (s *Sim) timetableDates(start, end string) (time.Time, time.Time, error) {
	now := s.Now()
	monday := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	monday = monday.AddDate(0, 0, -((int(monday.Weekday()) + 6) % 7))
	st, en := monday, monday.AddDate(0, 0, 4)
	var err error
	if start != "" {
		if st, err = time.Parse(time.DateOnly, start); err != nil {
			return st, en, errNotDate
		}
	}
	if end != "" {
		if en, err = time.Parse(time.DateOnly, end); err != nil {
			return st, en, errNotDate
		}
	}
	return st, en, nil
}
