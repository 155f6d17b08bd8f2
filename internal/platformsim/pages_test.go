package platformsim_test

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
)

// The page's buttons answer with a redirect to the card they belong to (#t-1002,
// #signing-keys), so the browser opens the page scrolled to that card: the message that says
// what the button did must be inside that card, or the person who clicked sees nothing happen.
func TestPageMessagesAppearInTheCardThatWasUsed(t *testing.T) {
	t.Parallel()
	sim, srv := simtest.NewServer(t, platformsim.Config{PartnerURL: partnerURL})
	sim.SeedDemo()
	e := &env{t: t, sim: sim, url: srv.URL, client: srv.Client()}
	e.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	formHdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	parent := mustUser(t, sim, "1002", "parent")

	for _, tc := range []struct {
		name, path, body, card, want string
	}{
		{"sign in to WebUntis", "/sim/tenants/1002/signin", "user=" + parent.SourcedID, "t-1002",
			"Signed in to WebUntis as " + parent.GivenName + " " + parent.FamilyName},
		{"log out of WebUntis", "/sim/tenants/1002/signout", "partner_status=answered+204", "t-1002",
			"Logged out of WebUntis. The partner's logout path answered 204."},
		{"behave like another OP", "/sim/tenants/1002/interop", "setting=basic-auth-only&on=true", "t-1002",
			"The school's token endpoint accepts client_secret_basic"},
		{"reactivate without webhook", "/sim/tenants/1002/reactivate-quietly", "", "t-1002",
			"no webhook was sent"},
		{"rotate the signing key", "/sim/signing-keys/rotate", "", "signing-keys",
			"New id_tokens are signed with key"},
	} {
		resp := e.do(http.MethodPost, srv.URL+tc.path, "", strings.NewReader(tc.body), formHdr)
		loc := e.redirectTo(resp)
		if loc.Fragment != tc.card {
			t.Errorf("%s: redirected to %s, want the card #%s", tc.name, loc, tc.card)
			continue
		}
		page := readAll(e.get(srv.URL + (&url.URL{Path: loc.Path, RawQuery: loc.RawQuery}).String()))
		card, ok := section(page, tc.card)
		if !ok {
			t.Fatalf("%s: the page has no section #%s", tc.name, tc.card)
		}
		if !strings.Contains(html.UnescapeString(card), tc.want) {
			t.Errorf("%s: the card #%s does not say %q; the page:\n%s", tc.name, tc.card, tc.want, page)
		}
		if top, _, _ := strings.Cut(page, `<section`); strings.Contains(top, `class="flash"`) {
			t.Errorf("%s: the message is (also) at the top of the page, out of sight of the card", tc.name)
		}
	}

	// A message without a card (an old link) still shows, at the top.
	page := readAll(e.get(srv.URL + "/?msg=" + url.QueryEscape("Hello from an old link.")))
	if top, _, _ := strings.Cut(page, `<section`); !strings.Contains(top, "Hello from an old link.") {
		t.Errorf("a message for no card is not at the top:\n%s", page)
	}
}

// section is the HTML of the <section id="id"> of page.
func section(page, id string) (string, bool) {
	_, rest, ok := strings.Cut(page, `<section class="card" id="`+id+`"`)
	if !ok {
		return "", false
	}
	body, _, _ := strings.Cut(rest, "</section>")
	return body, true
}
