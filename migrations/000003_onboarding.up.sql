-- Onboarding: what the webhook ledger, the console and the rate limits need.

-- The console lists a school's receipts and audit trail newest first.
CREATE INDEX webhook_receipts_received_idx ON webhook_receipts (tenant_id, received_at DESC);

-- Which webhook event last changed a school (the console's "last webhook" column).
ALTER TABLE tenants ADD COLUMN last_webhook_event text NOT NULL DEFAULT '';

-- The last credentials version ever given to a school. A deactivation wipes the credentials, and
-- version numbers must not start again at 1 after it: a refusal of the old version 1 would
-- otherwise be taken for a refusal of the new one.
ALTER TABLE tenants ADD COLUMN credentials_version integer NOT NULL DEFAULT 0;
UPDATE tenants t SET credentials_version = COALESCE((SELECT max(version) FROM tenant_credentials c WHERE c.tenant_id = t.tenant_id), 0);

-- attempt_limits: fixed-window counters for the rate limits of /activate and the console's
-- sign-in, shared by every replica. bucket is "scope:" + a SHA-256 (hex) of the key (a client IP,
-- a tenant id, an e-mail address), so the table names no person. Rows of windows that ended are
-- swept.
CREATE TABLE attempt_limits (
    bucket        text        PRIMARY KEY,
    window_start  timestamptz NOT NULL,
    hits          integer     NOT NULL
);

CREATE INDEX attempt_limits_window_idx ON attempt_limits (window_start);

-- The sweeper removes expired console sessions too.
CREATE INDEX operator_sessions_expiry_idx ON operator_sessions (expires_at);
