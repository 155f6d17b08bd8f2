package httpserver_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// evTypes lists the school's events, oldest first, as "type/source".
func (e *signinEnv) evTypes(tid string) []string {
	e.t.Helper()
	list, err := e.store.ListEvents(e.ctx(), store.EventFilter{TenantID: tid})
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, len(list))
	for i, ev := range list {
		src := ""
		if _, after, ok := strings.Cut(string(ev.Data), `"source": "`); ok {
			src, _, _ = strings.Cut(after, `"`)
		}
		out[len(list)-1-i] = ev.Type + "/" + src
	}
	return out
}

// The console's paths write their events: the platform's webhook, an operator's credentials and
// an operator's deactivation each leave exactly one, with its source.
func TestConsoleChangesWriteEvents(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: "8101"}); err != nil {
		t.Fatal(err)
	}
	if res, err := e.sim.Activate(e.ctx(), "8101"); err != nil || res.Status != http.StatusOK {
		t.Fatalf("CREATED: %+v, %v", res, err)
	}
	b, csrf := e.consoleBrowser(t, email, pw)
	base := e.app.srv.URL + "/admin/tenants/8101"
	if got := b.formPost(base+"/deactivate", url.Values{"csrf": {csrf}, "confirm": {"8101"}}, nil); got.status != http.StatusSeeOther {
		t.Fatalf("deactivate = %d\n%s", got.status, got.body)
	}
	clientID, sec, pass, _ := e.sim.Credentials("8101")
	if got := b.formPost(base+"/credentials", url.Values{"csrf": {csrf}, "clientId": {clientID}, "secret": {sec}, "password": {pass}}, nil); got.status != http.StatusSeeOther {
		t.Fatalf("credentials = %d\n%s", got.status, got.body)
	}
	want := "[school.activated/webhook school.deactivated/operator school.activated/operator]"
	if got := fmt.Sprint(e.evTypes("8101")); got != want {
		t.Errorf("events %s, want %s", got, want)
	}
	// The school's page lists them.
	if page := b.get(base); !strings.Contains(page.body, "Events to your app") || strings.Count(page.body, "school.activated") != 2 {
		t.Errorf("school page:\n%s", page.body)
	}
}

// The events page lists failed and pending events; "Retry" queues one again, "Retry all" every
// failed one; each form needs the console's CSRF token, and the page needs a console session.
func TestConsoleEventsPage(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{eventsTarget: "https://app.example.com/untis/events"})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	for _, tid := range []string{"8201", "8202", "8203"} {
		if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: tid}); err != nil {
			t.Fatal(err)
		}
		if res, err := e.sim.Activate(e.ctx(), tid); err != nil || res.Status != http.StatusOK {
			t.Fatalf("CREATED %s: %+v, %v", tid, res, err)
		}
	}
	ids := map[string]int64{}
	for _, tid := range []string{"8201", "8202", "8203"} {
		list, err := e.store.ListEvents(e.ctx(), store.EventFilter{TenantID: tid})
		if err != nil || len(list) != 1 {
			t.Fatal(list, err)
		}
		ids[tid] = list[0].ID
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := e.store.Pool().Exec(e.ctx(), q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE events SET status = 'failed', failed_at = now(), attempts = 58, last_error = 'HTTP 500: <b>boom</b>' WHERE tenant_id IN ('8201', '8202')`)
	exec(`UPDATE events SET next_attempt_at = now() + interval '1 hour', attempts = 3, last_error = 'no answer within 10s' WHERE tenant_id = '8203'`)

	eventsURL := e.app.srv.URL + "/admin/events"
	if got := e.browser().get(eventsURL); got.status != http.StatusSeeOther || !strings.HasSuffix(got.location, "/admin/login") {
		t.Fatalf("without a console session: %d to %q", got.status, got.location)
	}
	b, csrf := e.consoleBrowser(t, email, pw)
	if home := b.get(e.app.srv.URL + "/admin"); !strings.Contains(home.body, "2 events to your app failed for good.") {
		t.Errorf("the schools page does not warn of the failed events:\n%s", home.body)
	}
	page := b.get(eventsURL)
	for _, want := range []string{"1 pending, 2 failed", "https://app.example.com/untis/events", "HTTP 500: &lt;b&gt;boom&lt;/b&gt;", "58",
		"no answer within 10s", `action="/admin/events/retry-failed"`, fmt.Sprintf(`action="/admin/events/%d/retry"`, ids["8201"]), ">Send now</button>"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("events page lacks %q:\n%s", want, page.body)
		}
	}
	retry := func(path string, form url.Values) answer {
		t.Helper()
		return b.formPost(e.app.srv.URL+path, form, nil)
	}
	one := fmt.Sprintf("/admin/events/%d/retry", ids["8201"])
	// Without the token, with another's, or from another site: refused, nothing changes.
	if got := retry(one, url.Values{}); got.status != http.StatusForbidden {
		t.Errorf("retry without a CSRF token = %d", got.status)
	}
	if got := retry(one, url.Values{"csrf": {"x" + csrf}}); got.status != http.StatusForbidden {
		t.Errorf("retry with a wrong CSRF token = %d", got.status)
	}
	if got := b.formPost(e.app.srv.URL+one, url.Values{"csrf": {csrf}}, http.Header{"Origin": {"https://evil.example"}}); got.status != http.StatusForbidden {
		t.Errorf("cross-site retry = %d", got.status)
	}
	if c, _ := e.store.CountEvents(e.ctx()); c.Failed != 2 {
		t.Fatalf("a refused retry changed something: %+v", c)
	}

	// Each action ends on the events page saying what it did (POST-redirect-GET and a flash).
	got := retry(one, url.Values{"csrf": {csrf}})
	if got.status != http.StatusSeeOther || got.location != eventsURL {
		t.Fatalf("retry = %d to %q\n%s", got.status, got.location, got.body)
	}
	if page := b.get(got.location); !strings.Contains(page.body, fmt.Sprintf("Event %d is queued again: it is sent as soon as its school&#39;s earlier events are.", ids["8201"])) ||
		!strings.Contains(page.body, "2 pending, 1 failed") {
		t.Errorf("after the retry:\n%s", page.body)
	}
	if page := b.get(eventsURL); strings.Contains(page.body, "is queued again") {
		t.Error("the confirmation is shown again on the next visit")
	}
	if ev, err := e.store.Event(e.ctx(), fmt.Sprint(ids["8201"])); err != nil || ev.Status != store.EventPending || ev.Attempts != 0 {
		t.Errorf("retried event %+v, %v", ev, err)
	}
	if a := e.auditOf("8201", "event.retried"); len(a) != 1 || a[0].Actor != "operator "+email {
		t.Errorf("audit %+v", a)
	}
	// Every failed one at once.
	got = retry("/admin/events/retry-failed", url.Values{"csrf": {csrf}})
	if got.status != http.StatusSeeOther || got.location != eventsURL {
		t.Fatalf("retry all = %d to %q", got.status, got.location)
	}
	if page := b.get(got.location); !strings.Contains(page.body, "1 failed event is queued again: it is sent as soon as its school&#39;s earlier events are.") {
		t.Errorf("after retrying all:\n%s", page.body)
	}
	if got = retry("/admin/events/retry-failed", url.Values{"csrf": {csrf}}); got.status != http.StatusSeeOther {
		t.Fatalf("retry all again = %d", got.status)
	}
	if page := b.get(got.location); !strings.Contains(page.body, "There was no failed event to retry.") {
		t.Errorf("after retrying none:\n%s", page.body)
	}
	// The school's audit trail says it in sentences.
	if page := b.get(e.app.srv.URL + "/admin/tenants/8201"); !strings.Contains(page.body, fmt.Sprintf("Event %d to the app was queued again", ids["8201"])) ||
		!strings.Contains(page.body, "Type: School activated (school.activated)") || !strings.Contains(page.body, "It had failed; it has a new retry window.") {
		t.Errorf("the school's audit trail after a retry:\n%s", page.body)
	}
	if page := b.get(e.app.srv.URL + "/admin/tenants/8202"); !strings.Contains(page.body, "1 failed event to the app was queued again (") {
		t.Errorf("the school's audit trail after retrying all:\n%s", page.body)
	}
	if c, _ := e.store.CountEvents(e.ctx()); c.Failed != 0 || c.Pending != 3 {
		t.Errorf("after retrying all: %+v", c)
	}
	// Send a pending one now; unknown, delivered and malformed ids say so.
	if got := retry(fmt.Sprintf("/admin/events/%d/retry", ids["8203"]), url.Values{"csrf": {csrf}}); got.status != http.StatusSeeOther {
		t.Errorf("send now = %d", got.status)
	}
	exec(`UPDATE events SET status = 'delivered', delivered_at = now() WHERE id = $1`, ids["8202"])
	for path, want := range map[string]int{
		fmt.Sprintf("/admin/events/%d/retry", ids["8202"]): http.StatusConflict,
		"/admin/events/987654/retry":                       http.StatusNotFound,
		"/admin/events/abc/retry":                          http.StatusNotFound,
		"/admin/events/-3/retry":                           http.StatusNotFound,
	} {
		if got := retry(path, url.Values{"csrf": {csrf}}); got.status != want || !strings.Contains(got.body, "Events to your app") {
			t.Errorf("%s = %d, want %d with the events page", path, got.status, want)
		}
	}
	if page := b.get(eventsURL); !strings.Contains(page.body, "Recently delivered") || !strings.Contains(page.body, "/admin/tenants/8202") {
		t.Errorf("delivered list:\n%s", page.body)
	}
}

// Without EVENTS_URL the page says so, and offers no "Send now".
func TestConsoleEventsPageWithoutReceiver(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	const email, pw = "ops@partner.example", "correct horse battery staple"
	e.addOperator(email, pw)
	if _, err := e.sim.AddTenant(platformsim.TenantSpec{ID: "8301"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sim.Activate(e.ctx(), "8301"); err != nil {
		t.Fatal(err)
	}
	b, _ := e.consoleBrowser(t, email, pw)
	page := b.get(e.app.srv.URL + "/admin/events")
	if page.status != http.StatusOK || !strings.Contains(page.body, "is not set:") || !strings.Contains(page.body, "1 pending, 0 failed") || strings.Contains(page.body, ">Send now</button>") {
		t.Errorf("events page without a receiver:\n%s", page.body)
	}
}
