ALTER TABLE operators ADD COLUMN failed_attempts integer NOT NULL DEFAULT 0, ADD COLUMN locked_until timestamptz;

CREATE TABLE attempt_limits (
    bucket        text        PRIMARY KEY,
    window_start  timestamptz NOT NULL,
    hits          integer     NOT NULL
);
CREATE INDEX attempt_limits_window_idx ON attempt_limits (window_start);

DROP TABLE attempt_buckets;
