package calendar_test

import (
	"bytes"
	"testing"

	"github.com/untis-partner/server/internal/calendar"
)

// roundTrip writes what was parsed and reads it back: the answer is always well-formed, and
// reading it gives the same events (the writer and the parser agree on every value).
func roundTrip(t *testing.T, events []calendar.Event) {
	for i := range events {
		if events[i].UID == "" {
			events[i].UID = "1"
		}
	}
	// Duplicate UIDs are the service's to drop; keep the test about writing and reading.
	seen := map[string]bool{}
	kept := events[:0]
	for _, e := range events {
		if !seen[e.UID] {
			seen[e.UID] = true
			kept = append(kept, e)
		}
	}
	var buf bytes.Buffer
	calendar.Write(&buf, kept, stamp)
	checkWellFormed(t, buf.Bytes())
	back, drops, err := calendar.ParseICal(buf.Bytes(), calendar.Limits{})
	if err != nil || drops.Total() != 0 || len(back) != len(kept) {
		t.Fatalf("our own answer read back: %d of %d events, drops %v %q, %v\n%s", len(back), len(kept), drops.Count, drops.First, err, buf.Bytes())
	}
	for i := range kept {
		if back[i] != kept[i] {
			t.Fatalf("event %d changed: %+v, was %+v", i, back[i], kept[i])
		}
	}
}

// Whatever an app sends, parsing does not panic, and what it keeps is written well-formed.
func FuzzParseICal(f *testing.F) {
	for _, seed := range []string{
		vcal(with("UID:1-a", "SUMMARY:Mathe\\, 1A", "LOCATION:R 1", "DESCRIPTION:a\\nb", "STATUS:tentative")),
		vcal(ev("DTSTART;TZID=Europe/Vienna:20230310T080000", "DTEND;TZID=Europe/Vienna:20230310T090000"),
			ev("DTSTART;VALUE=DATE:20230313", "DTEND;VALUE=DATE:20230314", "SUMMARY:ä\r\n  ö")),
		"BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;X=\"a:b\";Y=c,d:20230310T070000Z\nDTEND:20230310T080000Z\nEND:VEVENT\nEND:VCALENDAR",
		"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY;LANGUAGE=de:\\\r\n END:VEVENT\r\n",
		string(write(sampleEvents())),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		events, _, err := calendar.ParseICal(data, calendar.Limits{MaxEvents: 100})
		if err != nil {
			return
		}
		roundTrip(t, events)
	})
}

func FuzzParseJSON(f *testing.F) {
	for _, seed := range []string{
		`{"events": [{"uid": 1, "start": "2023-03-10T08:00:00+01:00", "end": "2023-03-10T09:00:00+01:00", "summary": "ä,;\\\n"}]}`,
		`{"events": [{"start": "2023-03-10", "end": "2023-03-11"}, {"start": "2023-03-10T08:00:00", "end": "2023-03-10T09:00:00"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		events, _, err := calendar.ParseJSON(data, calendar.Limits{MaxEvents: 100})
		if err != nil {
			return
		}
		roundTrip(t, events)
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"tenantId":"456800","user":"b953ec5f-598a-4305-87c1-d4b5f95a28c7","startDate":"2023-03-10","endDate":"2023-03-13"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := calendar.ParseRequest(body, 62)
		if err != nil {
			return
		}
		if r.Days() < 1 || r.Days() > 62 || r.TenantID == "" || r.User == "" {
			t.Fatalf("accepted %+v", r)
		}
	})
}
