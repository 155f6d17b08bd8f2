package calendar

import (
	"bytes"
	"strings"
	"time"
	"unicode/utf8"
)

// ProdID is the PRODID of every calendar the server writes.
const ProdID = "-//Untis partner-app server//Calendar API//EN"

// ContentType is the media type of the answer to the platform.
const ContentType = "text/calendar; charset=utf-8"

// maxLine is RFC 5545's limit of a content line, in octets, without its CRLF (§3.1).
const maxLine = 75

// Write writes events as one iCalendar object (RFC 5545): CRLF line ends, lines folded at 75
// octets without splitting a UTF-8 sequence, TEXT values escaped, VERSION and PRODID, and UID and
// DTSTAMP (stamp, in UTC) on every VEVENT. Every event must have a UID (finish gives them one).
// No events is a calendar without VEVENT: the empty answer.
func Write(buf *bytes.Buffer, events []Event, stamp time.Time) {
	buf.Grow(128 + len(events)*192)
	line(buf, "BEGIN:VCALENDAR")
	line(buf, "VERSION:2.0")
	line(buf, "PRODID:"+ProdID)
	line(buf, "CALSCALE:GREGORIAN")
	dtstamp := "DTSTAMP:" + stamp.UTC().Format(utcLayout)
	var scratch []byte
	for i := range events {
		e := &events[i]
		line(buf, "BEGIN:VEVENT")
		scratch = textLine(buf, scratch, "UID:", e.UID)
		line(buf, dtstamp)
		line(buf, "DTSTART"+formatTime(e.Start))
		line(buf, "DTEND"+formatTime(e.End))
		if e.Status != "" {
			line(buf, "STATUS:"+e.Status)
		}
		if e.Summary != "" {
			scratch = textLine(buf, scratch, "SUMMARY:", e.Summary)
		}
		if e.Location != "" {
			scratch = textLine(buf, scratch, "LOCATION:", e.Location)
		}
		if e.Description != "" {
			scratch = textLine(buf, scratch, "DESCRIPTION:", e.Description)
		}
		line(buf, "END:VEVENT")
	}
	line(buf, "END:VCALENDAR")
}

// Layouts of RFC 5545 DATE and DATE-TIME values.
const (
	dateLayout     = "20060102"
	floatingLayout = "20060102T150405"
	utcLayout      = "20060102T150405Z"
)

// formatTime is a DTSTART or DTEND after its name: the parameters and the value.
func formatTime(t Time) string {
	if t.Kind == KindDate {
		return ";VALUE=DATE:" + formatValue(t)
	}
	return ":" + formatValue(t)
}

func formatValue(t Time) string {
	switch t.Kind {
	case KindDate:
		return t.T.Format(dateLayout)
	case KindUTC:
		return t.T.UTC().Format(utcLayout)
	}
	return t.T.Format(floatingLayout)
}

// textEscaper escapes a TEXT value (RFC 5545 §3.3.11). cleanText has already made every line
// break "\n" and removed the other control characters.
var textEscaper = strings.NewReplacer(`\`, `\\`, `;`, `\;`, `,`, `\,`, "\n", `\n`)

// textLine writes name and the escaped value as one folded line. scratch is reused between calls.
func textLine(buf *bytes.Buffer, scratch []byte, name, value string) []byte {
	scratch = append(scratch[:0], name...)
	if strings.ContainsAny(value, "\\;,\n") {
		value = textEscaper.Replace(value)
	}
	scratch = append(scratch, value...)
	fold(buf, scratch)
	return scratch
}

func line(buf *bytes.Buffer, s string) {
	if len(s) <= maxLine {
		buf.WriteString(s)
		buf.WriteString("\r\n")
		return
	}
	fold(buf, []byte(s))
}

// fold writes one content line, folded (RFC 5545 §3.1): no physical line is longer than 75
// octets; a continuation line starts with one space, which counts. A cut never falls inside a
// UTF-8 sequence.
func fold(buf *bytes.Buffer, l []byte) {
	limit := maxLine
	for len(l) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(l[cut]) {
			cut--
		}
		buf.Write(l[:cut])
		buf.WriteString("\r\n ")
		l = l[cut:]
		limit = maxLine - 1 // the leading space of the continuation line
	}
	buf.Write(l)
	buf.WriteString("\r\n")
}
