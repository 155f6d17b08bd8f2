package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// Helpers of the outbox tests carry the prefix ev.

// evEvent is an event as the tests compare it: its type and its data.
type evEvent struct {
	ID   int64
	Type string
	Data map[string]any
}

// evAll returns the school's events, oldest first.
func evAll(t *testing.T, s *store.Store, tenant string) []evEvent {
	t.Helper()
	list, err := s.ListEvents(context.Background(), store.EventFilter{TenantID: tenant, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]evEvent, len(list))
	for i, e := range list {
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatalf("event %d: data %s: %v", e.ID, e.Data, err)
		}
		if e.TenantID != tenant || data["tenantId"] != tenant || data["sequence"] != float64(e.ID) {
			t.Errorf("event %d of %s: tenant %q, data %v", e.ID, tenant, e.TenantID, data)
		}
		if !strings.HasPrefix(e.MessageID, "msg_") || len(e.MessageID) != 30 {
			t.Errorf("event %d: message id %q", e.ID, e.MessageID)
		}
		out[len(list)-1-i] = evEvent{ID: e.ID, Type: e.Type, Data: data}
	}
	return out
}

// evNew returns the school's events written since it last saw n of them.
func evNew(t *testing.T, s *store.Store, tenant string, seen *int) []evEvent {
	t.Helper()
	all := evAll(t, s, tenant)
	if len(all) < *seen {
		t.Fatalf("%s had %d events, now %d", tenant, *seen, len(all))
	}
	fresh := all[*seen:]
	*seen = len(all)
	return fresh
}

// evWant checks that got is exactly one event of type typ whose data has the given fields.
func evWant(t *testing.T, step string, got []evEvent, typ string, fields map[string]any) {
	t.Helper()
	if len(got) != 1 || got[0].Type != typ {
		t.Errorf("%s: events %+v, want one %s", step, got, typ)
		return
	}
	for k, v := range fields {
		if fmt.Sprint(got[0].Data[k]) != fmt.Sprint(v) {
			t.Errorf("%s: data[%q] = %v, want %v (data %v)", step, k, got[0].Data[k], v, got[0].Data)
		}
	}
	if msg, _ := got[0].Data["message"].(string); len(msg) < 20 {
		t.Errorf("%s: no plain message: %v", step, got[0].Data)
	}
}

// Every path that changes a school's state, credentials or setup answers writes exactly its
// event; a change that changes nothing writes none.
func TestEveryLifecycleChangeWritesItsEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	const T = "7001"
	needs := lcNeeds("code")
	seen := 0
	step := func(name string, do func(), typ string, fields map[string]any) {
		t.Helper()
		do()
		got := evNew(t, s, T, &seen)
		if typ == "" {
			if len(got) != 0 {
				t.Errorf("%s: events %+v, want none", name, got)
			}
			return
		}
		evWant(t, name, got, typ, fields)
	}
	creds := func(event, body string) func() {
		return func() { lcCredentialsEvent(t, s, T, event, body, needs) }
	}
	setup := func(answers map[string]string) func() {
		return func() {
			if _, err := s.SaveSetup(ctx, T, answers, "school admin u1", needs); err != nil {
				t.Fatal(err)
			}
		}
	}
	activate := func(source string) func() {
		return func() {
			c := lcCreds(source)
			c.Source = source
			if _, _, err := s.ActivateWithCredentials(ctx, T, c, source+" someone", needs); err != nil {
				t.Fatal(err)
			}
		}
	}
	end := func(body string, deletion bool) func() { return func() { lcEndEvent(t, s, T, body, deletion) } }

	step("CREATED, setup incomplete", creds("CREATED", "c1"), store.EventPendingSetup,
		map[string]any{"state": "pending_setup", "previousState": "", "source": "webhook", "name": "School " + T})
	step("the same body again", creds("CREATED", "c1"), "", nil)
	step("setup answers that complete it", setup(map[string]string{"code": "123456"}), store.EventSetupCompleted,
		map[string]any{"state": "active", "previousState": "pending_setup", "source": "setup", "setup": map[string]any{"code": "123456"}, "changed": []any{"code"}})
	step("the same answers again", setup(map[string]string{"code": "123456"}), "", nil)
	step("changed answers", setup(map[string]string{"code": "654321", "contact": "it@school.example"}), store.EventSetupChanged,
		map[string]any{"state": "active", "previousState": "active", "setup": map[string]any{"code": "654321", "contact": "it@school.example"}, "changed": []any{"code", "contact"}})
	step("RESET", creds("RESET", "r1"), store.EventCredentialsReset,
		map[string]any{"state": "active", "previousState": "active", "source": "webhook"})
	step("CREATED for an active school", creds("CREATED", "c2"), store.EventCredentialsReset, map[string]any{"state": "active"})
	step("operator's credentials", activate(store.SourceOperator), store.EventCredentialsReset,
		map[string]any{"state": "active", "source": "operator"})
	step("DEACTIVATION", end("d1", false), store.EventDeactivated,
		map[string]any{"state": "deactivated", "previousState": "active", "source": "webhook", "reasonType": "CONTRACT_ENDED", "reasonText": "reason d1", "name": "School " + T})
	step("another DEACTIVATION of the deactivated school", end("d2", false), "", nil)
	step("RESET of a deactivated school", creds("RESET", "r2"), "", nil)
	step("manual activation", activate(store.SourceManual), store.EventActivated,
		map[string]any{"state": "active", "previousState": "deactivated", "source": "manual"})
	step("operator deactivates", func() {
		if _, err := s.EndTenant(ctx, T, false, "operator ops@partner.example", map[string]any{"reason_text": "unpaid"}); err != nil {
			t.Fatal(err)
		}
	}, store.EventDeactivated, map[string]any{"state": "deactivated", "source": "operator", "reasonText": "<nil>"})
	step("manual activation refused after the operator's deactivation", func() {
		c := lcCreds("late")
		c.Source = store.SourceManual
		if _, _, err := s.ActivateWithCredentials(ctx, T, c, "someone", needs); !errors.Is(err, store.ErrEndedByOperator) {
			t.Fatalf("manual activation: %v", err)
		}
	}, "", nil)
	step("REACTIVATED", creds("REACTIVATED", "c3"), store.EventActivated,
		map[string]any{"state": "active", "previousState": "deactivated", "source": "webhook"})

	// No event holds a credential, whatever path wrote it.
	for _, e := range evAll(t, s, T) {
		b, _ := json.Marshal(e.Data)
		for _, tag := range []string{"c1", "c2", "c3", "r1", "operator", "manual"} {
			if strings.Contains(string(b), lcSecret(tag)) || strings.Contains(string(b), lcPassword(tag)) || strings.Contains(string(b), "client-"+tag) {
				t.Errorf("event %s holds a credential of %s: %s", e.Type, tag, b)
			}
		}
	}

	// The deletion takes the school's earlier events with it (they hold its name and setup
	// answers): only school.deleted is left.
	lcEndEvent(t, s, T, "x1", true)
	seen = 0
	evWant(t, "DELETION", evNew(t, s, T, &seen), store.EventDeleted, map[string]any{
		"state": "deleted", "previousState": "active", "source": "webhook", "action_required": "delete_personal_data", "name": "<nil>"})
	step("DELETION of a deleted school", end("x2", true), "", nil)
	step("DEACTIVATION of a deleted school", end("x3", false), "", nil)
	if all := evAll(t, s, T); len(all) != 1 || all[0].Type != store.EventDeleted {
		t.Fatalf("a repeated deletion dropped the pending school.deleted: %+v", all)
	}
	step("CREATED after the deletion", creds("CREATED", "c4"), store.EventPendingSetup,
		map[string]any{"state": "pending_setup", "previousState": "deleted"})

	// A school nobody knows writes nothing, and no other school's events ever show up here.
	lcEndEvent(t, s, "nobody", "n1", false)
	if _, err := s.EndTenant(ctx, "nobody", true, "operator x", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("end unknown school: %v", err)
	}
	if n := lcCount(t, s, `SELECT count(*) FROM events WHERE tenant_id <> $1`, T); n != 0 {
		t.Errorf("%d events of other schools", n)
	}
}

// A setup that leaves a pending school pending still tells the app its answers changed.
func TestSetupSavedWhilePendingIsAChange(t *testing.T) {
	t.Parallel()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "P", "CREATED", "c", lcNeeds("b"))
	seen := 1
	if _, err := s.SaveSetup(context.Background(), "P", map[string]string{"a": "x"}, "admin", lcNeeds("b")); err != nil {
		t.Fatal(err)
	}
	evWant(t, "partial setup", evNew(t, s, "P", &seen), store.EventSetupChanged, map[string]any{"state": "pending_setup", "previousState": "pending_setup"})
}

// A change that rolls back writes no event: the event is part of the change's transaction. A
// trigger makes the audit insert, which each change writes after its event, fail.
func TestRolledBackChangeWritesNoEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "A", "CREATED", "c1", lcNeeds("code"))
	lcCredentialsEvent(t, s, "B", "CREATED", "c2", nil)
	before := lcCount(t, s, `SELECT count(*) FROM events`)
	for _, q := range []string{
		`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$`,
		`CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	manual := lcCreds("m")
	manual.Source = store.SourceManual
	for name, change := range map[string]func() error{
		"webhook credentials": func() error {
			_, err := s.ReceiveCredentials(ctx, lcReceipt("A", "RESET", "r1"), lcCreds("r1"), lcInfo("A"), lcNeeds("code"))
			return err
		},
		"manual activation": func() error {
			_, _, err := s.ActivateWithCredentials(ctx, "C", manual, "someone", nil)
			return err
		},
		"setup": func() error {
			_, err := s.SaveSetup(ctx, "A", map[string]string{"code": "1"}, "admin", lcNeeds("code"))
			return err
		},
		"deactivation webhook": func() error {
			_, err := s.ReceiveDeactivation(ctx, lcReceipt("B", "DEACTIVATION", "d1"), false, "", "")
			return err
		},
		"operator deletion": func() error {
			_, err := s.EndTenant(ctx, "B", true, "operator x", nil)
			return err
		},
	} {
		if err := change(); err == nil || !strings.Contains(err.Error(), "audit refused") {
			t.Errorf("%s: %v, want the trigger's refusal", name, err)
		}
	}
	if after := lcCount(t, s, `SELECT count(*) FROM events`); after != before {
		t.Errorf("%d events after the rolled-back changes, want %d", after, before)
	}
	if st := lcState(t, s, "B"); st != store.StateActive {
		t.Errorf("B is %s", st)
	}
}

// evSeed writes n events for the school (CREATED, then RESETs).
func evSeed(t *testing.T, s *store.Store, tenant string, n int) {
	t.Helper()
	lcCredentialsEvent(t, s, tenant, "CREATED", tenant+"-0", nil)
	for i := 1; i < n; i++ {
		lcCredentialsEvent(t, s, tenant, "RESET", fmt.Sprintf("%s-%d", tenant, i), nil)
	}
}

// evClaim claims the next due event and holds it until release is called (at the latest when
// the test ends); it returns the claimed event (ok false when there was none) once the claim is
// made, and the delivery's error once it is recorded.
func evClaim(t *testing.T, s *store.Store, outcome store.Attempt) (ev store.OutboxEvent, ok bool, release func() error) {
	t.Helper()
	hold := make(chan struct{})
	var once sync.Once
	claimed := make(chan store.OutboxEvent, 1)
	errc := make(chan error, 1)
	go func() {
		got, err := s.DeliverNext(context.Background(), func(_ context.Context, e store.OutboxEvent, _ time.Time) store.Attempt {
			claimed <- e
			<-hold
			return outcome
		})
		if !got {
			close(claimed)
		}
		errc <- err
	}()
	var result error
	release = func() error {
		once.Do(func() {
			close(hold)
			result = <-errc
		})
		return result
	}
	t.Cleanup(func() { _ = release() }) // before the store closes: cleanups run last first
	ev, ok = <-claimed
	return ev, ok, release
}

// Workers, here three claims on one database, never hold one event twice, nor two events of one
// school at once: a school's next event waits until its head is delivered or failed.
func TestClaimsKeepEachSchoolInLine(t *testing.T) {
	t.Parallel()
	s := newStore(t, keyring(t))
	evSeed(t, s, "A", 3)
	evSeed(t, s, "B", 2)
	heads := map[string]int64{}
	for _, tn := range []string{"A", "B"} {
		heads[tn] = evAll(t, s, tn)[0].ID
	}
	delivered := store.Attempt{Outcome: store.AttemptDelivered}
	first, ok1, release1 := evClaim(t, s, delivered)
	second, ok2, release2 := evClaim(t, s, delivered)
	_, ok3, release3 := evClaim(t, s, delivered)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("claims: %v %v %v, want two (one per school) and none for the third", ok1, ok2, ok3)
	}
	if first.TenantID == second.TenantID || first.ID != heads[first.TenantID] || second.ID != heads[second.TenantID] {
		t.Errorf("claimed %d of %s and %d of %s; heads %v", first.ID, first.TenantID, second.ID, second.TenantID, heads)
	}
	for _, release := range []func() error{release1, release2, release3} {
		if err := release(); err != nil {
			t.Fatal(err)
		}
	}
	// The rest go out one school's event after the other, in order.
	var order []string
	for {
		got, err := s.DeliverNext(context.Background(), func(_ context.Context, e store.OutboxEvent, _ time.Time) store.Attempt {
			order = append(order, fmt.Sprintf("%s%d", e.TenantID, e.ID))
			return delivered
		})
		if err != nil {
			t.Fatal(err)
		}
		if !got {
			break
		}
	}
	if len(order) != 3 {
		t.Fatalf("delivered %v, want the three left", order)
	}
	for _, tn := range []string{"A", "B"} {
		all, err := s.ListEvents(context.Background(), store.EventFilter{TenantID: tn, Status: store.EventDelivered})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(all); i++ {
			if all[i-1].DeliveredAt.Before(*all[i].DeliveredAt) { // newest first
				t.Errorf("%s: event %d delivered before %d", tn, all[i-1].ID, all[i].ID)
			}
		}
	}
	if c, err := s.CountEvents(context.Background()); err != nil || c.Pending != 0 || c.Failed != 0 || c.OldestPending != nil {
		t.Errorf("counts %+v, %v", c, err)
	}
}

// What an attempt reports is recorded: a retry waits its backoff and blocks its school's later
// events; a failure frees them; an abandoned attempt (the worker stopped) leaves no trace.
func TestAttemptOutcomesAreRecorded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	evSeed(t, s, "A", 2)
	ids := []int64{evAll(t, s, "A")[0].ID, evAll(t, s, "A")[1].ID}
	attempt := func(a store.Attempt) (int64, bool) {
		t.Helper()
		var id int64
		got, err := s.DeliverNext(ctx, func(_ context.Context, e store.OutboxEvent, _ time.Time) store.Attempt {
			id = e.ID
			return a
		})
		if err != nil {
			t.Fatal(err)
		}
		return id, got
	}
	if id, _ := attempt(store.Attempt{Outcome: store.AttemptAbandoned}); id != ids[0] {
		t.Fatalf("claimed %d, want %d", id, ids[0])
	}
	if id, _ := attempt(store.Attempt{Outcome: store.AttemptRetry, RetryIn: time.Hour, Error: "HTTP 503"}); id != ids[0] {
		t.Fatalf("abandoned attempt was recorded: next claim %d", id)
	}
	if _, got := attempt(store.Attempt{Outcome: store.AttemptDelivered}); got {
		t.Fatal("a retry an hour away was claimed, or the school's next event overtook it")
	}
	ev, err := s.Event(ctx, fmt.Sprint(ids[0]))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Status != store.EventPending || ev.Attempts != 1 || ev.LastError != "HTTP 503" || ev.LastAttemptAt == nil ||
		time.Until(ev.NextAttemptAt) < 59*time.Minute {
		t.Errorf("after a retry: %+v", ev)
	}
	if due, ok, err := s.NextEventDue(ctx); err != nil || !ok || due < 59*time.Minute || due > time.Hour {
		t.Errorf("next due %v %v %v, want the head's hour (the waiting event behind it does not count)", due, ok, err)
	}
	if byMsg, err := s.Event(ctx, ev.MessageID); err != nil || byMsg.ID != ev.ID {
		t.Errorf("by message id: %+v, %v", byMsg, err)
	}
	// Give up on it: the next event of the school is free to go.
	if _, err := s.Pool().Exec(ctx, `UPDATE events SET next_attempt_at = now() WHERE id = $1`, ids[0]); err != nil {
		t.Fatal(err)
	}
	if id, _ := attempt(store.Attempt{Outcome: store.AttemptFailed, Error: "gave up"}); id != ids[0] {
		t.Fatalf("claimed %d", id)
	}
	if id, _ := attempt(store.Attempt{Outcome: store.AttemptDelivered}); id != ids[1] {
		t.Fatalf("after the failure claimed %d, want %d", id, ids[1])
	}
	failed, err := s.ListEvents(ctx, store.EventFilter{Status: store.EventFailed})
	if err != nil || len(failed) != 1 || failed[0].ID != ids[0] || failed[0].Attempts != 2 || failed[0].FailedAt == nil || failed[0].LastError != "gave up" {
		t.Fatalf("failed list %+v, %v", failed, err)
	}
	if c, _ := s.CountEvents(ctx); c.Failed != 1 || c.Pending != 0 {
		t.Errorf("counts %+v", c)
	}
	if _, ok, _ := s.NextEventDue(ctx); ok {
		t.Error("something is due with nothing pending")
	}
}

// An operator's retry queues a failed event again with a new window, sends a pending one at
// once, refuses a delivered one, one being sent and one that does not exist, and is audited.
func TestRetryEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	evSeed(t, s, "A", 2)
	evSeed(t, s, "B", 1)
	a := evAll(t, s, "A")
	b := evAll(t, s, "B")
	// A's first fails, its second is delivered; B's waits an hour.
	if _, err := s.Pool().Exec(ctx, `UPDATE events SET status = 'failed', failed_at = now(), attempts = 40, window_start = now() - interval '4 days' WHERE id = $1`, a[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE events SET status = 'delivered', delivered_at = now() WHERE id = $1`, a[1].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE events SET next_attempt_at = now() + interval '1 hour', attempts = 7 WHERE id = $1`, b[0].ID); err != nil {
		t.Fatal(err)
	}

	ev, err := s.RetryEvent(ctx, fmt.Sprint(a[0].ID), "operator ops@x")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Status != store.EventPending || ev.Attempts != 0 || ev.FailedAt != nil || time.Since(ev.WindowStart) > time.Minute || time.Until(ev.NextAttemptAt) > 0 {
		t.Errorf("retried failed event %+v", ev)
	}
	if e := lcLastAudit(t, s, "A"); e.Action != "event.retried" || e.Actor != "operator ops@x" || e.Detail["previous_status"] != "failed" {
		t.Errorf("audit %+v", e)
	}
	pendingB, err := s.Event(ctx, fmt.Sprint(b[0].ID))
	if err != nil {
		t.Fatal(err)
	}
	ev, err = s.RetryEvent(ctx, pendingB.MessageID, "operator ops@x")
	if err != nil || ev.Attempts != 7 || !ev.WindowStart.Equal(pendingB.WindowStart) || time.Until(ev.NextAttemptAt) > 0 {
		t.Errorf("retried pending event %+v, %v (window %v)", ev, err, pendingB.WindowStart)
	}
	for ref, want := range map[string]error{
		fmt.Sprint(a[1].ID): store.ErrEventDelivered, "999999": store.ErrNotFound, "msg_nothing": store.ErrNotFound,
		"abc": store.ErrNotFound, "-1": store.ErrNotFound, "": store.ErrNotFound,
	} {
		if _, err := s.RetryEvent(ctx, ref, "op"); !errors.Is(err, want) {
			t.Errorf("retry %q: %v, want %v", ref, err, want)
		}
	}
	// One being sent is not touched, and the retry does not wait for it.
	held, ok, release := evClaim(t, s, store.Attempt{Outcome: store.AttemptDelivered})
	if !ok {
		t.Fatal("nothing to claim")
	}
	start := time.Now()
	if _, err := s.RetryEvent(ctx, fmt.Sprint(held.ID), "op"); !errors.Is(err, store.ErrEventBusy) || time.Since(start) > 5*time.Second {
		t.Errorf("retry of the event being sent: %v after %v", err, time.Since(start))
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}

	// Retry every failed event at once.
	if _, err := s.Pool().Exec(ctx, `UPDATE events SET status = 'failed', failed_at = now() WHERE status = 'pending'`); err != nil {
		t.Fatal(err)
	}
	n, err := s.RetryFailedEvents(ctx, "operator cli")
	if err != nil || n != 1 {
		t.Fatalf("retry failed: %d, %v", n, err)
	}
	if n, err := s.RetryFailedEvents(ctx, "operator cli"); err != nil || n != 0 {
		t.Fatalf("second retry failed: %d, %v", n, err)
	}
}

// The sweeper keeps delivered and failed events for the retention, drops pending ones only when
// asked (no receiver configured), and removes what a deleted school's worker was sending.
func TestSweepEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	evSeed(t, s, "D", 2) // first: D's head is the first claimed
	evSeed(t, s, "A", 4)
	a := evAll(t, s, "A")
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := s.Pool().Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE events SET status = 'delivered', delivered_at = now() - interval '10 days' WHERE id = $1`, a[0].ID)
	exec(`UPDATE events SET status = 'delivered', delivered_at = now() - interval '1 day' WHERE id = $1`, a[1].ID)
	exec(`UPDATE events SET status = 'failed', failed_at = now() - interval '10 days' WHERE id = $1`, a[2].ID)
	exec(`UPDATE events SET created_at = now() - interval '10 days' WHERE id = $1`, a[3].ID)
	// D is deleted while its first event is being sent: that one is skipped, then delivered.
	held, ok, release := evClaim(t, s, store.Attempt{Outcome: store.AttemptDelivered})
	if !ok || held.TenantID != "D" {
		t.Fatalf("claimed %+v first", held)
	}
	lcEndEvent(t, s, "D", "x", true)
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if got := evAll(t, s, "D"); len(got) != 2 || got[0].ID != held.ID || got[1].Type != store.EventDeleted {
		t.Fatalf("D after its deletion: %+v", got)
	}

	n, err := s.SweepEvents(ctx, store.EventSweep{Keep: 7 * 24 * time.Hour, Batch: 1})
	if err != nil || n != 3 {
		t.Fatalf("sweep: %d, %v; want the old delivered, the old failed and D's sent event", n, err)
	}
	if got := evAll(t, s, "A"); len(got) != 2 || got[0].ID != a[1].ID || got[1].ID != a[3].ID {
		t.Errorf("A after the sweep: %+v", got)
	}
	if got := evAll(t, s, "D"); len(got) != 1 || got[0].Type != store.EventDeleted {
		t.Errorf("D after the sweep: %+v", got)
	}
	if n, err := s.SweepEvents(ctx, store.EventSweep{Keep: 7 * 24 * time.Hour, Undelivered: 3 * 24 * time.Hour}); err != nil || n != 1 {
		t.Fatalf("sweep without a receiver: %d, %v; want the 10-day-old pending event", n, err)
	}
	if got := evAll(t, s, "A"); len(got) != 1 || got[0].ID != a[1].ID {
		t.Errorf("A after the second sweep: %+v", got)
	}
}

// Many claims at once, from many connections, never hand out one event twice or two events of
// one school together.
func TestConcurrentClaimsNeverOverlap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	for _, tn := range []string{"A", "B", "C"} {
		evSeed(t, s, tn, 5)
	}
	var (
		mu       sync.Mutex
		inFlight = map[string]bool{}
		seen     = map[int64]int{}
		last     = map[string]int64{}
		wg       sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				got, err := s.DeliverNext(ctx, func(_ context.Context, e store.OutboxEvent, _ time.Time) store.Attempt {
					mu.Lock()
					if inFlight[e.TenantID] {
						t.Errorf("two events of %s in flight", e.TenantID)
					}
					if e.ID < last[e.TenantID] {
						t.Errorf("%s: event %d after %d", e.TenantID, e.ID, last[e.TenantID])
					}
					inFlight[e.TenantID], last[e.TenantID] = true, e.ID
					seen[e.ID]++
					mu.Unlock()
					time.Sleep(2 * time.Millisecond)
					mu.Lock()
					inFlight[e.TenantID] = false
					mu.Unlock()
					return store.Attempt{Outcome: store.AttemptDelivered}
				})
				if err != nil {
					t.Error(err)
					return
				}
				if !got {
					if c, _ := s.CountEvents(ctx); c.Pending == 0 {
						return
					}
					time.Sleep(time.Millisecond) // another worker holds the last heads
				}
			}
		})
	}
	wg.Wait()
	if len(seen) != 15 {
		t.Errorf("%d events delivered, want 15", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %d delivered %d times", id, n)
		}
	}
}

// BenchmarkClaimWithBacklog is a worker's look for work while the app has been down for long:
// 10,000 pending events of 2,000 schools, every school's head backing off. The claim finds
// nothing due and NextEventDue finds the earliest head; both walk the pending events.
//
//	go test -run '^$' -bench BenchmarkClaimWithBacklog ./internal/store
func BenchmarkClaimWithBacklog(b *testing.B) {
	ctx := context.Background()
	s := newStore(b, keyring(b))
	for _, q := range []string{
		`INSERT INTO tenants (tenant_id, state) SELECT 'b' || g, 'active' FROM generate_series(1, 2000) g`,
		`INSERT INTO events (message_id, tenant_id, type, data, next_attempt_at)
		 SELECT 'msg_' || g, 'b' || (g % 2000 + 1), 'school.credentials_reset', '{}', now() + interval '1 hour'
		 FROM generate_series(1, 10000) g`,
		`ANALYZE events`,
	} {
		if _, err := s.Pool().Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("claim", func(b *testing.B) {
		for b.Loop() {
			got, err := s.DeliverNext(ctx, func(context.Context, store.OutboxEvent, time.Time) store.Attempt {
				b.Fatal("claimed an event that is not due")
				return store.Attempt{}
			})
			if err != nil || got {
				b.Fatal(got, err)
			}
		}
	})
	b.Run("next-due", func(b *testing.B) {
		for b.Loop() {
			if _, ok, err := s.NextEventDue(ctx); err != nil || !ok {
				b.Fatal(ok, err)
			}
		}
	})
}
