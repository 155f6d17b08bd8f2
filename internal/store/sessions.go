package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a school user, identified by (TenantID, Sub) and nothing else; the profile comes from
// the platform's OneRoster users endpoint at each sign-in.
type User struct {
	TenantID   string
	Sub        string
	Role       string
	GivenName  string
	FamilyName string
	Email      string
	Username   string
	Orgs       []OrgRef
}

// OrgRef is one of the user's organisations (schools) as OneRoster names it.
type OrgRef struct {
	SourcedID string `json:"sourcedId"`
	Type      string `json:"type,omitempty"`
}

// Login is what a completed sign-in writes: the user's profile and a new session.
type Login struct {
	User          User
	SessionIDHash []byte
	CSRFToken     []byte
	Launch        map[string]string
	Now           time.Time
	IdleExpiresAt time.Time
	ExpiresAt     time.Time
	// ReplacesIDHash is the browser's previous session (nil if none): the new sign-in ends it.
	ReplacesIDHash []byte
}

// Session is a signed-in browser, with its user and school.
type Session struct {
	IDHash        []byte
	TenantID      string
	Sub           string
	CSRFToken     []byte
	Launch        map[string]string
	CreatedAt     time.Time
	LastSeenAt    time.Time
	IdleExpiresAt time.Time
	ExpiresAt     time.Time
	User          User
	TenantState   string
	TenantName    string
	// TenantLanguage and TenantCountry are the school's informational fields from its
	// credentials webhook: they pick the pages' language (after the user's own choice) and the
	// time zone of dates, never an access decision.
	TenantLanguage string
	TenantCountry  string
}

// CreateLogin upserts the user's profile, creates the session and ends the one it replaces, in
// one statement (one commit), and returns the school's state. The tenant must be active or
// pending setup at that moment; otherwise nothing is written and ErrNotFound is returned.
func (s *Store) CreateLogin(ctx context.Context, l Login) (string, error) {
	orgs, err := json.Marshal(l.User.Orgs)
	if err != nil {
		return "", fmt.Errorf("create login: %w", err)
	}
	if l.User.Orgs == nil {
		orgs = []byte("[]")
	}
	launch, err := json.Marshal(nonNilMap(l.Launch))
	if err != nil {
		return "", fmt.Errorf("create login: %w", err)
	}
	u := l.User
	// The data-modifying CTEs run in one statement: the session's foreign key sees the user row
	// inserted beside it, and the tenant check and the inserts share one snapshot. Replicas that
	// cache sessions hear of the ones whose copies went stale (sessionChannel): the replaced one,
	// and the user's other sessions when the profile changed (a new role must not wait for a
	// cache entry to expire). The notifications go out at commit, and only then.
	var (
		n, stale int
		state    string
	)
	err = s.relaxed.QueryRow(ctx, `
		WITH school AS (
			-- FOR SHARE waits for a deactivation in progress and then sees its outcome, so no
			-- session is created beside (and survives) the deactivation's delete of sessions.
			SELECT tenant_id FROM tenants WHERE tenant_id = $1 AND state IN ('active', 'pending_setup') FOR SHARE
		), prev AS (
			-- The profile as it was before this statement (its snapshot).
			SELECT role, given_name, family_name, email, username, orgs FROM users WHERE tenant_id = $1 AND sub = $2
		), usr AS (
			INSERT INTO users (tenant_id, sub, role, given_name, family_name, email, username, orgs, updated_at, last_login_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $9 FROM school
			ON CONFLICT (tenant_id, sub) DO UPDATE SET
				role = EXCLUDED.role, given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
				email = EXCLUDED.email, username = EXCLUDED.username, orgs = EXCLUDED.orgs,
				updated_at = EXCLUDED.updated_at, last_login_at = EXCLUDED.last_login_at
			RETURNING tenant_id, sub
		), replaced AS (
			DELETE FROM sessions WHERE id_hash = $10 RETURNING id_hash
		), created AS (
			INSERT INTO sessions (id_hash, tenant_id, sub, csrf_token, launch, created_at, last_seen_at, idle_expires_at, expires_at)
			SELECT $11, tenant_id, sub, $12, $13, $9, $9, $14, $15 FROM usr
			RETURNING 1
		), profile_changed AS (
			SELECT 1 FROM prev, usr
			WHERE (prev.role, prev.given_name, prev.family_name, prev.email, prev.username, prev.orgs)
			      IS DISTINCT FROM ($3, $4, $5, $6, $7, $8::jsonb)
		), stale AS (
			SELECT id_hash FROM replaced
			UNION
			-- The snapshot's sessions: not the one created here. The EXISTS is checked once,
			-- before the scan, so an unchanged profile (the usual case) reads no session.
			SELECT id_hash FROM sessions
			WHERE EXISTS (SELECT 1 FROM profile_changed) AND tenant_id = $1 AND sub = $2
		)
		SELECT (SELECT count(*) FROM created), COALESCE((SELECT state FROM tenants WHERE tenant_id = $1), ''),
		       (SELECT count(pg_notify($16, encode(id_hash, 'hex'))) FROM stale)`,
		u.TenantID, u.Sub, u.Role, u.GivenName, u.FamilyName, u.Email, u.Username, orgs, l.Now,
		l.ReplacesIDHash, l.SessionIDHash, l.CSRFToken, launch, l.IdleExpiresAt, l.ExpiresAt, sessionChannel).Scan(&n, &state, &stale)
	if err != nil {
		return "", fmt.Errorf("create session for tenant %s: %w", u.TenantID, err)
	}
	if n != 1 {
		return "", fmt.Errorf("create session for tenant %s: school not active: %w", u.TenantID, ErrNotFound)
	}
	return state, nil
}

// SessionByID returns the live session with the given id hash: not idle too long, not past its
// absolute expiry, and of a school that is active or pending setup. Anything else is ErrNotFound.
// It is one indexed read.
func (s *Store) SessionByID(ctx context.Context, idHash []byte, now time.Time) (Session, error) {
	var (
		ss           Session
		launch, orgs []byte
	)
	err := s.relaxed.QueryRow(ctx, `
		SELECT s.tenant_id, s.sub, s.csrf_token, s.launch, s.created_at, s.last_seen_at, s.idle_expires_at, s.expires_at,
		       u.role, u.given_name, u.family_name, u.email, u.username, u.orgs, t.state, t.name, t.language, t.country
		FROM sessions s
		JOIN users u ON u.tenant_id = s.tenant_id AND u.sub = s.sub
		JOIN tenants t ON t.tenant_id = s.tenant_id
		WHERE s.id_hash = $1 AND s.idle_expires_at > $2 AND s.expires_at > $2
		  AND t.state IN ('active', 'pending_setup')`, idHash, now).Scan(
		&ss.TenantID, &ss.Sub, &ss.CSRFToken, &launch, &ss.CreatedAt, &ss.LastSeenAt, &ss.IdleExpiresAt, &ss.ExpiresAt,
		&ss.User.Role, &ss.User.GivenName, &ss.User.FamilyName, &ss.User.Email, &ss.User.Username, &orgs,
		&ss.TenantState, &ss.TenantName, &ss.TenantLanguage, &ss.TenantCountry)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNotFound
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	ss.IDHash = idHash
	ss.User.TenantID, ss.User.Sub = ss.TenantID, ss.Sub
	if err := json.Unmarshal(launch, &ss.Launch); err != nil {
		return Session{}, fmt.Errorf("session of tenant %s: launch context: %w", ss.TenantID, err)
	}
	if err := json.Unmarshal(orgs, &ss.User.Orgs); err != nil {
		return Session{}, fmt.Errorf("session of tenant %s: orgs: %w", ss.TenantID, err)
	}
	return ss, nil
}

// TouchSession records activity: the idle expiry moves to idleExpiresAt, never past the absolute
// expiry.
func (s *Store) TouchSession(ctx context.Context, idHash []byte, now, idleExpiresAt time.Time) error {
	_, err := s.relaxed.Exec(ctx, `
		UPDATE sessions SET last_seen_at = $2, idle_expires_at = LEAST($3, expires_at)
		WHERE id_hash = $1`, idHash, now, idleExpiresAt)
	if err != nil {
		return fmt.Errorf("touch session: %w", err)
	}
	return nil
}

// DeleteSession ends a session; it reports whether there was one. It is a durable write: a
// sign-out lost in a database crash would bring the session back. Every replica that caches the
// session hears of it when the delete commits (sessionChannel).
func (s *Store) DeleteSession(ctx context.Context, idHash []byte) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		WITH gone AS (DELETE FROM sessions WHERE id_hash = $1 RETURNING id_hash)
		SELECT pg_notify($2, encode(id_hash, 'hex')) FROM gone`, idHash, sessionChannel)
	if err != nil {
		return false, fmt.Errorf("delete session: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// SweepExpired deletes login flows and sessions (and console sessions) that expired before now, at most batch rows of
// each per call, and reports how many went. Several replicas may sweep at once: SKIP LOCKED keeps
// them out of each other's way.
func (s *Store) SweepExpired(ctx context.Context, now time.Time, batch int) (flows, sessions int64, err error) {
	tag, err := s.relaxed.Exec(ctx, `
		DELETE FROM auth_flows WHERE id_hash IN (
			SELECT id_hash FROM auth_flows WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, batch)
	if err != nil {
		return 0, 0, fmt.Errorf("sweep login flows: %w", err)
	}
	flows = tag.RowsAffected()
	// Replicas that cache a swept session hear of it (sessionChannel): their copy checks the
	// expiry too, but with their own clock.
	tag, err = s.relaxed.Exec(ctx, `
		WITH gone AS (
			DELETE FROM sessions WHERE id_hash IN (
				SELECT id_hash FROM sessions WHERE expires_at <= $1 OR idle_expires_at <= $1
				LIMIT $2 FOR UPDATE SKIP LOCKED)
			RETURNING id_hash)
		SELECT pg_notify($3, encode(id_hash, 'hex')) FROM gone`, now, batch, sessionChannel)
	if err != nil {
		return flows, 0, fmt.Errorf("sweep sessions: %w", err)
	}
	sessions = tag.RowsAffected()
	// Console sessions and rate-limit buckets that leaked empty long ago go the same way; they
	// are few, so they are not counted.
	if _, err := s.relaxed.Exec(ctx, `
		DELETE FROM operator_sessions WHERE id_hash IN (
			SELECT id_hash FROM operator_sessions WHERE expires_at <= $1 OR idle_expires_at <= $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, batch); err != nil {
		return flows, sessions, fmt.Errorf("sweep console sessions: %w", err)
	}
	// Every rate-limit bucket has leaked empty a day after its last attempt.
	if _, err := s.relaxed.Exec(ctx, `
		DELETE FROM attempt_buckets WHERE (scope, subject, network) IN (
			SELECT scope, subject, network FROM attempt_buckets WHERE updated_at <= $1::timestamptz - interval '1 day'
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, now, batch); err != nil {
		return flows, sessions, fmt.Errorf("sweep rate-limit counters: %w", err)
	}
	return flows, sessions, nil
}
