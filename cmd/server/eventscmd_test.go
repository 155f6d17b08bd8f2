package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/store"
)

const eventsTestSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// appReceiver is the partner's app: it verifies every event with the Standard Webhooks library
// and keeps the payloads, in the order received.
type appReceiver struct {
	mu       sync.Mutex
	payloads []map[string]any
	srv      *httptest.Server
}

func newAppReceiver(t *testing.T) *appReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(eventsTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	a := &appReceiver{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("event refused by the Standard Webhooks library: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var p map[string]any
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("event body %s: %v", body, err)
		}
		a.mu.Lock()
		a.payloads = append(a.payloads, p)
		a.mu.Unlock()
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *appReceiver) got() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]map[string]any(nil), a.payloads...)
}

// The whole server: the platform's signed webhooks change a school, and the partner's app hears
// each change, signed, in order; a deleted school's event says to delete its personal data.
func TestServeSendsLifecycleEventsToTheApp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, simSrv := simtest.NewServer(t, platformsim.Config{})
	if _, err := sim.AddTenant(platformsim.TenantSpec{ID: "5301", Name: "Volksschule West"}); err != nil {
		t.Fatal(err)
	}
	app := newAppReceiver(t)
	keys := newKeySpec(t)
	srv := startServe(t, map[string]string{
		"DATABASE_URL": pgtest.NewDatabase(t), "ENCRYPTION_KEYS": keys, "UNTIS_WEBHOOK_KEYS": sim.WebhookPublicKey(),
		"UNTIS_API_URL": simSrv.URL, "EVENTS_URL": app.srv.URL + "/untis/events", "EVENTS_SECRET": eventsTestSecret,
	})
	sim.SetPartnerURL(srv.base)
	// Each change is awaited at the app before the next: a deletion takes the school's events
	// that were not sent yet along (they may hold its personal data).
	for i, send := range []func() (*platformsim.WebhookResult, error){
		func() (*platformsim.WebhookResult, error) { return sim.Activate(ctx, "5301") },
		func() (*platformsim.WebhookResult, error) { return sim.Reset(ctx, "5301") },
		func() (*platformsim.WebhookResult, error) { return sim.Deactivate(ctx, "5301", true) },
	} {
		res, err := send()
		if err != nil || res.Status != http.StatusOK {
			t.Fatalf("webhook: %+v, %v", res, err)
		}
		waitFor(t, fmt.Sprintf("event %d at the app", i+1), func() bool { return len(app.got()) == i+1 })
	}
	got := app.got()
	for i, want := range []string{"school.activated", "school.credentials_reset", "school.deleted"} {
		data, _ := got[i]["data"].(map[string]any)
		if got[i]["type"] != want || data["tenantId"] != "5301" || data["source"] != "webhook" {
			t.Errorf("event %d: %v, want %s", i, got[i], want)
		}
	}
	if data, _ := got[2]["data"].(map[string]any); data["action_required"] != "delete_personal_data" || data["state"] != "deleted" {
		t.Errorf("deletion event %v", got[2])
	}
	if data, _ := got[0]["data"].(map[string]any); data["state"] != "active" {
		t.Errorf("activation event %v", got[0])
	}
	_, secretValue, passwordValue, _ := sim.Credentials("5301")
	srv.logs.AssertNoSecrets(t, strings.TrimPrefix(eventsTestSecret, "whsec_"), secretValue, passwordValue)
	for _, p := range got {
		b, _ := json.Marshal(p)
		if strings.Contains(string(b), secretValue) || strings.Contains(string(b), passwordValue) {
			t.Errorf("an event holds a credential: %s", b)
		}
	}
}

// `server events list` shows what is pending and failed; `server events retry` queues events
// again, one by id or message id, or every failed one.
func TestEventsCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	keys := newKeySpec(t)
	st := openStoreWith(t, dbURL, keys)
	for i, tn := range []string{"6001", "6001", "6002"} {
		event := map[bool]string{true: "CREATED", false: "RESET"}[i != 1]
		sum := sha256.Sum256(fmt.Appendf(nil, "body %d", i))
		if _, err := st.ReceiveCredentials(ctx, store.Receipt{TenantID: tn, BodySHA256: sum[:], EventType: event},
			store.Credentials{ClientID: "app", Secret: "s", Password: "p"}, store.TenantInfo{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	all, err := st.ListEvents(ctx, store.EventFilter{Status: store.EventPending})
	if err != nil || len(all) != 3 {
		t.Fatal(all, err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE events SET status = 'failed', failed_at = now(), attempts = 61, last_error = 'HTTP 500: boom' WHERE id = $1`, all[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE events SET status = 'delivered', delivered_at = now() WHERE id = $1`, all[2].ID); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": dbURL}
	events := func(args ...string) (string, error) {
		t.Helper()
		var stdout bytes.Buffer
		err := run(ctx, append([]string{"events"}, args...), getenvFrom(env), nil, &stdout, io.Discard)
		return stdout.String(), err
	}

	out, err := events("list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"events: 1 pending, 1 failed (not sent: EVENTS_URL is unset", "ID", "NEXT ATTEMPT", "LAST ERROR",
		fmt.Sprint(all[0].ID), "school.activated", "failed", "61", "HTTP 500: boom", fmt.Sprint(all[1].ID), "school.credentials_reset", "pending", all[1].MessageID} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, all[2].MessageID) {
		t.Errorf("list shows the delivered event:\n%s", out)
	}
	if out, _ := events("list", "--delivered"); !strings.Contains(out, all[2].MessageID) || strings.Contains(out, all[1].MessageID) {
		t.Errorf("list --delivered:\n%s", out)
	}
	if out, _ := events("list", "--all", "--school", "6002"); !strings.Contains(out, all[2].MessageID) || strings.Contains(out, all[1].MessageID) {
		t.Errorf("list --all --school 6002:\n%s", out)
	}
	if out, _ := events("list", "--failed", "--limit", "1"); !strings.Contains(out, all[0].MessageID) || strings.Contains(out, all[1].MessageID) ||
		!strings.Contains(out, "--limit N shows more") {
		t.Errorf("list --failed --limit 1:\n%s", out)
	}
	env["EVENTS_URL"], env["EVENTS_SECRET"] = "https://app.example.com/hooks?token=t0ken", eventsTestSecret
	if out, _ := events("list"); !strings.Contains(out, "sent to https://app.example.com/hooks)") || strings.Contains(out, "t0ken") {
		t.Errorf("list with EVENTS_URL:\n%s", out)
	}

	out, err = events("retry", fmt.Sprint(all[0].ID), all[1].MessageID)
	if err != nil || !strings.Contains(out, fmt.Sprintf("event %d (school.activated of school 6001) queued", all[0].ID)) {
		t.Errorf("retry: %v\n%s", err, out)
	}
	if c, _ := st.CountEvents(ctx); c.Failed != 0 || c.Pending != 2 {
		t.Errorf("after the retry: %+v", c)
	}
	if _, err := events("retry", fmt.Sprint(all[2].ID), "424242"); err == nil || !strings.Contains(err.Error(), "delivered already") ||
		!strings.Contains(err.Error(), "424242: no such event") {
		t.Errorf("retry of a delivered and an unknown event: %v", err)
	}
	if _, err := st.Pool().Exec(ctx, `UPDATE events SET status = 'failed', failed_at = now() WHERE status = 'pending'`); err != nil {
		t.Fatal(err)
	}
	if out, err := events("retry", "--failed"); err != nil || !strings.Contains(out, "2 failed event(s) queued again") {
		t.Errorf("retry --failed: %v\n%s", err, out)
	}
	if trail, _ := st.AuditTrail(ctx, "6001", 1); len(trail) != 1 || trail[0].Action != "event.retried" || trail[0].Actor != "cli" {
		t.Errorf("audit %+v", trail)
	}
	for _, args := range [][]string{{}, {"purge"}, {"list", "--school"}, {"list", "--school", "../x"}, {"list", "--limit", "0"},
		{"list", "--bogus"}, {"retry"}, {"retry", "--failed", "1"}} {
		if _, err := events(args...); err == nil {
			t.Errorf("events %v: no error", args)
		}
	}
}
