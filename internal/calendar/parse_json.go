package calendar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrNotEvents is returned for a JSON answer that is not {"events": [...]}.
var ErrNotEvents = errors.New(`not a JSON object with an "events" array`)

// jsonEvent is one event of the JSON format. uid may be a string or a number.
type jsonEvent struct {
	UID         json.RawMessage `json:"uid"`
	Start       *string         `json:"start"`
	End         *string         `json:"end"`
	Status      string          `json:"status"`
	Summary     string          `json:"summary"`
	Location    string          `json:"location"`
	Description string          `json:"description"`
}

// ParseJSON reads the app's JSON answer: {"events": [{"uid", "start", "end", "status", "summary",
// "location", "description"}, ...]}. start and end are "2023-03-10" (an all-day event; end is
// the day after the last, as DTEND), "2023-03-10T08:00:00" (the school's local time) or RFC 3339
// with a zone ("2023-03-10T08:00:00+01:00", "...Z"; kept as UTC). Each event that cannot be
// taken is dropped with its reason; only an answer that is not such an object is an error.
func ParseJSON(data []byte, lim Limits) ([]Event, Drops, error) {
	var drops Drops
	var doc struct {
		Events *[]json.RawMessage `json:"events"`
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return nil, drops, ErrNotEvents
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Events == nil {
		return nil, drops, ErrNotEvents
	}
	raw := *doc.Events
	events := make([]Event, 0, min(len(raw), 1024))
	for i, r := range raw {
		if lim.MaxEvents > 0 && len(events) >= lim.MaxEvents {
			drops.add(DropTooMany, fmt.Sprintf("more than %d events", lim.MaxEvents))
			continue
		}
		ev, bad := jsonToEvent(r)
		if bad != nil {
			drops.add(bad.reason, fmt.Sprintf("event %d: %s", i+1, bad.detail))
			continue
		}
		events = append(events, ev)
	}
	return events, drops, nil
}

func jsonToEvent(r json.RawMessage) (Event, *dropError) {
	var je jsonEvent
	if err := json.Unmarshal(r, &je); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Event{}, drop(DropMalformed, "%s is not a string", typeErr.Field)
		}
		return Event{}, drop(DropMalformed, "not a JSON object")
	}
	ev := Event{Status: je.Status, Summary: je.Summary, Location: je.Location, Description: je.Description}
	switch {
	case je.Start == nil || *je.Start == "":
		return ev, drop(DropMissingStart, "no start")
	case je.End == nil || *je.End == "":
		return ev, drop(DropMissingEnd, "no end")
	}
	var bad *dropError
	if ev.Start, bad = jsonTime("start", *je.Start); bad != nil {
		return ev, bad
	}
	if ev.End, bad = jsonTime("end", *je.End); bad != nil {
		return ev, bad
	}
	if len(je.UID) > 0 && string(je.UID) != "null" {
		switch je.UID[0] {
		case '"':
			if err := json.Unmarshal(je.UID, &ev.UID); err != nil {
				return ev, drop(DropBadUID, "uid is not a string")
			}
		default:
			// A number: its digits, as written (4711, not 4.711e3).
			if _, err := strconv.ParseUint(string(je.UID), 10, 64); err != nil {
				return ev, drop(DropBadUID, "uid is not a string or a whole number")
			}
			ev.UID = string(je.UID)
		}
		if ev.UID == "" {
			return ev, drop(DropBadUID, "uid is empty")
		}
	}
	if bad := ev.check(); bad != nil {
		return ev, bad
	}
	return ev, nil
}

// jsonTime reads start or end: a date, a local date-time, or an RFC 3339 date-time with a zone.
func jsonTime(name, v string) (Time, *dropError) {
	switch {
	case len(v) == len(time.DateOnly):
		t, err := time.Parse(time.DateOnly, v)
		if err != nil {
			break
		}
		return Time{T: t, Kind: KindDate}, nil
	case len(v) == len("2006-01-02T15:04:05"):
		t, err := time.Parse("2006-01-02T15:04:05", v)
		if err != nil {
			break
		}
		return Time{T: t, Kind: KindFloating}, nil
	default:
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			break
		}
		return Time{T: t.UTC().Truncate(time.Second), Kind: KindUTC}, nil
	}
	return Time{}, drop(DropBadTime, "%s is not 2023-03-10, 2023-03-10T08:00:00 or 2023-03-10T08:00:00+01:00", name)
}
