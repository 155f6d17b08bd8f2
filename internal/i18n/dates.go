package i18n

import (
	"fmt"
	"strings"
	"time"
)

// Dates and times are written the way each language writes them: the catalogs hold the
// patterns (format.*) and the names of months and weekdays, so a translator decides the order
// ("9. März 2026" and "9 March 2026"). The caller decides the time zone.

// dateData is what the format.* messages may use.
func (l *Localizer) dateData(t time.Time) map[string]any {
	zone, _ := t.Zone()
	return map[string]any{
		"Day": t.Day(), "DD": fmt.Sprintf("%02d", t.Day()),
		"Month": l.MustLocalize(T(fmt.Sprintf("month.%d", int(t.Month())))), "MM": fmt.Sprintf("%02d", int(t.Month())),
		"Year":    t.Year(),
		"Weekday": l.MustLocalize(T("weekday." + strings.ToLower(t.Weekday().String()))),
		"HH":      fmt.Sprintf("%02d", t.Hour()), "Min": fmt.Sprintf("%02d", t.Minute()),
		"Zone": zone,
	}
}

func (l *Localizer) format(id string, t time.Time) string {
	return l.MustLocalize(Text{ID: id, Data: l.dateData(t)})
}

// Date is a day in words: "Monday, 9 March 2026" / "Montag, 9. März 2026".
func (l *Localizer) Date(t time.Time) string { return l.format("format.date", t) }

// Time is a time of day: "14:05".
func (l *Localizer) Time(t time.Time) string { return l.format("format.time", t) }

// DateTime is a day and a time: "9 March 2026, 14:05" / "9. März 2026, 14:05".
func (l *Localizer) DateTime(t time.Time) string { return l.format("format.datetime", t) }

// Stamp is a compact date and time for tables, with the zone named: "2026-03-09 14:05 UTC" /
// "09.03.2026 14:05 UTC".
func (l *Localizer) Stamp(t time.Time) string { return l.format("format.stamp", t) }

// Zones of the countries Untis schools are in (the credentials webhook's "country", ISO 3166-1
// alpha-2). The platform names no time zone; its timetable times are school-local.
var countryZones = map[string]string{
	"AT": "Europe/Vienna", "DE": "Europe/Berlin", "CH": "Europe/Zurich", "IT": "Europe/Rome",
	"LI": "Europe/Vaduz", "LU": "Europe/Luxembourg", "NL": "Europe/Amsterdam", "BE": "Europe/Brussels",
	"FR": "Europe/Paris", "SI": "Europe/Ljubljana", "HU": "Europe/Budapest", "CZ": "Europe/Prague",
	"SK": "Europe/Bratislava", "PL": "Europe/Warsaw", "HR": "Europe/Zagreb", "GB": "Europe/London",
	"IE": "Europe/Dublin", "DK": "Europe/Copenhagen", "SE": "Europe/Stockholm", "NO": "Europe/Oslo",
	"FI": "Europe/Helsinki", "ES": "Europe/Madrid", "PT": "Europe/Lisbon", "RO": "Europe/Bucharest",
	"GR": "Europe/Athens", "TR": "Europe/Istanbul",
}

// SchoolZone is a school's time zone: the one of its country (the credentials webhook's
// informational "country"), else fallback (SCHOOL_TIMEZONE). A country with several zones is
// not listed and takes the fallback.
func SchoolZone(country string, fallback *time.Location) *time.Location {
	if name, ok := countryZones[strings.ToUpper(strings.TrimSpace(country))]; ok {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	return fallback
}
