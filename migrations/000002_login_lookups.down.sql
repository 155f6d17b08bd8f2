DROP INDEX IF EXISTS sessions_idle_expiry_idx;
DROP INDEX IF EXISTS sessions_expiry_idx;
DROP INDEX IF EXISTS auth_flows_expiry_idx;
DROP INDEX IF EXISTS auth_flows_state_idx;
