package calendar_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/calendar"
)

// largeICal is an app's answer with n events of a school week, with texts to escape and fold.
func largeICal(n int) []byte {
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//app//EN\r\n")
	start := time.Date(2023, 3, 6, 7, 0, 0, 0, time.UTC)
	for i := range n {
		s := start.Add(time.Duration(i%50)*time.Hour).AddDate(0, 0, 7*(i/50))
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:%d-lesson\r\nDTSTART:%s\r\nDTEND:%s\r\nSTATUS:CONFIRMED\r\n", 100000+i,
			s.Format("20060102T150405Z"), s.Add(50*time.Minute).Format("20060102T150405Z"))
		fmt.Fprintf(&b, "SUMMARY:Mathematik\\, Gruppe %d\r\nLOCATION:Raum %d\\; Gebäude Süd\r\n", i%7, i%30)
		b.WriteString("DESCRIPTION:Übungen zu Kapitel 4\\nHausübung: Seite 12\\, Aufgaben 1-5\\; bitte mitbringen: Z\r\n irkel und Geodreieck\r\n")
		b.WriteString("END:VEVENT\r\n")
	}
	b.WriteString("END:VCALENDAR\r\n")
	return []byte(b.String())
}

// A large calendar (1,000 events) goes through whole: read, checked, written, well-formed.
func TestLargeCalendarOf1000Events(t *testing.T) {
	t.Parallel()
	in := largeICal(1000)
	events, drops, err := calendar.ParseICal(in, calendar.Limits{MaxEvents: calendar.DefaultMaxEvents})
	if err != nil || drops.Total() != 0 || len(events) != 1000 {
		t.Fatalf("%d events, drops %v %q, %v", len(events), drops.Count, drops.First, err)
	}
	if events[0].Description != "Übungen zu Kapitel 4\nHausübung: Seite 12, Aufgaben 1-5; bitte mitbringen: Zirkel und Geodreieck" {
		t.Errorf("description %q", events[0].Description)
	}
	out := write(events)
	checkWellFormed(t, out)
	if n := bytes.Count(out, []byte("BEGIN:VEVENT\r\n")); n != 1000 {
		t.Errorf("%d VEVENTs written", n)
	}
}

// BenchmarkLargeCalendar: reading an app's 1,000 events and writing the answer.
func BenchmarkLargeCalendar(b *testing.B) {
	in := largeICal(1000)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		events, _, err := calendar.ParseICal(in, calendar.Limits{MaxEvents: calendar.DefaultMaxEvents})
		if err != nil || len(events) != 1000 {
			b.Fatal(len(events), err)
		}
		buf.Reset()
		calendar.Write(&buf, events, stamp)
	}
}

func BenchmarkParseICal1000(b *testing.B) {
	in := largeICal(1000)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := calendar.ParseICal(in, calendar.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWrite1000(b *testing.B) {
	events, _, _ := calendar.ParseICal(largeICal(1000), calendar.Limits{})
	b.ReportAllocs()
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		calendar.Write(&buf, events, stamp)
	}
}

// BenchmarkParseICalWithZones: 1,000 events that name their zone (TZID), as many apps write
// them; the zone is looked up once, not per event.
func BenchmarkParseICalWithZones(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//app//EN\r\n")
	for i := range 1000 {
		fmt.Fprintf(&sb, "BEGIN:VEVENT\r\nUID:%d-lesson\r\nDTSTART;TZID=Europe/Vienna:20230306T%02d0000\r\n"+
			"DTEND;TZID=Europe/Vienna:20230306T%02d5000\r\nSUMMARY:Mathematik\r\nEND:VEVENT\r\n", 100000+i, 7+i%10, 7+i%10)
	}
	sb.WriteString("END:VCALENDAR\r\n")
	in := []byte(sb.String())
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		events, drops, err := calendar.ParseICal(in, calendar.Limits{})
		if err != nil || drops.Total() != 0 || len(events) != 1000 {
			b.Fatal(len(events), drops.First, err)
		}
	}
}
