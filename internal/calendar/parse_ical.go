package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	_ "time/tzdata" // TZIDs resolve in a container without a zone database too
)

// Limits bound what is taken from the app's answer.
type Limits struct {
	// MaxEvents is how many events are kept; the rest are dropped (too_many). 0: no bound.
	MaxEvents int
}

// maxDepth bounds how deeply components may nest (VCALENDAR > VEVENT > VALARM is three).
const maxDepth = 16

// ErrNotCalendar is returned for an answer that holds no iCalendar object (no BEGIN:VCALENDAR),
// or one whose structure cannot be followed.
var ErrNotCalendar = errors.New("not an iCalendar object")

// ParseICal reads the app's iCalendar answer (RFC 5545) and returns its checked VEVENTs in
// order. It is lenient where leniency cannot mislead (bare LF line ends, lower-case names, a
// DATE value without VALUE=DATE) and drops each event it cannot take, with the reason; only an
// answer with no VCALENDAR at all is an error. It reads in one pass, without recursion, and
// keeps only the properties of events, so its time and memory grow with the input's size only.
// Components other than VEVENT (VTIMEZONE, VTODO, VALARM inside an event, ...) are skipped.
func ParseICal(data []byte, lim Limits) ([]Event, Drops, error) {
	p := icalParser{lim: lim}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // a byte order mark
	for len(data) > 0 {
		var l string
		l, data = nextLine(data)
		p.lineNo++
		if l == "" {
			continue
		}
		if err := p.line(l); err != nil {
			return nil, p.drops, err
		}
	}
	if p.cur != nil {
		p.drops.add(DropMalformed, fmt.Sprintf("event %d has no END:VEVENT", p.n))
	}
	if !p.sawCalendar {
		return nil, p.drops, ErrNotCalendar
	}
	return p.events, p.drops, nil
}

// nextLine returns the first logical line of data, unfolded (a line break followed by a space or
// a tab continues the line), and the rest.
func nextLine(data []byte) (string, []byte) {
	end := physicalEnd(data)
	first := data[:end]
	rest := skipBreak(data[end:])
	if len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return string(first), rest
	}
	var b strings.Builder
	b.Write(first)
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
		end := physicalEnd(rest)
		b.Write(rest[:end])
		rest = skipBreak(rest[end:])
	}
	return b.String(), rest
}

// physicalEnd is the length of the first physical line of data, without its CRLF or LF.
func physicalEnd(data []byte) int {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		i = len(data)
	}
	if i > 0 && data[i-1] == '\r' {
		i--
	}
	return i
}

func skipBreak(data []byte) []byte {
	if len(data) > 0 && data[0] == '\r' {
		data = data[1:]
	}
	if len(data) > 0 && data[0] == '\n' {
		data = data[1:]
	}
	return data
}

type icalParser struct {
	lim         Limits
	lineNo      int
	sawCalendar bool
	stack       []string // the open components, outermost first
	events      []Event
	drops       Drops
	n           int        // events seen
	cur         *icalEvent // the VEVENT being read, if any
	curDepth    int        // len(stack) inside cur
}

// icalEvent is a VEVENT as read: the properties we use, and the first reason to drop it.
type icalEvent struct {
	props [numProps]icalProp
	bad   *dropError
}

type icalProp struct {
	set             bool
	tzid, valueType string
	value           string
}

// The properties of an event that are read, each at most once.
const (
	propDTStart = iota
	propDTEnd
	propUID
	propStatus
	propSummary
	propLocation
	propDescription
	numProps
)

var (
	eventProps = map[string]int{
		"DTSTART": propDTStart, "DTEND": propDTEnd, "UID": propUID, "STATUS": propStatus, "SUMMARY": propSummary,
		"LOCATION": propLocation, "DESCRIPTION": propDescription,
	}
	// An event with one of these recurs, and is dropped.
	recurrenceProps = map[string]bool{"RRULE": true, "RDATE": true, "EXRULE": true, "RECURRENCE-ID": true}
)

func (p *icalParser) line(l string) error {
	name, params, value, err := splitContentLine(l)
	if err != nil {
		if p.cur != nil && p.cur.bad == nil {
			p.cur.bad = drop(DropMalformed, "line %d: %v", p.lineNo, err)
		}
		return nil // outside an event a broken line is skipped
	}
	switch name {
	case "BEGIN":
		comp := strings.ToUpper(value)
		if len(p.stack) == 0 && comp != "VCALENDAR" {
			return nil // something before or between calendars
		}
		if len(p.stack) >= maxDepth {
			return fmt.Errorf("%w: components nest more than %d deep (line %d)", ErrNotCalendar, maxDepth, p.lineNo)
		}
		p.stack = append(p.stack, comp)
		if comp == "VCALENDAR" && len(p.stack) == 1 {
			p.sawCalendar = true
		}
		if comp == "VEVENT" && len(p.stack) == 2 && p.stack[0] == "VCALENDAR" {
			p.n++
			p.cur, p.curDepth = &icalEvent{}, len(p.stack)
		}
	case "END":
		comp := strings.ToUpper(value)
		at := -1
		for i := len(p.stack) - 1; i >= 0; i-- {
			if p.stack[i] == comp {
				at = i
				break
			}
		}
		if at < 0 {
			if p.cur != nil && p.cur.bad == nil {
				p.cur.bad = drop(DropMalformed, "line %d: END:%s without its BEGIN", p.lineNo, comp)
			}
			return nil
		}
		if p.cur != nil && at < p.curDepth-1 {
			// The calendar ends around an event that was never ended.
			p.drops.add(DropMalformed, fmt.Sprintf("event %d has no END:VEVENT", p.n))
			p.cur = nil
		}
		if p.cur != nil && at == p.curDepth-1 {
			p.endEvent()
		}
		p.stack = p.stack[:at]
	default:
		if p.cur == nil || len(p.stack) != p.curDepth {
			return nil // a calendar property, or one of a component we skip
		}
		p.cur.set(p.lineNo, name, params, value)
	}
	return nil
}

func (e *icalEvent) set(lineNo int, name string, params icalProp, value string) {
	if e.bad != nil {
		return
	}
	if recurrenceProps[name] {
		e.bad = drop(DropRecurring, "line %d: %s: recurring events are not taken; send each occurrence as an event", lineNo, name)
		return
	}
	i, ok := eventProps[name]
	if !ok {
		return
	}
	if e.props[i].set {
		e.bad = drop(DropDuplicateProperty, "line %d: a second %s", lineNo, name)
		return
	}
	params.set, params.value = true, value
	e.props[i] = params
}

// endEvent checks the event just ended and keeps it, or counts it as dropped.
func (p *icalParser) endEvent() {
	e := p.cur
	p.cur = nil
	if p.lim.MaxEvents > 0 && len(p.events) >= p.lim.MaxEvents {
		p.drops.add(DropTooMany, fmt.Sprintf("more than %d events", p.lim.MaxEvents))
		return
	}
	if e.bad != nil {
		p.drops.add(e.bad.reason, fmt.Sprintf("event %d: %s", p.n, e.bad.detail))
		return
	}
	ev, bad := e.event()
	if bad != nil {
		p.drops.add(bad.reason, fmt.Sprintf("event %d: %s", p.n, bad.detail))
		return
	}
	p.events = append(p.events, ev)
}

func (e *icalEvent) event() (Event, *dropError) {
	var ev Event
	start, end := e.props[propDTStart], e.props[propDTEnd]
	if !start.set {
		return ev, drop(DropMissingStart, "no DTSTART")
	}
	if !end.set {
		return ev, drop(DropMissingEnd, "no DTEND (DURATION is not taken)")
	}
	var bad *dropError
	if ev.Start, bad = icalTime("DTSTART", start); bad != nil {
		return ev, bad
	}
	if ev.End, bad = icalTime("DTEND", end); bad != nil {
		return ev, bad
	}
	ev.UID = unescapeText(e.props[propUID].value)
	ev.Status = e.props[propStatus].value
	ev.Summary = unescapeText(e.props[propSummary].value)
	ev.Location = unescapeText(e.props[propLocation].value)
	ev.Description = unescapeText(e.props[propDescription].value)
	if bad := ev.check(); bad != nil {
		return ev, bad
	}
	return ev, nil
}

// icalTime reads a DTSTART or DTEND: a DATE (VALUE=DATE, or eight digits), a UTC DATE-TIME
// (…Z), a DATE-TIME with a TZID (an IANA zone name; turned into UTC), or a floating DATE-TIME.
func icalTime(name string, p icalProp) (Time, *dropError) {
	v := strings.TrimSpace(p.value)
	vt := strings.ToUpper(p.valueType)
	switch {
	case vt == "DATE" || vt == "" && len(v) == len(dateLayout):
		t, err := time.Parse(dateLayout, v)
		if err != nil || len(v) != len(dateLayout) {
			return Time{}, drop(DropBadTime, "%s is not a DATE (YYYYMMDD)", name)
		}
		return Time{T: t, Kind: KindDate}, nil
	case vt != "" && vt != "DATE-TIME":
		return Time{}, drop(DropBadTime, "%s has VALUE=%s; only DATE and DATE-TIME are taken", name, vt)
	}
	utc := strings.HasSuffix(v, "Z") || strings.HasSuffix(v, "z")
	if utc {
		v = v[:len(v)-1]
	}
	t, err := time.Parse(floatingLayout, v)
	if err != nil || len(v) != len(floatingLayout) {
		return Time{}, drop(DropBadTime, "%s is not a DATE-TIME (YYYYMMDDTHHMMSS, optionally Z)", name)
	}
	switch {
	case utc:
		return Time{T: t, Kind: KindUTC}, nil
	case p.tzid != "":
		loc, err := loadZone(p.tzid)
		if err != nil {
			return Time{}, drop(DropUnknownZone, "%s has TZID %q, which is not a known IANA time zone", name, truncate(p.tzid, 64))
		}
		local := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
		return Time{T: local.UTC(), Kind: KindUTC}, nil
	}
	return Time{T: t, Kind: KindFloating}, nil
}

// loadZone resolves an IANA zone name ("Europe/Vienna"; RFC 5545 lets a globally unique TZID
// start with "/"). time.LoadLocation refuses names that could leave the zone database.
// Zones are looked up once per name and process: time.LoadLocation reads and parses the zone
// database each time, and an app's calendar names the same zone on every event (5,000 events
// with a TZID cost ~160 ms of CPU without this). Unknown names are remembered too. The cache is
// bounded: names are the app's input.
func loadZone(tzid string) (*time.Location, error) {
	name := strings.TrimPrefix(tzid, "/")
	if name == "" || name == "Local" || len(name) > 64 {
		return nil, errors.New("not an IANA zone")
	}
	zoneCache.Lock()
	z, ok := zoneCache.m[name]
	zoneCache.Unlock()
	if ok {
		return z.loc, z.err
	}
	loc, err := time.LoadLocation(name)
	zoneCache.Lock()
	if len(zoneCache.m) < maxCachedZones {
		zoneCache.m[name] = zoneLookup{loc, err}
	}
	zoneCache.Unlock()
	return loc, err
}

// maxCachedZones bounds zoneCache; the IANA database has about 600 names.
const maxCachedZones = 1024

type zoneLookup struct {
	loc *time.Location
	err error
}

var zoneCache = struct {
	sync.Mutex
	m map[string]zoneLookup
}{m: map[string]zoneLookup{}}

func truncate(s string, n int) string {
	if len(s) > n {
		return cleanText(s, n) + "…"
	}
	return s
}

// splitContentLine splits "NAME;PARAM=v;PARAM="q":value" (RFC 5545 §3.1). Of the parameters only
// TZID and VALUE are kept; a quoted value may hold ; : and ,.
func splitContentLine(l string) (name string, params icalProp, value string, err error) {
	i := 0
	for i < len(l) && (l[i] >= 'A' && l[i] <= 'Z' || l[i] >= 'a' && l[i] <= 'z' || l[i] >= '0' && l[i] <= '9' || l[i] == '-') {
		i++
	}
	if i == 0 {
		return "", params, "", errors.New("no property name")
	}
	name = strings.ToUpper(l[:i])
	for i < len(l) && l[i] == ';' {
		i++
		j := i
		for j < len(l) && l[j] != '=' && l[j] != ';' && l[j] != ':' {
			j++
		}
		if j == len(l) || l[j] != '=' || j == i {
			return "", params, "", fmt.Errorf("%s: a parameter without a name or value", name)
		}
		pname := strings.ToUpper(l[i:j])
		i = j + 1
		// One or more values, comma-separated; each quoted or plain.
		for {
			var v string
			if i < len(l) && l[i] == '"' {
				k := strings.IndexByte(l[i+1:], '"')
				if k < 0 {
					return "", params, "", fmt.Errorf("%s: an unterminated quoted parameter", name)
				}
				v, i = l[i+1:i+1+k], i+2+k
			} else {
				k := i
				for k < len(l) && l[k] != ';' && l[k] != ':' && l[k] != ',' && l[k] != '"' {
					k++
				}
				if k < len(l) && l[k] == '"' {
					return "", params, "", fmt.Errorf("%s: a double quote inside a parameter", name)
				}
				v, i = l[i:k], k
			}
			switch pname {
			case "TZID":
				params.tzid = v
			case "VALUE":
				params.valueType = v
			}
			if i < len(l) && l[i] == ',' {
				i++
				continue
			}
			break
		}
	}
	if i >= len(l) || l[i] != ':' {
		return "", params, "", fmt.Errorf("%s: no colon before the value", name)
	}
	return name, params, l[i+1:], nil
}

// unescapeText reads a TEXT value (RFC 5545 §3.3.11): \\ \; \, \n \N. Any other backslash is kept
// as it is, since that is what a sender that forgot to escape meant.
func unescapeText(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch n := s[i+1]; n {
		case '\\', ';', ',':
			b.WriteByte(n)
			i++
		case 'n', 'N':
			b.WriteByte('\n')
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
