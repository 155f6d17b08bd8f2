package httpserver

import (
	"strings"
	"testing"

	"golang.org/x/text/language"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// The platform's deactivation webhook names its kind of reason with a code (NO_REASON,
// REMOTE_DEACTIVATION, ...). The audit trail says the known ones in the reader's words, with the
// code for support, and shows a code this version does not know as the platform sent it.
func TestAuditTrailSaysThePlatformsKindOfReasonInWords(t *testing.T) {
	t.Parallel()
	cat, err := i18n.Load(web.Locales())
	if err != nil {
		t.Fatal(err)
	}
	details := func(lang language.Tag, reasonType string) string {
		row := auditRowOf(store.AuditEvent{Action: "tenant.deactivated", Actor: "webhook",
			Detail: map[string]any{"event": "DEACTIVATION", "reason_type": reasonType}}, nil)
		var out []string
		for _, d := range row.Details {
			out = append(out, cat.Localizer(lang).MustLocalize(d))
		}
		return strings.Join(out, "\n")
	}
	for _, tc := range []struct {
		code string
		lang language.Tag
		want string
	}{
		{"NO_REASON", language.English, "Kind of reason: none given (NO_REASON)"},
		{"NO_REASON", language.German, "Art des Grundes: keine Angabe (NO_REASON)"},
		{"SCHOOL_DEACTIVATION", language.English, "the school was deactivated"},
		{"SCHOOL_DELETION", language.German, "die Schule wurde gelöscht"},
		{"REMOTE_DEACTIVATION", language.English, "deactivated by another service of the platform"},
		{"REMOTE_DELETION", language.German, "von einem anderen Dienst der Plattform gelöscht"},
		{"LICENCE_EXPIRED", language.English, "Kind of reason: LICENCE_EXPIRED"},
		{"LICENCE_EXPIRED", language.German, "Art des Grundes: LICENCE_EXPIRED"},
	} {
		got := details(tc.lang, tc.code)
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s in %s: the trail says\n%s\nwant a line with %q", tc.code, tc.lang, got, tc.want)
		}
	}
	// The table names only messages that exist (the lint test checks literal ids only).
	for code, id := range reasonKinds {
		if !cat.Has(id) {
			t.Errorf("reason kind %s: no message %q", code, id)
		}
	}
}
