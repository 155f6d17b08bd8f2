package httpserver_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// TestEndedSchoolNamesWhoEndedIt: a user of a school whose app was switched off is told who did
// it, and so whom to ask: the school's WebUntis administrator when the platform's webhook ended
// it, the app's provider when one of its operators did (the console).
func TestEndedSchoolNamesWhoEndedIt(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	byWebhook := e.newSchool(store.StateActive)
	deleted := e.newSchool(store.StateActive)
	byOperator := e.newSchool(store.StateActive)
	reactivatedThenOperator := e.newSchool(store.StateActive)
	for _, tid := range []string{byWebhook, reactivatedThenOperator} {
		if res, err := e.sim.Deactivate(e.ctx(), tid, false); err != nil || res.Status != http.StatusOK {
			t.Fatalf("deactivation webhook: %v %+v", err, res)
		}
	}
	if res, err := e.sim.Deactivate(e.ctx(), deleted, true); err != nil || res.Status != http.StatusOK {
		t.Fatalf("deletion webhook: %v %+v", err, res)
	}
	// The platform brings one back, and then an operator ends it: the newest ending counts.
	if res, err := e.sim.Reactivate(e.ctx(), reactivatedThenOperator); err != nil || res.Status != http.StatusOK {
		t.Fatalf("reactivation webhook: %v %+v", err, res)
	}
	for _, tid := range []string{byOperator, reactivatedThenOperator} {
		if _, err := e.app.onboard.Deactivate(e.ctx(), tid, "operator ops@partner.example", "contract ended"); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		name, tid string
		want      []string
		not       []string
	}{
		{"deactivated by the platform", byWebhook, []string{"WebUntis administrator has deactivated this app"}, []string{"provider"}},
		{"deleted by the platform", deleted, []string{"removed this app", "WebUntis administrator"}, []string{"provider"}},
		{"deactivated by an operator", byOperator, []string{"provider of this app has switched it off", "nobody at your school did"}, []string{"administrator has deactivated"}},
		{"reactivated, then deactivated by an operator", reactivatedThenOperator, []string{"provider of this app has switched it off"}, []string{"administrator has deactivated"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			end := e.browser().get(e.app.srv.URL + "/launch?" + launchQuery(c.tid).Encode())
			if end.status != http.StatusForbidden {
				t.Errorf("status %d, want 403", end.status)
			}
			for _, w := range c.want {
				if !strings.Contains(end.body, w) {
					t.Errorf("page lacks %q:\n%s", w, end.body)
				}
			}
			for _, w := range c.not {
				if strings.Contains(end.body, w) {
					t.Errorf("page says %q:\n%s", w, end.body)
				}
			}
			e.refusal(t, end, "school_inactive")
		})
	}
}

// TestReusedCallbackSaysTheLinkWasUsed: the same callback a second time in the same browser (Back
// to it, a reload) is a spent sign-in link, not a cookie problem: the page says so and sends
// the user back to WebUntis, and a session the browser has stays. A browser that never had the
// flow cookie still gets the cookie page.
func TestReusedCallbackSaysTheLinkWasUsed(t *testing.T) {
	t.Parallel()
	for _, embed := range []bool{false, true} {
		t.Run(map[bool]string{false: "new tab", true: "iFrame"}[embed], func(t *testing.T) {
			t.Parallel()
			e := newSigninEnv(t, signinOptions{embed: embed})
			tid := e.newSchool(store.StateActive)
			b := e.browser()
			b.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
			cb := b.authorize(e.app, launchQuery(tid))
			if first := b.get(cb); first.status != http.StatusSeeOther {
				t.Fatalf("callback = %d:\n%s", first.status, first.body)
			}
			again := b.get(cb)
			if again.status != http.StatusBadRequest || !strings.Contains(again.body, "This sign-in link was already used") ||
				!strings.Contains(again.body, "open the app again from WebUntis") || strings.Contains(again.body, "cookie") {
				t.Errorf("the same callback again = %d:\n%s", again.status, again.body)
			}
			e.refusal(t, again, "flow_reused")
			if b.me().status != http.StatusOK {
				t.Error("reloading a used sign-in link ended the session")
			}

			// A failed sign-in, reloaded.
			if err := e.sim.InjectIDTokenFault(tid, platformsim.WrongNonce); err != nil {
				t.Fatal(err)
			}
			cb = b.authorize(e.app, launchQuery(tid))
			if failed := b.get(cb); failed.status != http.StatusForbidden {
				t.Fatalf("failing callback = %d", failed.status)
			}
			if reload := b.get(cb); reload.status != http.StatusBadRequest || !strings.Contains(reload.body, "already used") {
				t.Errorf("reloaded failed sign-in = %d:\n%s", reload.status, reload.body)
			}

			// Another browser, which never had the cookie.
			cb = b.authorize(e.app, launchQuery(tid))
			if other := e.browser().get(cb); other.status != http.StatusBadRequest || strings.Contains(other.body, "already used") {
				t.Errorf("a browser without the flow cookie = %d:\n%s", other.status, other.body)
			}
		})
	}
}
