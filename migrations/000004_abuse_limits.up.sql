-- Abuse limits that hand no attacker a lockout (issue 12).
--
-- attempt_buckets: leaky buckets for the guessing limits of /activate and the console's sign-in,
-- shared by every replica. A bucket belongs to a scope, a subject (an account's e-mail address or
-- a school's tenant id; '' for limits of a client network alone) and a client network (an IPv4
-- address or an IPv6 /64). subject and network are SHA-256 prefixes (hex), so the table names no
-- person. level is the number of recent attempts; it leaks away with time (each scope says how
-- fast), so counters decay instead of starting over at a window's edge. Written with
-- synchronous_commit off: a counter lost in a crash only grants a few more attempts.
CREATE TABLE attempt_buckets (
    scope       text             NOT NULL,
    subject     text             NOT NULL,
    network     text             NOT NULL,
    level       double precision NOT NULL CHECK (level >= 0),
    updated_at  timestamptz      NOT NULL,
    -- Whether the last attempt was refused (it then did not count).
    refused     boolean          NOT NULL DEFAULT false,
    PRIMARY KEY (scope, subject, network)
);

-- The sweeper removes buckets untouched for a day (every scope has leaked empty by then).
CREATE INDEX attempt_buckets_updated_idx ON attempt_buckets (updated_at);

-- The fixed-window counters and the per-account lock they replace: a lock per account let one
-- client keep the console closed to the right password from anywhere.
DROP TABLE attempt_limits;
ALTER TABLE operators DROP COLUMN failed_attempts, DROP COLUMN locked_until;
