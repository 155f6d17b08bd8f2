-- The partner server's schema. Every table that holds a school's data carries tenant_id, and its
-- indexes start with it, with one deliberate exception: auth_flows and sessions are found by the
-- SHA-256 of a 256-bit random id (the only thing the browser holds), which is globally unique, so
-- their primary key is that hash alone (one indexed read per request); each still has an index
-- that starts with tenant_id for per-school deletes and counts.
--
-- Sealed columns (bytea, suffix _sealed) hold AES-256-GCM ciphertexts from internal/secret: key id,
-- nonce, ciphertext; the additional data binds each to its tenant id and column.

-- tenants: one row per school (the platform's tenantId, a string). A deleted school keeps its row
-- in state 'deleted' (informational fields wiped), so the lifecycle stays auditable.
CREATE TABLE tenants (
    tenant_id                   text        PRIMARY KEY CHECK (tenant_id <> '' AND length(tenant_id) <= 64),
    state                       text        NOT NULL CHECK (state IN ('pending_setup', 'active', 'deactivated', 'deleted')),
    name                        text        NOT NULL DEFAULT '',
    -- Informational fields from the credentials webhook: stored, never used for access decisions.
    country                     text        NOT NULL DEFAULT '',
    region                      text        NOT NULL DEFAULT '',
    language                    text        NOT NULL DEFAULT '',
    host                        text        NOT NULL DEFAULT '',
    activator_email             text        NOT NULL DEFAULT '',
    activator_username          text        NOT NULL DEFAULT '',
    school_email                text        NOT NULL DEFAULT '',
    school_phone                text        NOT NULL DEFAULT '',
    -- Credential health, set by the token cache when the platform refuses the credentials.
    credentials_failing_since   timestamptz,
    credentials_failure_reason  text        NOT NULL DEFAULT '',
    last_webhook_at             timestamptz,
    state_changed_at            timestamptz NOT NULL DEFAULT now(),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tenants_state_idx ON tenants (state, tenant_id);

-- tenant_credentials: versioned; the highest version of a tenant is its current credentials.
-- clientId is not secret (one platform application usually has one clientId for every school);
-- the OIDC secret and the platform password are sealed.
CREATE TABLE tenant_credentials (
    tenant_id        text        NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    version          integer     NOT NULL CHECK (version > 0),
    client_id        text        NOT NULL,
    secret_sealed    bytea       NOT NULL,
    password_sealed  bytea       NOT NULL,
    source           text        NOT NULL CHECK (source IN ('webhook', 'manual', 'operator')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

-- tenant_settings: the answers to SETUP_FIELDS_FILE (onboarding scenario 2).
CREATE TABLE tenant_settings (
    tenant_id   text        NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    name        text        NOT NULL,
    value       text        NOT NULL,
    updated_by  text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

-- users: identified by (tenant_id, sub) only; the profile comes from OneRoster.
CREATE TABLE users (
    tenant_id      text        NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    sub            text        NOT NULL CHECK (sub <> ''),
    role           text        NOT NULL DEFAULT '',
    given_name     text        NOT NULL DEFAULT '',
    family_name    text        NOT NULL DEFAULT '',
    email          text        NOT NULL DEFAULT '',
    username       text        NOT NULL DEFAULT '',
    orgs           jsonb       NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_login_at  timestamptz,
    PRIMARY KEY (tenant_id, sub)
);

-- auth_flows: one row per login attempt (several tabs may log in at once); consumed once with
-- DELETE ... RETURNING.
CREATE TABLE auth_flows (
    id_hash              bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    tenant_id            text        NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    state                text        NOT NULL,
    nonce                text        NOT NULL,
    pkce_verifier_sealed bytea       NOT NULL,
    return_to            text        NOT NULL DEFAULT '/',
    launch               jsonb       NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL DEFAULT now(),
    expires_at           timestamptz NOT NULL
);

CREATE INDEX auth_flows_tenant_idx ON auth_flows (tenant_id, expires_at);

-- sessions: server-side; the cookie holds a random id, the table its SHA-256.
CREATE TABLE sessions (
    id_hash           bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    tenant_id         text        NOT NULL,
    sub               text        NOT NULL,
    csrf_token        bytea       NOT NULL,
    launch            jsonb       NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_seen_at      timestamptz NOT NULL DEFAULT now(),
    idle_expires_at   timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    FOREIGN KEY (tenant_id, sub) REFERENCES users (tenant_id, sub) ON DELETE CASCADE
);

CREATE INDEX sessions_tenant_idx ON sessions (tenant_id, sub);

-- webhook_receipts: the ledger of every verified webhook body, kept forever (even after a school
-- is deleted), so a duplicate or a replayed old event changes nothing.
CREATE TABLE webhook_receipts (
    tenant_id    text        NOT NULL,
    body_sha256  bytea       NOT NULL CHECK (length(body_sha256) = 32),
    event_type   text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, body_sha256)
);

-- audit_events: who did what to which school, when; never secret values. Kept after deletion.
-- tenant_id is '' for events that concern no school (e.g. an operator account).
CREATE TABLE audit_events (
    tenant_id   text        NOT NULL,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    detail      jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX audit_events_tenant_at_idx ON audit_events (tenant_id, at DESC);

-- operators: the partner's own staff, for the console (/admin).
CREATE TABLE operators (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email            text        NOT NULL CHECK (email = lower(email) AND email <> ''),
    password_hash    text        NOT NULL,
    failed_attempts  integer     NOT NULL DEFAULT 0,
    locked_until     timestamptz,
    last_login_at    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX operators_email_idx ON operators (email);

CREATE TABLE operator_sessions (
    id_hash          bytea       PRIMARY KEY CHECK (length(id_hash) = 32),
    operator_id      bigint      NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    csrf_token       bytea       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    idle_expires_at  timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL
);

CREATE INDEX operator_sessions_operator_idx ON operator_sessions (operator_id);
