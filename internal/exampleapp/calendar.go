package exampleapp

import (
	"encoding/json"
	"net/http"
	"time"
)

// calendarEvent is one event of the JSON format the server takes from the app at its calendar
// path (README "The Calendar-Path"): start and end in the school's local time, a uid of digits
// and text.
type calendarEvent struct {
	UID         string `json:"uid"`
	Start       string `json:"start"`
	End         string `json:"end"`
	Summary     string `json:"summary"`
	Location    string `json:"location,omitempty"`
	Description string `json:"description,omitempty"`
	Status      string `json:"status,omitempty"`
}

// maxCalendarDays bounds the days one answer covers (the server asks for at most 62).
const maxCalendarDays = 62

// handleCalendar is the app's calendar path (CALENDAR_UPSTREAM_PATH, /untis/calendar): the
// server asks it for a user's events of ?start=YYYY-MM-DD&end=YYYY-MM-DD (both included), with
// that user's identity headers, when the platform's timetable view asks the server. This app has
// no data of its own, so it makes up a few events: a study period each school day, and for
// teachers a staff meeting on Wednesdays that was cancelled.
func (a *app) handleCalendar(w http.ResponseWriter, r *http.Request) {
	id := fromHeaders(r)
	start, err1 := time.Parse(time.DateOnly, r.URL.Query().Get("start"))
	end, err2 := time.Parse(time.DateOnly, r.URL.Query().Get("end"))
	switch {
	case id.TenantID == "" || id.UserID == "":
		http.Error(w, "no user: this path is asked by the server, with the user's X-Untis-* headers", http.StatusUnauthorized)
		return
	case err1 != nil || err2 != nil || end.Before(start) || end.Sub(start) > maxCalendarDays*24*time.Hour:
		http.Error(w, "start and end must be dates (YYYY-MM-DD), end not before start, at most 62 days", http.StatusBadRequest)
		return
	}
	who := id.GivenName
	school := orWord(id.SchoolName, "school "+id.TenantID)
	about := "From the example app, which knows " + id.Name() + " (" + orWord(id.Role, "no role yet") + ") of " + school + "."
	if id.GivenName == "" && id.FamilyName == "" {
		// A user who never opened the app: the server knows only their id, which is no name to
		// show a person.
		who = "you"
		about = "From the example app. You have not opened it yet, so it knows only your school, " + school + "."
	}
	out := struct {
		Events []calendarEvent `json:"events"`
	}{Events: []calendarEvent{}}
	for d := start; !d.After(end); d = d.AddDate(0, 0, 1) {
		if d.Weekday() == time.Saturday || d.Weekday() == time.Sunday {
			continue
		}
		day, num := d.Format(time.DateOnly), d.Format("20060102")
		out.Events = append(out.Events, calendarEvent{
			UID: num + "1-study", Start: day + "T13:00:00", End: day + "T13:50:00",
			Summary: "Study period for " + who, Location: "Library, 1st floor",
			Description: about,
		})
		if id.Role == "teacher" && d.Weekday() == time.Wednesday {
			out.Events = append(out.Events, calendarEvent{
				UID: num + "2-staff", Start: day + "T15:00:00", End: day + "T16:30:00",
				Summary: "Staff meeting", Location: "Staff room", Status: "CANCELLED",
			})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(out); err != nil {
		a.log.Warn("calendar: write", "err", err)
	}
}

func orWord(s, word string) string {
	if s == "" {
		return word
	}
	return s
}
