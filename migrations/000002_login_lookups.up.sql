-- A login callback whose flow cookie the browser withheld (third-party cookies blocked in an
-- iFrame) still carries state: finding the flow by it lets the server offer "open in a new tab"
-- with the original launch context, and remove the flow that can no longer complete.
CREATE INDEX auth_flows_state_idx ON auth_flows (state);

-- The sweeper deletes expired flows and sessions without scanning the tables.
CREATE INDEX auth_flows_expiry_idx ON auth_flows (expires_at);
CREATE INDEX sessions_expiry_idx ON sessions (expires_at);
CREATE INDEX sessions_idle_expiry_idx ON sessions (idle_expires_at);
