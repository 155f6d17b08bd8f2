package calendar

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is the form of an event's start or end, as RFC 5545 knows them.
type Kind uint8

// The kinds of time. The form the app sent is kept: a UTC time stays UTC (a time with a zone is
// turned into UTC), a floating time stays floating (the school's local time, as the timetable
// is), and a date stays a date (an all-day event).
const (
	KindDate     Kind = iota + 1 // VALUE=DATE: 20230310
	KindUTC                      // 20230310T070000Z
	KindFloating                 // 20230310T080000, the wall-clock time wherever the school is
)

// Time is an event's start or end. For KindFloating and KindDate, T's clock reading is the
// value (its location is UTC and means nothing).
type Time struct {
	T    time.Time
	Kind Kind
}

// Status values an event may have (the platform's list; CONFIRMED is its default).
const (
	StatusConfirmed = "CONFIRMED"
	StatusCancelled = "CANCELLED"
	StatusTentative = "TENTATIVE"
)

// Bounds of an event's texts: longer ones are cut (at a character boundary), not refused.
const (
	MaxUIDLen         = 255
	MaxSummaryLen     = 1024
	MaxLocationLen    = 1024
	MaxDescriptionLen = 8192
)

// Event is one timetable entry, checked: Start and End of one kind with End after Start, UID
// empty (one is made up when written) or in the platform's form, Status empty (CONFIRMED) or one
// of the three, texts cleaned.
type Event struct {
	UID                            string
	Start, End                     Time
	Status                         string
	Summary, Location, Description string
}

// Why an event of the app is dropped (the label of calendar_events_dropped_total).
const (
	DropMissingStart      = "missing_dtstart"
	DropMissingEnd        = "missing_dtend"
	DropBadTime           = "bad_time"
	DropUnknownZone       = "unknown_timezone"
	DropEndNotAfterStart  = "end_not_after_start"
	DropMixedKinds        = "mixed_time_kinds"
	DropBadUID            = "bad_uid"
	DropDuplicateUID      = "duplicate_uid"
	DropBadStatus         = "bad_status"
	DropRecurring         = "recurring"
	DropDuplicateProperty = "duplicate_property"
	DropMalformed         = "malformed"
	DropTooMany           = "too_many"
)

// DropReasons lists every reason, for the metrics.
var DropReasons = []string{
	DropMissingStart, DropMissingEnd, DropBadTime, DropUnknownZone, DropEndNotAfterStart, DropMixedKinds,
	DropBadUID, DropDuplicateUID, DropBadStatus, DropRecurring, DropDuplicateProperty, DropMalformed, DropTooMany,
}

// Drops counts the app's events that were left out, by reason, and says what was wrong with the
// first one (for the log: one line per calendar, not one per event).
type Drops struct {
	Count map[string]int
	First string
}

func (d *Drops) add(reason, detail string) {
	if d.Count == nil {
		d.Count = map[string]int{}
	}
	d.Count[reason]++
	if d.First == "" {
		d.First = detail
	}
}

// Total is the number of events dropped.
func (d Drops) Total() int {
	n := 0
	for _, c := range d.Count {
		n += c
	}
	return n
}

// String lists the counts in a stable order: "bad_uid=2 missing_dtend=1".
func (d Drops) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(d.Count)) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k + "=" + strconv.Itoa(d.Count[k]))
	}
	return b.String()
}

// dropError is why one event is dropped.
type dropError struct{ reason, detail string }

func (e *dropError) Error() string { return e.reason + ": " + e.detail }

func drop(reason, format string, args ...any) *dropError {
	return &dropError{reason: reason, detail: fmt.Sprintf(format, args...)}
}

// check completes an event read from the app (either format): the times agree, the UID has the
// documented form, the status is allowed; texts are cleaned and cut.
func (e *Event) check() *dropError {
	if e.Start.Kind != e.End.Kind {
		return drop(DropMixedKinds, "DTSTART and DTEND are of different kinds (a date, a UTC time, a local time)")
	}
	if !e.End.T.After(e.Start.T) {
		return drop(DropEndNotAfterStart, "DTEND is not after DTSTART")
	}
	if e.UID != "" && !validUID(e.UID) {
		return drop(DropBadUID, "UID is not digits, optionally followed by - and text (at most %d bytes)", MaxUIDLen)
	}
	if e.Status != "" {
		switch s := strings.ToUpper(e.Status); s {
		case StatusConfirmed, StatusCancelled, StatusTentative:
			e.Status = s
		default:
			return drop(DropBadStatus, "STATUS is not CONFIRMED, CANCELLED or TENTATIVE")
		}
	}
	e.Summary = cleanText(e.Summary, MaxSummaryLen)
	e.Location = cleanText(e.Location, MaxLocationLen)
	e.Description = cleanText(e.Description, MaxDescriptionLen)
	return nil
}

// validUID reports whether uid has the platform's documented form: digits, optionally followed
// by "-" and text (no control characters).
func validUID(uid string) bool {
	if len(uid) > MaxUIDLen || !utf8.ValidString(uid) {
		return false
	}
	digits, rest, dash := strings.Cut(uid, "-")
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return false
	}
	if dash && (rest == "" || strings.ContainsFunc(rest, unicode.IsControl)) {
		return false
	}
	return true
}

// cleanText makes an app's text safe to write: valid UTF-8 (other bytes become U+FFFD), line
// breaks as "\n", no other control character than tab, at most max bytes (cut at a character).
func cleanText(s string, max int) string {
	clean := utf8.ValidString(s)
	for i := 0; clean && i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\n' && c != '\t' || c == 0x7f {
			clean = false
		}
	}
	if !clean {
		s = strings.ToValidUTF8(s, "\uFFFD")
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.Map(func(r rune) rune {
			switch {
			case r == '\r':
				return '\n'
			case r == '\n' || r == '\t':
				return r
			case r < 0x20 || r == 0x7f: // RFC 5545's CONTROL: ASCII controls only
				return -1
			}
			return r
		}, s)
	}
	if len(s) > max {
		s = s[:max]
		for len(s) > 0 && !utf8.ValidString(s) { // cut inside the last character: drop its bytes
			s = s[:len(s)-1]
		}
	}
	return s
}

// madeUpUID gives an event the app sent without UID one in the documented form, the same on
// every request for the same user and event: digits from a hash of the user and the event, then
// "-untis-partner".
func madeUpUID(tenantID, user string, e *Event) string {
	h := sha256.New()
	for _, s := range []string{tenantID, user, formatValue(e.Start), formatValue(e.End), e.Summary, e.Location} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	sum := h.Sum(nil)
	return strconv.FormatUint(binary.BigEndian.Uint64(sum[:8]), 10) + "-untis-partner"
}

// finish gives every event without one a UID and drops events whose UID another event already
// has (without RECURRENCE-ID, two events of one UID are one event told twice).
func finish(events []Event, tenantID, user string, drops *Drops) []Event {
	seen := make(map[string]struct{}, len(events))
	out := events[:0]
	for i := range events {
		e := events[i]
		if e.UID == "" {
			e.UID = madeUpUID(tenantID, user, &e)
		}
		if _, dup := seen[e.UID]; dup {
			drops.add(DropDuplicateUID, "UID "+strconv.Quote(e.UID)+" is used by an earlier event")
			continue
		}
		seen[e.UID] = struct{}{}
		out = append(out, e)
	}
	return out
}
