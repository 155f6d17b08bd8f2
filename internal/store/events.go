package store

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The outbox of school lifecycle events for the partner's app (table events). Every lifecycle
// change writes its event with one INSERT inside the change's own transaction (insertEvent), so
// an event exists exactly when its change committed; internal/events delivers them. What an
// event says is decided here, next to the change; how it travels is internal/events' business.

// Event types, the "type" of the payload.
const (
	EventActivated        = "school.activated"         // the school became active (webhook, /activate, operator)
	EventPendingSetup     = "school.pending_setup"     // activated, but its setup must be completed first
	EventSetupCompleted   = "school.setup_completed"   // setup answers made a pending school active
	EventSetupChanged     = "school.setup_changed"     // an administrator changed the setup answers
	EventCredentialsReset = "school.credentials_reset" // new credentials for a school that keeps its state
	EventDeactivated      = "school.deactivated"       // access ended; the school's data stays for a reactivation
	EventDeleted          = "school.deleted"           // the app must delete the school's personal data
)

// EventTypes lists every event type, in lifecycle order.
var EventTypes = []string{EventActivated, EventPendingSetup, EventSetupCompleted, EventSetupChanged,
	EventCredentialsReset, EventDeactivated, EventDeleted}

// Delivery states of an event.
const (
	EventPending   = "pending"
	EventDelivered = "delivered"
	EventFailed    = "failed"
)

// SourceSetup is the source of setup events: a school administrator on /setup.
const SourceSetup = "setup"

// ActionDeletePersonalData is the action_required of a school.deleted event.
const ActionDeletePersonalData = "delete_personal_data"

// eventsChannel is notified when events are queued again by an operator (a retry), so every
// replica's worker looks at once. New events need no notification of their own: the change that
// writes one already notifies tenantChannel, which wakes the workers too.
const eventsChannel = "events_queued"

// OutboxEvent is one event of the outbox with its delivery state.
type OutboxEvent struct {
	ID        int64  // orders a school's events; the payload's data.sequence
	MessageID string // the Standard Webhooks webhook-id, the same on every attempt
	TenantID  string
	Type      string
	// Data is the payload's "data" object (JSON), with its sequence.
	Data          json.RawMessage
	CreatedAt     time.Time // the payload's timestamp
	Status        string
	Attempts      int
	WindowStart   time.Time // retries end at WindowStart + the retry window
	NextAttemptAt time.Time
	LastAttemptAt *time.Time
	LastError     string
	DeliveredAt   *time.Time
	FailedAt      *time.Time
}

// eventColumns are the columns scanned by scanEvent, for an events table aliased e.
const eventColumns = `e.id, e.message_id, e.tenant_id, e.type, e.data || jsonb_build_object('sequence', e.id), e.created_at,
	e.status, e.attempts, e.window_start, e.next_attempt_at, e.last_attempt_at, e.last_error, e.delivered_at, e.failed_at`

func (e *OutboxEvent) fields() []any {
	return []any{&e.ID, &e.MessageID, &e.TenantID, &e.Type, &e.Data, &e.CreatedAt,
		&e.Status, &e.Attempts, &e.WindowStart, &e.NextAttemptAt, &e.LastAttemptAt, &e.LastError, &e.DeliveredAt, &e.FailedAt}
}

func scanEvent(row pgx.CollectableRow) (OutboxEvent, error) {
	var e OutboxEvent
	err := row.Scan(e.fields()...)
	return e, err
}

var messageIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newMessageID is a webhook-id: "msg_" and 128 random bits, unique across every deployment (a
// receiver may keep the ids it has seen from several).
func newMessageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return "msg_" + messageIDEncoding.EncodeToString(b[:])
}

// insertEvent writes one event of the school into the outbox, in tx (the lifecycle change's
// transaction, which holds the school's row). data must never hold a credential; the school's
// current name and tenantId are added here. One statement: the change's cost grows by one INSERT.
func insertEvent(ctx context.Context, tx pgx.Tx, tenantID, typ string, data map[string]any) error {
	data["tenantId"] = tenantID
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("event %s: %w", typ, err)
	}
	tag, err := tx.Exec(ctx, `
		INSERT INTO events (message_id, tenant_id, type, data)
		SELECT $1, t.tenant_id, $3, CASE WHEN t.name <> '' THEN $4::jsonb || jsonb_build_object('name', t.name) ELSE $4::jsonb END
		FROM tenants t WHERE t.tenant_id = $2`, newMessageID(), tenantID, typ, b)
	if err != nil {
		return fmt.Errorf("event %s: %w", typ, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("event %s: tenant %s has no row", typ, tenantID)
	}
	return nil
}

// insertCredentialsEvent writes the event of credentials stored by a webhook, /activate or an
// operator: the school became active or pending setup, or it kept its state and only its
// credentials changed.
func insertCredentialsEvent(ctx context.Context, tx pgx.Tx, tenantID, prev, state, source string) error {
	typ := EventCredentialsReset
	msg := "The school's platform credentials were replaced (" + sourceWords(source) + "). The server uses the new ones; " +
		"nothing changes for the school's users and nothing is to be done in the app."
	switch {
	case state == StateActive && prev != StateActive:
		typ = EventActivated
		msg = "The school was activated (" + sourceWords(source) + "): its users can sign in to the app."
	case state == StatePendingSetup && prev != StatePendingSetup:
		typ = EventPendingSetup
		msg = "The school was activated (" + sourceWords(source) + ") and waits for one of its administrators to complete the setup; " +
			"until then its other users are told that the school is being set up."
	}
	return insertEvent(ctx, tx, tenantID, typ, map[string]any{
		"state": state, "previousState": prev, "source": source, "message": msg})
}

// insertSetupEvent writes the event of saved setup answers: completed (the school became
// active) or changed. answers are all of the school's answers after the save.
func insertSetupEvent(ctx context.Context, tx pgx.Tx, tenantID, prev, state string, answers map[string]string, changed []string) error {
	typ, msg := EventSetupChanged, "An administrator of the school changed its setup answers."
	if prev == StatePendingSetup && state == StateActive {
		typ, msg = EventSetupCompleted, "An administrator of the school completed its setup: the school is active and its users can sign in to the app."
	}
	return insertEvent(ctx, tx, tenantID, typ, map[string]any{
		"state": state, "previousState": prev, "source": SourceSetup, "setup": answers, "changed": changed, "message": msg})
}

// insertEndEvent writes the event of a deactivation or a deletion. actor is the audit trail's
// ("webhook", or an operator); detail carries the platform's reason of a webhook.
func insertEndEvent(ctx context.Context, tx pgx.Tx, tenantID, prev, state, actor string, detail map[string]any) error {
	source := SourceOperator
	if actor == "webhook" {
		source = SourceWebhook
	}
	data := map[string]any{"state": state, "previousState": prev, "source": source}
	if source == SourceWebhook {
		// The platform's reason; an operator's own words stay in the audit trail.
		for key, field := range map[string]string{"reason_type": "reasonType", "reason_text": "reasonText"} {
			if v, ok := detail[key].(string); ok && v != "" {
				data[field] = v
			}
		}
	}
	typ := EventDeactivated
	data["message"] = "The school was deactivated (" + sourceWords(source) + "): its users can no longer sign in and the server " +
		"no longer calls the platform for it. Keep its data: a reactivation brings the school back as it was."
	if state == StateDeleted {
		typ = EventDeleted
		data["action_required"] = ActionDeletePersonalData
		data["message"] = "The school was deleted (" + sourceWords(source) + "). Delete all personal data of this school that the app " +
			"holds: its users, what they created, and the school's settings. This server has deleted its own copy."
	}
	return insertEvent(ctx, tx, tenantID, typ, data)
}

func sourceWords(source string) string {
	switch source {
	case SourceWebhook:
		return "by the Untis Platform"
	case SourceManual:
		return "by a school administrator who entered the credentials by hand"
	case SourceOperator:
		return "by an operator of the app's provider"
	}
	return source
}

// purgeEventsSQL deletes a deleted school's events, which may hold its name and setup answers:
// delivered, failed and not yet delivered alike (a pending school.activated is moot once the
// school is gone), all but its school.deleted events. An event being sent at this moment is
// locked by its worker and skipped, so a deletion never waits for a partner's app; the sweeper
// removes it once it is sent (SweepEvents).
const purgeEventsSQL = `DELETE FROM events WHERE id IN (SELECT id FROM events WHERE tenant_id = $1 AND type <> '` + EventDeleted + `'
	FOR UPDATE SKIP LOCKED)`

// Attempt is what a delivery reports about one attempt (DeliverNext).
type Attempt struct {
	// Outcome: AttemptDelivered, AttemptRetry (RetryIn from now), AttemptFailed (given up), or
	// AttemptAbandoned (stopped before an answer: nothing is recorded, the event stays due).
	Outcome int
	RetryIn time.Duration
	Error   string // why the attempt failed, for the console; never a secret
}

// Attempt outcomes.
const (
	AttemptDelivered = iota + 1
	AttemptRetry
	AttemptFailed
	AttemptAbandoned
)

// claimSQL takes the due event that heads its school's line: the oldest pending event of its
// school (a later one waits until the earlier ones were delivered or failed), skipping rows that
// another worker holds. A school whose head is being sent is skipped as a whole: its head is
// locked, and its next event is not a head while the locked one is pending.
const claimSQL = `
	SELECT ` + eventColumns + `, clock_timestamp()
	FROM events e
	WHERE e.status = 'pending' AND e.next_attempt_at <= clock_timestamp()
	  AND NOT EXISTS (SELECT 1 FROM events p WHERE p.tenant_id = e.tenant_id AND p.status = 'pending' AND p.id < e.id)
	ORDER BY e.next_attempt_at, e.id
	LIMIT 1
	FOR UPDATE OF e SKIP LOCKED`

// DeliverNext claims the next due event and calls deliver with it while holding its row: no
// other worker, on any replica, sends it or a later event of its school until deliver returns
// and its outcome is recorded. now is the database's clock at the claim. It reports whether an
// event was claimed. The row lock lasts for one attempt (bounded by the delivery's timeout), on
// a connection of the pool; if the process dies meanwhile, the lock goes with its connection
// and the event is due again, unrecorded: at least once.
func (s *Store) DeliverNext(ctx context.Context, deliver func(ctx context.Context, ev OutboxEvent, now time.Time) Attempt) (bool, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("claim event: %w", err)
	}
	defer func() {
		// A rollback that outlives a cancelled ctx returns the connection clean to the pool.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	var (
		ev  OutboxEvent
		now time.Time
	)
	err = tx.QueryRow(ctx, claimSQL).Scan(append(ev.fields(), &now)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim event: %w", err)
	}
	a := deliver(ctx, ev, now)
	// The answer is in: record it even when ctx ended meanwhile, or the event is sent again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	errText := truncateReason(a.Error)
	switch a.Outcome {
	case AttemptDelivered:
		_, err = tx.Exec(rctx, `UPDATE events SET status = 'delivered', delivered_at = clock_timestamp(), attempts = attempts + 1,
			last_attempt_at = $2, last_error = '' WHERE id = $1`, ev.ID, now)
	case AttemptRetry:
		_, err = tx.Exec(rctx, `UPDATE events SET attempts = attempts + 1, last_attempt_at = $2, last_error = $3,
			next_attempt_at = clock_timestamp() + make_interval(secs => $4) WHERE id = $1`, ev.ID, now, errText, max(a.RetryIn, 0).Seconds())
	case AttemptFailed:
		_, err = tx.Exec(rctx, `UPDATE events SET status = 'failed', failed_at = clock_timestamp(), attempts = attempts + 1,
			last_attempt_at = $2, last_error = $3 WHERE id = $1`, ev.ID, now, errText)
	default:
		return true, nil // abandoned: the deferred rollback leaves the event as it was
	}
	if err != nil {
		return true, fmt.Errorf("record delivery of event %d: %w", ev.ID, err)
	}
	if err := tx.Commit(rctx); err != nil {
		return true, fmt.Errorf("record delivery of event %d: %w", ev.ID, err)
	}
	return true, nil
}

// NextEventDue reports how long until the earliest head of line is due (negative when one is due
// but held by a worker); ok is false when nothing is pending.
func (s *Store) NextEventDue(ctx context.Context) (time.Duration, bool, error) {
	var secs *float64
	err := s.pool.QueryRow(ctx, `
		SELECT EXTRACT(EPOCH FROM min(e.next_attempt_at) - clock_timestamp())::float8 FROM events e
		WHERE e.status = 'pending'
		  AND NOT EXISTS (SELECT 1 FROM events p WHERE p.tenant_id = e.tenant_id AND p.status = 'pending' AND p.id < e.id)`).Scan(&secs)
	if err != nil {
		return 0, false, fmt.Errorf("next event due: %w", err)
	}
	if secs == nil {
		return 0, false, nil
	}
	return time.Duration(*secs * float64(time.Second)), true, nil
}

// EventFilter selects events for ListEvents.
type EventFilter struct {
	Status   string // EventPending, EventDelivered, EventFailed; "" for every state
	TenantID string // "" for every school
	Limit    int    // at most this many (default 100)
}

// ListEvents returns events: pending ones oldest first (the order they will be sent in), the
// others newest first.
func (s *Store) ListEvents(ctx context.Context, f EventFilter) ([]OutboxEvent, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	order := "e.id DESC"
	if f.Status == EventPending {
		order = "e.id"
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events e
		WHERE ($1 = '' OR e.status = $1) AND ($2 = '' OR e.tenant_id = $2)
		ORDER BY `+order+` LIMIT $3`, f.Status, f.TenantID, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEvent)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return out, nil
}

// Event returns one event by its id (the number) or its message id (msg_...).
func (s *Store) Event(ctx context.Context, ref string) (OutboxEvent, error) {
	id, msgID := parseEventRef(ref)
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events e WHERE e.id = $1 OR e.message_id = $2`, id, msgID)
	if err != nil {
		return OutboxEvent{}, fmt.Errorf("event %s: %w", ref, err)
	}
	ev, err := pgx.CollectExactlyOneRow(rows, scanEvent)
	if errors.Is(err, pgx.ErrNoRows) {
		return OutboxEvent{}, ErrNotFound
	}
	if err != nil {
		return OutboxEvent{}, fmt.Errorf("event %s: %w", ref, err)
	}
	return ev, nil
}

// parseEventRef reads an event reference: a number is an id, msg_... a message id.
func parseEventRef(ref string) (id int64, msgID string) {
	if strings.HasPrefix(ref, "msg_") {
		return 0, ref
	}
	id, err := strconv.ParseInt(ref, 10, 64)
	if err != nil || id <= 0 {
		return 0, "-" // matches nothing
	}
	return id, "-"
}

// ErrEventBusy is a retry of an event that is being sent at this moment.
var ErrEventBusy = errors.New("the event is being sent at this moment")

// ErrEventDelivered is a retry of an event that was delivered already.
var ErrEventDelivered = errors.New("the event was delivered already")

// RetryEvent queues one event again (by id or message id): a failed event becomes pending with
// a new retry window, a pending one is due at once (its backoff ends now). The school's order
// holds among the events not yet sent: a retried event goes before its school's later pending
// ones. actor goes to the school's audit trail. Every replica's worker hears of it at once.
func (s *Store) RetryEvent(ctx context.Context, ref, actor string) (OutboxEvent, error) {
	id, msgID := parseEventRef(ref)
	var ev OutboxEvent
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Never wait for a worker: a locked row is one being sent right now.
		var status string
		err := tx.QueryRow(ctx, `SELECT id, status FROM events WHERE id = $1 OR message_id = $2 FOR UPDATE SKIP LOCKED`,
			id, msgID).Scan(&ev.ID, &status)
		if errors.Is(err, pgx.ErrNoRows) {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE id = $1 OR message_id = $2)`, id, msgID).Scan(&exists); err != nil {
				return err
			}
			if exists {
				return ErrEventBusy
			}
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if status == EventDelivered {
			return ErrEventDelivered
		}
		row, err := tx.Query(ctx, `
			UPDATE events e SET status = 'pending', next_attempt_at = clock_timestamp(), failed_at = NULL,
				window_start = CASE WHEN e.status = 'failed' THEN clock_timestamp() ELSE e.window_start END,
				attempts = CASE WHEN e.status = 'failed' THEN 0 ELSE e.attempts END
			WHERE e.id = $1 RETURNING `+eventColumns, ev.ID)
		if err != nil {
			return err
		}
		if ev, err = pgx.CollectExactlyOneRow(row, scanEvent); err != nil {
			return err
		}
		if err := audit(ctx, tx, ev.TenantID, actor, "event.retried", map[string]any{
			"event_id": ev.ID, "type": ev.Type, "previous_status": status}); err != nil {
			return err
		}
		return notifyEventsQueued(ctx, tx)
	})
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrEventBusy) || errors.Is(err, ErrEventDelivered) {
		return OutboxEvent{}, err
	}
	if err != nil {
		return OutboxEvent{}, fmt.Errorf("retry event %s: %w", ref, err)
	}
	return ev, nil
}

// RetryFailedEvents queues every failed event again, each with a new retry window (as
// RetryEvent), and returns how many. Each school's events go out in their order.
func (s *Store) RetryFailedEvents(ctx context.Context, actor string) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			UPDATE events SET status = 'pending', next_attempt_at = clock_timestamp(), window_start = clock_timestamp(),
				attempts = 0, failed_at = NULL
			WHERE status = 'failed' RETURNING tenant_id, id`)
		if err != nil {
			return err
		}
		perTenant := map[string][]int64{}
		var (
			tenantID string
			id       int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&tenantID, &id}, func() error {
			perTenant[tenantID] = append(perTenant[tenantID], id)
			n++
			return nil
		}); err != nil {
			return err
		}
		for tenantID, ids := range perTenant {
			if err := audit(ctx, tx, tenantID, actor, "event.retried", map[string]any{"event_ids": ids, "previous_status": EventFailed}); err != nil {
				return err
			}
		}
		if n == 0 {
			return nil
		}
		return notifyEventsQueued(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("retry failed events: %w", err)
	}
	return n, nil
}

func notifyEventsQueued(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, eventsChannel); err != nil {
		return fmt.Errorf("notify queued events: %w", err)
	}
	return nil
}

// EventCounts is the outbox at a glance (metrics, console).
type EventCounts struct {
	Pending, Failed int
	OldestPending   *time.Time // created_at of the oldest pending event
}

// CountEvents counts pending and failed events.
func (s *Store) CountEvents(ctx context.Context) (EventCounts, error) {
	var c EventCounts
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed'),
		       min(created_at) FILTER (WHERE status = 'pending')
		FROM events WHERE status <> 'delivered'`).Scan(&c.Pending, &c.Failed, &c.OldestPending)
	if err != nil {
		return EventCounts{}, fmt.Errorf("count events: %w", err)
	}
	return c, nil
}

// EventSweep says what SweepEvents deletes.
type EventSweep struct {
	// Keep is how long delivered and failed events are kept (from delivery or failure).
	Keep time.Duration
	// Undelivered, when positive, deletes pending events older than this: a deployment without
	// EVENTS_URL keeps its recent events for when a receiver is configured, not forever.
	Undelivered time.Duration
	// Batch bounds each delete (default 5000); SweepEvents repeats until a batch is not full.
	Batch int
}

// SweepEvents deletes what the outbox need not keep (see EventSweep), and a deleted school's
// events that were being sent while it was deleted (purgeEventsSQL skipped them). It returns
// how many rows it deleted.
func (s *Store) SweepEvents(ctx context.Context, p EventSweep) (int64, error) {
	if p.Batch <= 0 {
		p.Batch = 5000
	}
	stmts := []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE status = 'delivered' AND delivered_at < clock_timestamp() - make_interval(secs => $1) LIMIT $2)`,
			[]any{p.Keep.Seconds(), p.Batch}},
		{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE status = 'failed' AND failed_at < clock_timestamp() - make_interval(secs => $1) LIMIT $2)`,
			[]any{p.Keep.Seconds(), p.Batch}},
		{`DELETE FROM events WHERE id IN (SELECT e.id FROM events e JOIN tenants t ON t.tenant_id = e.tenant_id
			WHERE t.state = 'deleted' AND e.status <> 'pending' AND e.type <> '` + EventDeleted + `' LIMIT $1)`,
			[]any{p.Batch}},
	}
	if p.Undelivered > 0 {
		stmts = append(stmts, struct {
			sql  string
			args []any
		}{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE status = 'pending' AND created_at < clock_timestamp() - make_interval(secs => $1)
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, []any{p.Undelivered.Seconds(), p.Batch}})
	}
	var total int64
	for _, st := range stmts {
		for {
			tag, err := s.pool.Exec(ctx, st.sql, st.args...)
			if err != nil {
				return total, fmt.Errorf("sweep events: %w", err)
			}
			total += tag.RowsAffected()
			if tag.RowsAffected() < int64(p.Batch) {
				break
			}
		}
	}
	return total, nil
}
