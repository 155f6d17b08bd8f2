package i18n_test

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/text/language"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/web"
)

// partial are the shipped catalogs that may lack messages (shown in English, per message).
var partial = map[string]bool{"it": true}

func shipped(t *testing.T) *i18n.Catalog {
	t.Helper()
	c, err := i18n.Load(web.Locales())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every shipped catalog but the partial ones has every message of the source (English), and no
// catalog has a message the source does not (a typo in an id would never be shown).
func TestShippedCatalogsAreComplete(t *testing.T) {
	t.Parallel()
	c := shipped(t)
	en := c.IDs(i18n.Source)
	if len(en) < 100 {
		t.Fatalf("the English catalog has only %d messages", len(en))
	}
	if got := c.Languages(); len(got) < 3 || got[0] != language.English {
		t.Fatalf("languages %v, want English first and at least German and Italian", got)
	}
	for _, tag := range c.Languages()[1:] {
		ids := c.IDs(tag)
		for id := range ids {
			if !en[id] {
				t.Errorf("%s has %q, which English does not have", tag, id)
			}
		}
		if partial[tag.String()] {
			continue
		}
		var missing []string
		for id := range en {
			if !ids[id] {
				missing = append(missing, id)
			}
		}
		slices.Sort(missing)
		if len(missing) > 0 {
			t.Errorf("%s lacks %d messages: %v", tag, len(missing), missing)
		}
	}
}

// A translation uses only values its message has (a misspelt {{.Nmae}} would print nothing),
// and differs from English where it is German (a copied English text is not a translation).
func TestTranslationsUseTheMessagesValues(t *testing.T) {
	t.Parallel()
	c := shipped(t)
	en := c.Localizer(i18n.Source)
	values := map[string]any{"Name": "N", "Count": 2, "Tenant": "1002", "Version": 3, "State": "S", "Wait": "W",
		"Lesson": "L", "Day": "D", "Start": "08:00", "End": "08:50", "Code": "c", "Max": 5, "Help": "H", "Reason": "R",
		"Minutes": 10, "When": "T", "Source": "s", "Since": "T", "Command": "cmd", "Email": "e", "User": "u", "Actor": "a",
		"Event": "E", "ClientID": "id", "Type": "t", "Fields": "f", "From": "A", "To": "B", "Ref": "r", "Action": "x",
		"Key": "k", "Value": "v", "Text": "x", "Weekday": "W", "Month": "M", "Year": 2026, "DD": "09", "MM": "03", "HH": "14",
		"Min": "05", "Zone": "UTC", "Setting": "S", "Pending": 1, "Failed": 2, "Events": "1, 2"}
	for _, tag := range c.Languages() {
		l := c.Localizer(tag)
		for id := range c.IDs(tag) {
			kv := []any{}
			for k, v := range values {
				kv = append(kv, k, v)
			}
			s, err := l.Localize(i18n.T(id, kv...))
			if err != nil {
				t.Errorf("%s %s: %v", tag, id, err)
				continue
			}
			if strings.Contains(s, "<no value>") {
				t.Errorf("%s %s uses a value the message does not have: %q", tag, id, s)
			}
			if tag == language.German && len(s) > 30 && s == en.MustLocalize(i18n.T(id, kv...)) {
				t.Errorf("de %s is the English text: %q", id, s)
			}
		}
	}
}

// The partial Italian catalog falls back to English per message: what it has is Italian, what it
// lacks is English, on the same page.
func TestPartialCatalogFallsBackToEnglishPerMessage(t *testing.T) {
	t.Parallel()
	c := shipped(t)
	it := c.Localizer(language.Italian)
	if got := it.MustLocalize(i18n.T("error.not_found.heading")); got != "Pagina non trovata" {
		t.Errorf("Italian 404 heading %q", got)
	}
	if c.IDs(language.Italian)["console.login.heading"] {
		t.Fatal("the test needs a message the Italian catalog lacks")
	}
	if got := it.MustLocalize(i18n.T("console.login.heading")); got != "Console sign-in" {
		t.Errorf("a message Italian lacks reads %q, want the English words", got)
	}
	if got := it.MustLocalize(i18n.T("home.context.classes", "Count", 2)); got != "Classi" {
		t.Errorf("Italian plural %q", got)
	}
	// A language file is all it takes: a catalog with one French message.
	fr := fstest.MapFS{
		"active.en.toml": {Data: []byte("[\"language.name\"]\nother = \"English\"\n[\"a.b\"]\nother = \"Hello\"\n[\"a.c\"]\nother = \"Bye\"\n")},
		"active.fr.toml": {Data: []byte("# Français\n[\"language.name\"]\nother = \"Français\"\n[\"a.b\"]\ndescription = \"greeting\"\nother = \"Bonjour\"\n")},
	}
	cf, err := i18n.Load(fr)
	if err != nil {
		t.Fatal(err)
	}
	l := cf.Localizer(language.French)
	if a, b := l.MustLocalize(i18n.T("a.b")), l.MustLocalize(i18n.T("a.c")); a != "Bonjour" || b != "Bye" {
		t.Errorf("French catalog: %q, %q; want Bonjour and the English Bye", a, b)
	}
	if got := cf.Choose("", "fr-CH", ""); got != language.French {
		t.Errorf("fr-CH chose %v", got)
	}
	if _, err := l.Localize(i18n.T("no.such.message")); err == nil {
		t.Error("an id no catalog has is not an error")
	}
}

func TestChooseLanguage(t *testing.T) {
	t.Parallel()
	c := shipped(t)
	de, en, it := language.German, language.English, language.Italian
	for _, tc := range []struct {
		choice, accept, school string
		want                   language.Tag
	}{
		{"", "de-AT,de;q=0.9,en;q=0.8", "", de},
		{"", "de-CH", "", de},
		{"", "de-DE", "en", de},
		{"", "en-GB,en;q=0.9", "de", en},
		{"", "en;q=0.5, de", "", de},             // q-values, not order, rank
		{"", "fr-FR,fr;q=0.9", "de", de},         // no shipped language asked for: the school's
		{"", "fr", "", en},                       // ... and without a school, English
		{"", "", "", en},                         // nothing at all
		{"", "", "de-AT", de},                    // the school's language, as the webhook sends it
		{"", "", "xx-invalid-tag-", en},          // a school language that is no language
		{"", "it-IT", "de", it},                  // Italian (partial) when asked for
		{"de", "en-US,en", "", de},               // the user's choice first
		{"it", "de-AT", "de", it},                // ... always
		{"klingon", "de-AT", "", de},             // a choice we do not ship does not count
		{"", "de;q=garbage,,;;", "", en},         // an unreadable header does not count
		{"", strings.Repeat("de,", 300), "", en}, // nor an absurdly long one
	} {
		if got := c.Choose(tc.choice, tc.accept, tc.school); got != tc.want {
			t.Errorf("Choose(%q, %q, %q) = %v, want %v", tc.choice, tc.accept, tc.school, got, tc.want)
		}
	}
}

func TestPluralsAndDates(t *testing.T) {
	t.Parallel()
	c := shipped(t)
	de, en := c.Localizer(language.German), c.Localizer(language.English)
	for _, tc := range []struct {
		l    *i18n.Localizer
		n    int
		want string
	}{{en, 1, "1 second"}, {en, 30, "30 seconds"}, {de, 1, "1 Sekunde"}, {de, 30, "30 Sekunden"}} {
		if got := tc.l.MustLocalize(i18n.T("wait.seconds", "Count", tc.n)); got != tc.want {
			t.Errorf("wait.seconds %d = %q, want %q", tc.n, got, tc.want)
		}
	}
	vienna := i18n.SchoolZone("AT", time.UTC)
	at := time.Date(2026, 3, 9, 13, 5, 0, 0, time.UTC).In(vienna)
	if got := de.DateTime(at); got != "9. März 2026, 14:05 Uhr" {
		t.Errorf("German date and time %q", got)
	}
	if got := en.Date(at); got != "Monday, 9 March 2026" {
		t.Errorf("English date %q", got)
	}
	if got := de.Stamp(at.UTC()); got != "09.03.2026 13:05 UTC" {
		t.Errorf("German stamp %q", got)
	}
	// A lesson's day as a value of a message is written in the message's language.
	if got := de.MustLocalize(i18n.T("home.context.when_day", "Day", i18n.Date(at))); got != "Montag, 9. März 2026" {
		t.Errorf("a day in a message %q", got)
	}
}

func TestSchoolZone(t *testing.T) {
	t.Parallel()
	fallback := time.FixedZone("fallback", 3600)
	for country, want := range map[string]string{"AT": "Europe/Vienna", "de": "Europe/Berlin", " CH ": "Europe/Zurich",
		"IT": "Europe/Rome", "": "fallback", "US": "fallback", "XX": "fallback"} {
		if got := i18n.SchoolZone(country, fallback).String(); got != want {
			t.Errorf("SchoolZone(%q) = %s, want %s", country, got, want)
		}
	}
}
