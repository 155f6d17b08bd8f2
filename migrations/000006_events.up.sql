-- School lifecycle events for the partner's app (issue 14): a transactional outbox.
--
-- Every lifecycle change writes one row here in the same transaction as the change itself, so an
-- event exists exactly when its change committed. A delivery worker on each replica POSTs the
-- events to EVENTS_URL (Standard Webhooks), in order per school: only a school's oldest pending
-- event (its head of line) is ever claimed, with FOR UPDATE SKIP LOCKED, and the row stays locked
-- while it is being sent, so no two replicas send one event, or two events of one school, at the
-- same time.
--
-- id orders a school's events: its changes lock the school's row, so they commit in the order in
-- which their ids were taken. message_id is the Standard Webhooks webhook-id (random, the same on
-- every retry). data is the payload's "data" object, never a credential; type and created_at make
-- the rest of the body. A pending event is retried until window_start + EVENTS_RETRY_FOR, then
-- failed; an operator's retry starts its window again. Delivered and failed events are kept for
-- EVENTS_RETENTION; a deleted school's events, which may hold its name and setup answers, are
-- deleted with it (all but its school.deleted event).
CREATE TABLE events (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id       text        NOT NULL,
    tenant_id        text        NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    type             text        NOT NULL,
    data             jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    window_start     timestamptz NOT NULL DEFAULT clock_timestamp(),
    next_attempt_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_attempt_at  timestamptz,
    last_error       text        NOT NULL DEFAULT '',
    delivered_at     timestamptz,
    failed_at        timestamptz
);

-- A school's events in order: its head of line, its console listing, its deletion.
CREATE INDEX events_tenant_idx ON events (tenant_id, id);
-- What is due: the workers' claim walks this in order of next attempt.
CREATE INDEX events_due_idx ON events (next_attempt_at, id) WHERE status = 'pending';
-- The sweeper and the console's list of failed events.
CREATE INDEX events_done_idx ON events (status, id) WHERE status <> 'pending';
