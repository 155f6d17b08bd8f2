package calendar_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/calendar"
)

// vcal wraps VEVENT bodies (each a list of lines) into a calendar with CRLF line ends.
func vcal(events ...[]string) string {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//app//EN\r\n")
	for _, e := range events {
		b.WriteString("BEGIN:VEVENT\r\n")
		for _, l := range e {
			b.WriteString(l + "\r\n")
		}
		b.WriteString("END:VEVENT\r\n")
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.String()
}

func ev(lines ...string) []string { return lines }

var okTimes = []string{"DTSTART:20230310T070000Z", "DTEND:20230310T075000Z"}

func with(lines ...string) []string { return append(append([]string{}, okTimes...), lines...) }

// Every form of time the platform may be given is read, and kept in its form: UTC, a zone's
// local time (turned into UTC), the school's floating local time, a date.
func TestParseICalReadsEveryFormOfTime(t *testing.T) {
	t.Parallel()
	in := vcal(
		ev("UID:1", "DTSTART:20230310T070000Z", "DTEND:20230310T075000Z"),
		ev("UID:2", "DTSTART;TZID=Europe/Vienna:20230310T080000", "DTEND;TZID=\"Europe/Vienna\":20230310T085000"),
		ev("UID:3", "DTSTART;TZID=/America/New_York:20230701T080000", "DTEND;TZID=America/New_York:20230701T090000"),
		ev("UID:4", "DTSTART:20230310T080000", "DTEND:20230310T085000"),
		ev("UID:5", "DTSTART;VALUE=DATE:20230313", "DTEND;VALUE=DATE:20230314"),
		ev("UID:6", "DTSTART:20230313", "DTEND:20230315"),
		ev("UID:7", "dtstart;value=date-time:20230310T070000z", "DtEnd:20230310T075000Z"),
	)
	got, drops, err := calendar.ParseICal([]byte(in), calendar.Limits{})
	if err != nil || drops.Total() != 0 {
		t.Fatalf("err %v, drops %v %s", err, drops, drops.First)
	}
	want := []struct {
		kind       calendar.Kind
		start, end string
	}{
		{calendar.KindUTC, "2023-03-10T07:00:00Z", "2023-03-10T07:50:00Z"},
		{calendar.KindUTC, "2023-03-10T07:00:00Z", "2023-03-10T07:50:00Z"}, // CET is UTC+1 in March
		{calendar.KindUTC, "2023-07-01T12:00:00Z", "2023-07-01T13:00:00Z"}, // EDT is UTC-4
		{calendar.KindFloating, "2023-03-10T08:00:00Z", "2023-03-10T08:50:00Z"},
		{calendar.KindDate, "2023-03-13T00:00:00Z", "2023-03-14T00:00:00Z"},
		{calendar.KindDate, "2023-03-13T00:00:00Z", "2023-03-15T00:00:00Z"},
		{calendar.KindUTC, "2023-03-10T07:00:00Z", "2023-03-10T07:50:00Z"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.UID != fmt.Sprint(i+1) || g.Start.Kind != w.kind || g.End.Kind != w.kind ||
			g.Start.T.Format(time.RFC3339) != w.start || g.End.T.Format(time.RFC3339) != w.end {
			t.Errorf("event %d: %+v, want %+v", i+1, g, w)
		}
	}
}

// Each event that cannot be taken is dropped with its reason, and every other event is kept.
func TestParseICalDropsInvalidEventsOneByOne(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		event  []string
		reason string
	}{
		{"no DTSTART", ev("UID:1", "DTEND:20230310T075000Z"), calendar.DropMissingStart},
		{"no DTEND", ev("UID:1", "DTSTART:20230310T070000Z"), calendar.DropMissingEnd},
		{"DURATION instead of DTEND", ev("UID:1", "DTSTART:20230310T070000Z", "DURATION:PT50M"), calendar.DropMissingEnd},
		{"DTEND before DTSTART", ev("DTSTART:20230310T080000Z", "DTEND:20230310T070000Z"), calendar.DropEndNotAfterStart},
		{"DTEND equal to DTSTART", ev("DTSTART:20230310T080000Z", "DTEND:20230310T080000Z"), calendar.DropEndNotAfterStart},
		{"date and time mixed", ev("DTSTART;VALUE=DATE:20230310", "DTEND:20230310T080000Z"), calendar.DropMixedKinds},
		{"UTC and floating mixed", ev("DTSTART:20230310T070000Z", "DTEND:20230310T080000"), calendar.DropMixedKinds},
		{"a day that does not exist", ev("DTSTART:20230230T070000Z", "DTEND:20230230T080000Z"), calendar.DropBadTime},
		{"an hour that does not exist", ev("DTSTART:20230310T250000Z", "DTEND:20230310T260000Z"), calendar.DropBadTime},
		{"ISO 8601 with dashes", ev("DTSTART:2023-03-10T07:00:00Z", "DTEND:2023-03-10T08:00:00Z"), calendar.DropBadTime},
		{"a PERIOD", ev("DTSTART;VALUE=PERIOD:20230310T070000Z/PT1H", "DTEND:20230310T080000Z"), calendar.DropBadTime},
		{"a date of seven digits", ev("DTSTART;VALUE=DATE:2023031", "DTEND;VALUE=DATE:20230311"), calendar.DropBadTime},
		{"an unknown TZID", ev("DTSTART;TZID=W. Europe Standard Time:20230310T080000", "DTEND;TZID=W. Europe Standard Time:20230310T090000"), calendar.DropUnknownZone},
		{"a TZID that climbs out", ev("DTSTART;TZID=../../../etc/passwd:20230310T080000", "DTEND:20230310T090000Z"), calendar.DropUnknownZone},
		{"TZID Local", ev("DTSTART;TZID=Local:20230310T080000", "DTEND;TZID=Local:20230310T090000"), calendar.DropUnknownZone},
		{"UID of letters", with("UID:abc"), calendar.DropBadUID},
		{"UID a UUID", with("UID:b953ec5f-598a-4305-87c1-d4b5f95a28c7"), calendar.DropBadUID},
		{"UID digits and a dash only", with("UID:123-"), calendar.DropBadUID},
		{"UID starting with a dash", with("UID:-123"), calendar.DropBadUID},
		{"UID too long", with("UID:1-" + strings.Repeat("x", 300)), calendar.DropBadUID},
		{"STATUS of a task", with("STATUS:COMPLETED"), calendar.DropBadStatus},
		{"STATUS misspelt", with("STATUS:CANCELED"), calendar.DropBadStatus},
		{"a recurring event", with("RRULE:FREQ=WEEKLY;COUNT=10"), calendar.DropRecurring},
		{"an occurrence of one", with("RECURRENCE-ID:20230317T070000Z"), calendar.DropRecurring},
		{"two DTSTARTs", with("DTSTART:20230310T060000Z"), calendar.DropDuplicateProperty},
		{"two SUMMARYs", with("SUMMARY:a", "SUMMARY:b"), calendar.DropDuplicateProperty},
		{"a line without a colon", with("SUMMARY Mathematik"), calendar.DropMalformed},
		{"a parameter cut off", with("LOCATION;ALTREP=\"cid:x:Raum 1"), calendar.DropMalformed},
		{"a parameter without a value", with("SUMMARY;LANGUAGE:x"), calendar.DropMalformed},
		{"a parameter with a quote inside", with("SUMMARY;X=a\"b:x"), calendar.DropMalformed},
		{"END of something never begun", with("END:VALARM"), calendar.DropMalformed},
	}
	good := with("UID:4711-good", "SUMMARY:kept")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, drops, err := calendar.ParseICal([]byte(vcal(good, tc.event, good[:2])), calendar.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if drops.Total() != 1 || drops.Count[tc.reason] != 1 || !strings.HasPrefix(drops.First, "event 2: ") {
				t.Errorf("drops %v (first %q), want one %s of event 2", drops.Count, drops.First, tc.reason)
			}
			if len(got) != 2 || got[0].UID != "4711-good" || got[0].Summary != "kept" || got[1].UID != "" {
				t.Errorf("kept %+v", got)
			}
		})
	}
}

// The structure is followed leniently where leniency cannot mislead: bare LF, folded lines with
// space or tab, a byte order mark, lower-case names, other components (skipped, with what is in
// them), and content around the calendar.
func TestParseICalIsLenientWhereItCannotMislead(t *testing.T) {
	t.Parallel()
	in := "\xef\xbb\xbfjunk before\n" +
		"begin:vcalendar\nVERSION:2.0\nX-WR-CALNAME:Stundenplan\n" +
		"BEGIN:VTIMEZONE\nTZID:Europe/Vienna\nBEGIN:STANDARD\nDTSTART:19701025T030000\nEND:STANDARD\nEND:VTIMEZONE\n" +
		"BEGIN:VEVENT\nUID:12-a\nDTSTART:20230310T070000Z\nDTEND:20230310T075000Z\n" +
		"SUMMARY:Mathe\n matik\n\t, Gruppe\\, A\\; B\\\\C\\nzwei\\Ndrei \\x\n" +
		"BEGIN:VALARM\nTRIGGER:-PT5M\nDTSTART:19990101T000000Z\nSUMMARY:not the event's\nEND:VALARM\n" +
		"X-CUSTOM;X-P=\"a;b:c\":value\nEND:VEVENT\n" +
		"BEGIN:VTODO\nUID:99\nDTSTART:20230310T070000Z\nEND:VTODO\n" +
		"END:VCALENDAR\nBEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:13\nDTSTART:20230311T070000Z\nDTEND:20230311T075000Z\nEND:VEVENT\nEND:VCALENDAR"
	got, drops, err := calendar.ParseICal([]byte(in), calendar.Limits{})
	if err != nil || drops.Total() != 0 {
		t.Fatalf("err %v drops %v %s", err, drops.Count, drops.First)
	}
	if len(got) != 2 || got[0].UID != "12-a" || got[0].Summary != "Mathematik, Gruppe, A; B\\C\nzwei\ndrei \\x" || got[1].UID != "13" {
		t.Errorf("events %+v", got)
	}
}

// An event never ended, or ended by the calendar's end, is dropped; the calendar's other events
// stay.
func TestParseICalDropsUnterminatedEvents(t *testing.T) {
	t.Parallel()
	in := "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:1\r\n" + strings.Join(okTimes, "\r\n") + "\r\nEND:VEVENT\r\n" +
		"BEGIN:VEVENT\r\nUID:2\r\n" + strings.Join(okTimes, "\r\n") + "\r\nEND:VCALENDAR\r\n" +
		"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:3\r\n" + strings.Join(okTimes, "\r\n") + "\r\n"
	got, drops, err := calendar.ParseICal([]byte(in), calendar.Limits{})
	if err != nil || len(got) != 1 || got[0].UID != "1" || drops.Count[calendar.DropMalformed] != 2 {
		t.Errorf("events %+v, drops %v, %v", got, drops.Count, err)
	}
}

// What is not an iCalendar object at all is an error (the whole answer is unusable); so is one
// nested beyond reason.
func TestParseICalRefusesWhatIsNoCalendar(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"empty":      "",
		"HTML":       "<!doctype html><html><body>Error 500</body></html>",
		"JSON":       `{"events": []}`,
		"a VEVENT":   "BEGIN:VEVENT\r\nUID:1\r\nEND:VEVENT\r\n",
		"NUL bytes":  strings.Repeat("\x00", 100),
		"deep nests": "BEGIN:VCALENDAR\r\n" + strings.Repeat("BEGIN:X\r\n", 20),
	} {
		if got, _, err := calendar.ParseICal([]byte(in), calendar.Limits{}); !errors.Is(err, calendar.ErrNotCalendar) || len(got) != 0 {
			t.Errorf("%s: %d events, err %v", name, len(got), err)
		}
	}
}

// Events past MaxEvents are dropped and counted, the first MaxEvents kept.
func TestParseICalKeepsAtMostMaxEvents(t *testing.T) {
	t.Parallel()
	var events [][]string
	for i := range 12 {
		events = append(events, with(fmt.Sprintf("UID:%d", i)))
	}
	got, drops, err := calendar.ParseICal([]byte(vcal(events...)), calendar.Limits{MaxEvents: 10})
	if err != nil || len(got) != 10 || got[9].UID != "9" || drops.Count[calendar.DropTooMany] != 2 {
		t.Errorf("%d events, drops %v, %v", len(got), drops.Count, err)
	}
}

// Texts are cleaned: bytes that are not UTF-8 become U+FFFD, control characters go, CR LF is
// one line break; over-long texts are cut at a character.
func TestParseICalCleansTexts(t *testing.T) {
	t.Parallel()
	in := vcal(with("SUMMARY:a\x00b\x07c\xffd\\r", "DESCRIPTION:"+strings.Repeat("ä", 5000), "LOCATION:Raum\t1"))
	got, _, err := calendar.ParseICal([]byte(in), calendar.Limits{})
	if err != nil || len(got) != 1 {
		t.Fatal(err)
	}
	e := got[0]
	if e.Summary != "abc\uFFFDd\\r" || e.Location != "Raum\t1" || len(e.Description) != calendar.MaxDescriptionLen ||
		e.Description != strings.Repeat("ä", calendar.MaxDescriptionLen/2) {
		t.Errorf("summary %q location %q description %d bytes", e.Summary, e.Location, len(e.Description))
	}
}
