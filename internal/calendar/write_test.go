package calendar_test

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	ics "github.com/arran4/golang-ical"
	goical "github.com/emersion/go-ical"

	"github.com/untis-partner/server/internal/calendar"
)

var stamp = time.Date(2023, 3, 9, 12, 30, 0, 0, time.UTC)

func utc(s string) calendar.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return calendar.Time{T: t.UTC(), Kind: calendar.KindUTC}
}

func floating(s string) calendar.Time {
	t, err := time.Parse("2006-01-02T15:04:05", s)
	if err != nil {
		panic(err)
	}
	return calendar.Time{T: t, Kind: calendar.KindFloating}
}

func date(s string) calendar.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return calendar.Time{T: t, Kind: calendar.KindDate}
}

// tricky texts: everything RFC 5545 escapes, umlauts and other multi-byte characters at every
// offset of a fold, and long enough to be folded several times.
var trickyTexts = []string{
	"Mathematik, Gruppe A; Raum \\ 101",
	"Prüfung: Ä Ö Ü ä ö ü ß – „Zitat“ €100",
	"Zeile eins\nZeile zwei\n\nZeile vier; mit, allem \\n wörtlich",
	strings.Repeat("ä", 200),
	strings.Repeat("€", 101) + strings.Repeat("😀", 50),
	"x" + strings.Repeat("😀ab€", 40),
	strings.Repeat(",;\\", 60),
}

func sampleEvents() []calendar.Event {
	var events []calendar.Event
	for i, text := range trickyTexts {
		events = append(events, calendar.Event{
			UID:     strings.Repeat("1", i+1) + "-lesson, part; " + string(rune('a'+i)),
			Start:   utc("2023-03-10T07:00:00Z"),
			End:     utc("2023-03-10T07:50:00Z"),
			Status:  []string{"", calendar.StatusConfirmed, calendar.StatusCancelled, calendar.StatusTentative}[i%4],
			Summary: text, Location: "Raum " + text, Description: text + "\n" + text,
		})
	}
	events = append(events,
		calendar.Event{UID: "900", Start: floating("2023-03-10T08:00:00"), End: floating("2023-03-10T08:50:00"), Summary: "local"},
		calendar.Event{UID: "901-day", Start: date("2023-03-13"), End: date("2023-03-14"), Summary: "Wandertag"},
	)
	return events
}

// checkWellFormed checks what RFC 5545 asks of the octets: CRLF after every line and nowhere
// else, no physical line over 75 octets, no UTF-8 sequence split by a fold, VERSION and PRODID,
// and UID, DTSTAMP, DTSTART and DTEND in every VEVENT.
func checkWellFormed(t testing.TB, out []byte) {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Fatal("the calendar does not end with CRLF")
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
	for i, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			t.Fatalf("line %d holds a bare CR or LF: %q", i+1, l)
		}
		if len(l) > 75 {
			t.Fatalf("line %d is %d octets: %q", i+1, len(l), l)
		}
		if !utf8.ValidString(l) {
			t.Fatalf("line %d splits a UTF-8 sequence: %q", i+1, l)
		}
		for _, r := range l {
			if r < 0x20 && r != '\t' || r == 0x7f {
				t.Fatalf("line %d holds a control character: %q", i+1, l)
			}
		}
	}
	unfolded := strings.Split(strings.ReplaceAll(strings.TrimSuffix(string(out), "\r\n"), "\r\n ", ""), "\r\n")
	if len(unfolded) < 5 || unfolded[0] != "BEGIN:VCALENDAR" || unfolded[1] != "VERSION:2.0" || !strings.HasPrefix(unfolded[2], "PRODID:") ||
		unfolded[len(unfolded)-1] != "END:VCALENDAR" {
		t.Fatalf("not a VCALENDAR with VERSION and PRODID first:\n%s", out)
	}
	var inEvent bool
	seen := map[string]int{}
	for _, l := range unfolded {
		switch {
		case l == "BEGIN:VEVENT":
			inEvent, seen = true, map[string]int{}
		case l == "END:VEVENT":
			for _, p := range []string{"UID", "DTSTAMP", "DTSTART", "DTEND"} {
				if seen[p] != 1 {
					t.Fatalf("a VEVENT has %s %d times", p, seen[p])
				}
			}
			inEvent = false
		case inEvent:
			name, _, _ := strings.Cut(l, ":")
			name, _, _ = strings.Cut(name, ";")
			seen[name]++
		}
	}
}

func write(events []calendar.Event) []byte {
	var buf bytes.Buffer
	calendar.Write(&buf, events, stamp)
	return buf.Bytes()
}

// The answer is well-formed iCalendar, and two independent parsers read back exactly what was
// written: escaping and folding round-trip umlauts, commas, semicolons, backslashes and
// newlines.
func TestWriteIsWellFormedICalendarThatOtherParsersRead(t *testing.T) {
	t.Parallel()
	events := sampleEvents()
	out := write(events)
	checkWellFormed(t, out)

	// arran4/golang-ical, in its strict default mode.
	cal, err := ics.ParseCalendar(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("golang-ical: %v\n%s", err, out)
	}
	got := cal.Events()
	if len(got) != len(events) {
		t.Fatalf("golang-ical read %d events, want %d", len(got), len(events))
	}
	for i, e := range events {
		g := got[i]
		prop := func(p ics.ComponentProperty) string {
			if v := g.GetProperty(p); v != nil {
				return v.Value
			}
			return ""
		}
		if g.Id() != e.UID || prop(ics.ComponentPropertySummary) != e.Summary || prop(ics.ComponentPropertyLocation) != e.Location ||
			prop(ics.ComponentPropertyDescription) != e.Description || prop(ics.ComponentPropertyStatus) != e.Status {
			t.Errorf("golang-ical event %d: uid %q summary %q location %q description %q status %q, want %+v", i, g.Id(),
				prop(ics.ComponentPropertySummary), prop(ics.ComponentPropertyLocation), prop(ics.ComponentPropertyDescription),
				prop(ics.ComponentPropertyStatus), e)
		}
		if e.Start.Kind == calendar.KindUTC {
			start, err := g.GetStartAt()
			end, err2 := g.GetEndAt()
			if err != nil || err2 != nil || !start.Equal(e.Start.T) || !end.Equal(e.End.T) {
				t.Errorf("golang-ical event %d: %v-%v (%v %v), want %v-%v", i, start, end, err, err2, e.Start.T, e.End.T)
			}
		}
		if st, err := g.GetDtStampTime(); err != nil || !st.Equal(stamp) {
			t.Errorf("golang-ical event %d: DTSTAMP %v %v", i, st, err)
		}
	}
	if e := got[len(got)-1]; !strings.Contains(e.GetProperty(ics.ComponentPropertyDtStart).Value, "20230313") ||
		e.GetProperty(ics.ComponentPropertyDtStart).ICalParameters["VALUE"][0] != "DATE" {
		t.Errorf("all-day event: %+v", e.GetProperty(ics.ComponentPropertyDtStart))
	}

	// emersion/go-ical: a decoder of its own, with typed TEXT values.
	dec, err := goical.NewDecoder(bytes.NewReader(out)).Decode()
	if err != nil {
		t.Fatalf("go-ical: %v", err)
	}
	if v := dec.Props.Get(goical.PropVersion); v == nil || v.Value != "2.0" || dec.Props.Get(goical.PropProductID) == nil {
		t.Errorf("go-ical: VERSION/PRODID %+v", dec.Props)
	}
	ev := dec.Events()
	if len(ev) != len(events) {
		t.Fatalf("go-ical read %d events", len(ev))
	}
	for i, e := range events {
		text := func(name string) string {
			p := ev[i].Props.Get(name)
			if p == nil {
				return ""
			}
			s, err := p.Text()
			if err != nil {
				t.Errorf("go-ical event %d %s: %v", i, name, err)
			}
			return s
		}
		if text(goical.PropUID) != e.UID || text(goical.PropSummary) != e.Summary || text(goical.PropLocation) != e.Location ||
			text(goical.PropDescription) != e.Description {
			t.Errorf("go-ical event %d: %q %q %q, want %+v", i, text(goical.PropUID), text(goical.PropSummary), text(goical.PropDescription), e)
		}
		start, err := ev[i].DateTimeStart(time.UTC)
		end, err2 := ev[i].DateTimeEnd(time.UTC)
		if err != nil || err2 != nil || !start.Equal(e.Start.T) || !end.Equal(e.End.T) {
			t.Errorf("go-ical event %d: %v-%v (%v %v), want %v-%v", i, start, end, err, err2, e.Start.T, e.End.T)
		}
	}

	// And our own parser reads it back unchanged.
	back, drops, err := calendar.ParseICal(out, calendar.Limits{})
	if err != nil || drops.Total() != 0 || len(back) != len(events) {
		t.Fatalf("ParseICal: %d events, drops %v, %v", len(back), drops, err)
	}
	for i := range events {
		if back[i] != events[i] {
			t.Errorf("round trip %d: %+v, want %+v", i, back[i], events[i])
		}
	}
}

// Folding cuts at 75 octets at most, never inside a character, whatever the characters' widths
// and wherever the line starts.
func TestWriteFoldsEveryLengthWithoutSplittingCharacters(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"a", "ä", "€", "😀", "a€😀ä"} {
		for n := 0; n < 120; n++ {
			text := strings.Repeat("x", n%7) + strings.Repeat(unit, n)
			out := write([]calendar.Event{{UID: "1", Start: utc("2023-03-10T07:00:00Z"), End: utc("2023-03-10T08:00:00Z"), Description: text}})
			checkWellFormed(t, out)
			back, _, err := calendar.ParseICal(out, calendar.Limits{})
			if err != nil || len(back) != 1 || back[0].Description != text {
				t.Fatalf("%d × %q: read back %+v %v", n, unit, back, err)
			}
		}
	}
}

// No events: still a whole, valid calendar (what the platform gets when the app fails).
func TestWriteEmptyCalendar(t *testing.T) {
	t.Parallel()
	out := write(nil)
	checkWellFormed(t, out)
	want := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:" + calendar.ProdID + "\r\nCALSCALE:GREGORIAN\r\nEND:VCALENDAR\r\n"
	if string(out) != want {
		t.Errorf("empty calendar:\n%q\nwant\n%q", out, want)
	}
	if cal, err := ics.ParseCalendar(bytes.NewReader(out)); err != nil || len(cal.Events()) != 0 {
		t.Errorf("golang-ical: %v", err)
	}
}
