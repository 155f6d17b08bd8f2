package exampleapp

import (
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/calendar"
)

// The calendar path answers the asking user's events of the days asked for, in the JSON format
// the server takes without dropping anything.
func TestCalendarPathServesTheUsersEvents(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	_, srv := newApp(t, g)
	// Monday 13 to Sunday 19 March 2023: five school days, one Wednesday.
	status, h, body := get(t, srv.URL+"/untis/calendar?start=2023-03-13&end=2023-03-19", headers(jurgen, ""))
	if status != http.StatusOK || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s %s", status, h.Get("Content-Type"), body)
	}
	events, drops, err := calendar.ParseJSON([]byte(body), calendar.Limits{})
	if err != nil || drops.Total() != 0 {
		t.Fatalf("the server would drop %v (%s): %v", drops.Count, drops.First, err)
	}
	if len(events) != 6 {
		t.Fatalf("%d events: %s", len(events), body)
	}
	first := events[0]
	if first.UID != "202303131-study" || first.Summary != "Study period for Jürgen" || first.Start.Kind != calendar.KindFloating ||
		!strings.Contains(first.Description, "Jürgen Weiß-Ørsted (teacher) of Grundschule Süd & Nord") {
		t.Errorf("first event %+v", first)
	}
	if meeting := events[3]; meeting.UID != "202303152-staff" || meeting.Status != calendar.StatusCancelled {
		t.Errorf("Wednesday's meeting %+v", meeting)
	}
	// A student gets no staff meeting; a user the server knows only by id is "you".
	student := jurgen
	student.role, student.given, student.family = "student", "", ""
	_, _, body = get(t, srv.URL+"/untis/calendar?start=2023-03-15&end=2023-03-15", headers(student, ""))
	if events, _, _ := calendar.ParseJSON([]byte(body), calendar.Limits{}); len(events) != 1 || events[0].Summary != "Study period for you" {
		t.Errorf("student: %s", body)
	}
	// One who never opened the app: the server sends only the school and the user's id, which
	// the timetable view must not show as if it were a name.
	stranger := jurgen
	stranger.role, stranger.given, stranger.family = "", "", ""
	_, _, body = get(t, srv.URL+"/untis/calendar?start=2023-03-15&end=2023-03-15", headers(stranger, ""))
	if events, _, _ := calendar.ParseJSON([]byte(body), calendar.Limits{}); len(events) != 1 || events[0].Summary != "Study period for you" ||
		strings.Contains(events[0].Description, stranger.sub) || !strings.Contains(events[0].Description, "You have not opened it yet") {
		t.Errorf("a user the app never saw: %s", body)
	}
	// Asked without a user, or for no sensible days: refused.
	for _, tc := range []struct {
		query  string
		header http.Header
		status int
	}{
		{"?start=2023-03-13&end=2023-03-19", nil, http.StatusUnauthorized},
		{"?start=2023-03-19&end=2023-03-13", headers(jurgen, ""), http.StatusBadRequest},
		{"?start=2023-03-13&end=2024-03-13", headers(jurgen, ""), http.StatusBadRequest},
		{"?start=monday", headers(jurgen, ""), http.StatusBadRequest},
	} {
		if status, _, body := get(t, srv.URL+"/untis/calendar"+tc.query, tc.header); status != tc.status {
			t.Errorf("%s: %d %s", tc.query, status, body)
		}
	}
}
