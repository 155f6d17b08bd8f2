DROP INDEX IF EXISTS operator_sessions_expiry_idx;
DROP TABLE IF EXISTS attempt_limits;
ALTER TABLE tenants DROP COLUMN IF EXISTS credentials_version;
ALTER TABLE tenants DROP COLUMN IF EXISTS last_webhook_event;
DROP INDEX IF EXISTS webhook_receipts_received_idx;
