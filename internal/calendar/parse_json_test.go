package calendar_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/calendar"
)

// The JSON format: every form of time, uid as a string or a whole number, unknown fields ignored.
func TestParseJSONReadsEvents(t *testing.T) {
	t.Parallel()
	in := `{"calendar": "ignored", "events": [
		{"uid": "4711-math", "start": "2023-03-10T08:00:00+01:00", "end": "2023-03-10T08:50:00+01:00",
		 "summary": "Mathematik, 1A; Raum \\ 1", "location": "R 101", "description": "Zeile\nzwei", "status": "cancelled", "color": "red"},
		{"uid": 4712, "start": "2023-03-10T09:00:00", "end": "2023-03-10T09:50:00"},
		{"start": "2023-03-13", "end": "2023-03-14", "summary": "Wandertag"},
		{"uid": null, "start": "2023-03-10T07:00:00.5Z", "end": "2023-03-10T08:00:00Z"}
	]}`
	got, drops, err := calendar.ParseJSON([]byte(in), calendar.Limits{})
	if err != nil || drops.Total() != 0 || len(got) != 4 {
		t.Fatalf("%d events, drops %v %s, %v", len(got), drops.Count, drops.First, err)
	}
	if e := got[0]; e.UID != "4711-math" || e.Start.Kind != calendar.KindUTC || e.Start.T.Format(time.RFC3339) != "2023-03-10T07:00:00Z" ||
		e.Summary != "Mathematik, 1A; Raum \\ 1" || e.Description != "Zeile\nzwei" || e.Status != calendar.StatusCancelled {
		t.Errorf("event 1: %+v", e)
	}
	if e := got[1]; e.UID != "4712" || e.Start.Kind != calendar.KindFloating || e.Start.T.Format("15:04") != "09:00" {
		t.Errorf("event 2: %+v", e)
	}
	if e := got[2]; e.UID != "" || e.Start.Kind != calendar.KindDate || e.End.T.Format(time.DateOnly) != "2023-03-14" {
		t.Errorf("event 3: %+v", e)
	}
	if e := got[3]; e.Start.T.Format(time.RFC3339Nano) != "2023-03-10T07:00:00Z" {
		t.Errorf("event 4: fractions of a second kept: %+v", e)
	}
}

func TestParseJSONDropsInvalidEventsOneByOne(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, event, reason string }{
		{"no start", `{"end": "2023-03-10T08:00:00Z"}`, calendar.DropMissingStart},
		{"empty end", `{"start": "2023-03-10T08:00:00Z", "end": ""}`, calendar.DropMissingEnd},
		{"a number as start", `{"start": 1678435200, "end": "2023-03-10T08:00:00Z"}`, calendar.DropMalformed},
		{"summary an object", `{"start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z", "summary": {}}`, calendar.DropMalformed},
		{"not an object", `"an event"`, calendar.DropMalformed},
		{"a date that does not exist", `{"start": "2023-02-30", "end": "2023-03-01"}`, calendar.DropBadTime},
		{"US date", `{"start": "03/10/2023", "end": "03/11/2023"}`, calendar.DropBadTime},
		{"without seconds", `{"start": "2023-03-10T08:00", "end": "2023-03-10T09:00"}`, calendar.DropBadTime},
		{"reversed", `{"start": "2023-03-10T09:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropEndNotAfterStart},
		{"mixed", `{"start": "2023-03-10", "end": "2023-03-10T08:00:00Z"}`, calendar.DropMixedKinds},
		{"uid of letters", `{"uid": "math", "start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropBadUID},
		{"uid negative", `{"uid": -1, "start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropBadUID},
		{"uid a fraction", `{"uid": 1.5, "start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropBadUID},
		{"uid empty", `{"uid": "", "start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropBadUID},
		{"uid true", `{"uid": true, "start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropBadUID},
		{"status", `{"status": "done", "start": "2023-03-10T07:00:00Z", "end": "2023-03-10T08:00:00Z"}`, calendar.DropBadStatus},
	} {
		in := `{"events": [{"uid": "1", "start": "2023-03-10", "end": "2023-03-11"}, ` + tc.event + `, {"uid": 2, "start": "2023-03-12", "end": "2023-03-13"}]}`
		got, drops, err := calendar.ParseJSON([]byte(in), calendar.Limits{})
		if err != nil || len(got) != 2 || got[0].UID != "1" || got[1].UID != "2" {
			t.Errorf("%s: kept %+v, %v", tc.name, got, err)
		}
		if drops.Total() != 1 || drops.Count[tc.reason] != 1 || !strings.HasPrefix(drops.First, "event 2: ") {
			t.Errorf("%s: drops %v (%q), want one %s", tc.name, drops.Count, drops.First, tc.reason)
		}
	}
}

func TestParseJSONRefusesWhatIsNoEventList(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "[]", `[{"start": "2023-03-10"}]`, `{"items": []}`, `{"events": {}}`, `{"events": "x"}`, `{"events": [}`, "<html>"} {
		if _, _, err := calendar.ParseJSON([]byte(in), calendar.Limits{}); !errors.Is(err, calendar.ErrNotEvents) {
			t.Errorf("%q: %v", in, err)
		}
	}
	if got, _, err := calendar.ParseJSON([]byte(`{"events": []}`), calendar.Limits{}); err != nil || len(got) != 0 {
		t.Errorf("no events: %v", err)
	}
}

func TestParseJSONKeepsAtMostMaxEvents(t *testing.T) {
	t.Parallel()
	var parts []string
	for i := range 7 {
		parts = append(parts, fmt.Sprintf(`{"uid": %d, "start": "2023-03-10", "end": "2023-03-11"}`, i))
	}
	got, drops, err := calendar.ParseJSON([]byte(`{"events": [`+strings.Join(parts, ",")+`]}`), calendar.Limits{MaxEvents: 5})
	if err != nil || len(got) != 5 || drops.Count[calendar.DropTooMany] != 2 {
		t.Errorf("%d events, drops %v, %v", len(got), drops.Count, err)
	}
}
