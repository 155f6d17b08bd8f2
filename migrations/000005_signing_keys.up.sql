-- signing_keys: the keys that sign the X-Untis-Identity assertion the gateway gives the partner's
-- app. Every replica signs with the same key, so the key lives here, its private half sealed
-- under ENCRYPTION_KEYS (additional data: tenant '' and column signing_keys.private_key).
--
-- A key is published in the JWKS from created_at until retires_at, and signs from signs_from
-- (a scheduled key is published a while before it signs, so that every replica and every
-- upstream that caches the JWKS knows it first). The newest key whose signs_from has come signs;
-- a key that stopped signing stays published until its last assertion has expired.
CREATE TABLE signing_keys (
    kid                 text        PRIMARY KEY,
    alg                 text        NOT NULL,
    private_key_sealed  bytea       NOT NULL,
    created_at          timestamptz NOT NULL,
    signs_from          timestamptz NOT NULL,
    retires_at          timestamptz
);

CREATE INDEX signing_keys_signs_from_idx ON signing_keys (signs_from DESC);
