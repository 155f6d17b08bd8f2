package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Tenant states (the school lifecycle).
const (
	StatePendingSetup = "pending_setup"
	StateActive       = "active"
	StateDeactivated  = "deactivated"
	StateDeleted      = "deleted"
)

// Tenant is a school.
type Tenant struct {
	ID                       string
	State                    string
	Name                     string
	Country, Region          string
	Language, Host           string
	ActivatorEmail           string
	ActivatorUsername        string
	SchoolEmail, SchoolPhone string
	CredentialsFailingSince  *time.Time
	CredentialsFailureReason string
	LastWebhookAt            *time.Time
	LastWebhookEvent         string
	StateChangedAt           time.Time
	CreatedAt                time.Time
}

// tenantColumns are the columns scanned by scanTenant, for a tenants table aliased t.
const tenantColumns = `t.tenant_id, t.state, t.name, t.country, t.region, t.language, t.host,
	t.activator_email, t.activator_username, t.school_email, t.school_phone,
	t.credentials_failing_since, t.credentials_failure_reason, t.last_webhook_at, t.last_webhook_event,
	t.state_changed_at, t.created_at`

// fields are the scan targets of tenantColumns.
func (t *Tenant) fields() []any {
	return []any{&t.ID, &t.State, &t.Name, &t.Country, &t.Region, &t.Language, &t.Host,
		&t.ActivatorEmail, &t.ActivatorUsername, &t.SchoolEmail, &t.SchoolPhone,
		&t.CredentialsFailingSince, &t.CredentialsFailureReason, &t.LastWebhookAt, &t.LastWebhookEvent,
		&t.StateChangedAt, &t.CreatedAt}
}

// Credentials are a tenant's platform credentials: clientId, the OIDC secret (code flow) and the
// platform password (client credentials). Secret and Password are plaintext only in memory.
type Credentials struct {
	ClientID  string
	Secret    string
	Password  string
	Version   int
	Source    string // webhook, manual or operator
	CreatedAt time.Time
}

// String and LogValue keep the secret values out of every log line and error message, whatever
// formats a Credentials.
func (c Credentials) String() string {
	return fmt.Sprintf("credentials[client_id=%s version=%d source=%s]", c.ClientID, c.Version, c.Source)
}

// GoString keeps the secrets out of %#v too.
func (c Credentials) GoString() string { return c.String() }

// LogValue implements slog.LogValuer.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("client_id", c.ClientID), slog.Int("version", c.Version), slog.String("source", c.Source))
}

// UpsertTenant creates the tenant, or updates its state (and name, when given) if it exists.
// Every replica hears of the change (ListenTenantChanges) and drops what it caches for the tenant.
func (s *Store) UpsertTenant(ctx context.Context, id, state, name string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
			INSERT INTO tenants (tenant_id, state, name) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO UPDATE SET
				state = EXCLUDED.state,
				name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE tenants.name END,
				state_changed_at = CASE WHEN tenants.state <> EXCLUDED.state THEN now() ELSE tenants.state_changed_at END,
				updated_at = now()`, id, state, name)
		if err != nil {
			return err
		}
		return notifyTenantChanged(ctx, tx, id)
	})
	if err != nil {
		return fmt.Errorf("upsert tenant %s: %w", id, err)
	}
	return nil
}

// Tenant returns one tenant.
func (s *Store) Tenant(ctx context.Context, id string) (Tenant, error) {
	t, _, err := s.tenant(ctx, id, false)
	return t, err
}

// TenantWithClientID returns the tenant and the client id of its newest credentials ("" when it
// has none). Starting a sign-in needs both and nothing secret.
func (s *Store) TenantWithClientID(ctx context.Context, id string) (Tenant, string, error) {
	return s.tenant(ctx, id, true)
}

func (s *Store) tenant(ctx context.Context, id string, withClientID bool) (Tenant, string, error) {
	var (
		t        Tenant
		clientID string
	)
	err := s.pool.QueryRow(ctx, `
		SELECT `+tenantColumns+`,
		       CASE WHEN $2 THEN COALESCE((SELECT c.client_id FROM tenant_credentials c
		                                   WHERE c.tenant_id = t.tenant_id ORDER BY c.version DESC LIMIT 1), '')
		            ELSE '' END
		FROM tenants t WHERE t.tenant_id = $1`, id, withClientID).Scan(append(t.fields(), &clientID)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, "", ErrNotFound
	}
	if err != nil {
		return Tenant{}, "", fmt.Errorf("tenant %s: %w", id, err)
	}
	return t, clientID, nil
}

// SetTenantName records the school's name as the platform's OneRoster calls it, when it differs.
// Sessions carry the name, so replicas that cache them hear of it (sessionChannel).
func (s *Store) SetTenantName(ctx context.Context, id, name string) error {
	_, err := s.pool.Exec(ctx, `
		WITH named AS (
			UPDATE tenants SET name = $2, updated_at = now()
			WHERE tenant_id = $1 AND name <> $2 AND state IN ('active', 'pending_setup')
			RETURNING tenant_id)
		SELECT pg_notify($3, $4 || tenant_id) FROM named`, id, name, sessionChannel, tenantSessionsPrefix)
	if err != nil {
		return fmt.Errorf("set name of tenant %s: %w", id, err)
	}
	return nil
}

// AddCredentials seals and stores a new version of the tenant's credentials and returns its
// version number. The tenant must exist.
func (s *Store) AddCredentials(ctx context.Context, tenantID string, c Credentials) (int, error) {
	sealedSecret, sealedPassword, err := s.sealCredentials(tenantID, c)
	if err != nil {
		return 0, err
	}
	var version int
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// Lock the tenant row so concurrent writers number their versions one after the other.
		if err := tx.QueryRow(ctx, `SELECT 1 FROM tenants WHERE tenant_id = $1 FOR UPDATE`, tenantID).Scan(new(int)); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		var err error
		if version, err = insertCredentials(ctx, tx, tenantID, c, sealedSecret, sealedPassword); err != nil {
			return err
		}
		return notifyTenantChanged(ctx, tx, tenantID)
	})
	if err != nil {
		return 0, fmt.Errorf("add credentials for tenant %s: %w", tenantID, err)
	}
	return version, nil
}

// sealCredentials seals the secret and the password, each bound to the tenant and its column.
func (s *Store) sealCredentials(tenantID string, c Credentials) (sealedSecret, sealedPassword []byte, err error) {
	if sealedSecret, err = s.seal(c.Secret, tenantID, ColCredentialSecret); err != nil {
		return nil, nil, err
	}
	if sealedPassword, err = s.seal(c.Password, tenantID, ColCredentialPassword); err != nil {
		return nil, nil, err
	}
	return sealedSecret, sealedPassword, nil
}

// insertCredentials stores the next version of a tenant's credentials in tx. The caller holds
// the tenant row's lock (or has just written it), so versions are numbered one after the other,
// and created_at (the clock at the insert, not the transaction's start) follows the lock's order.
func insertCredentials(ctx context.Context, tx pgx.Tx, tenantID string, c Credentials, sealedSecret, sealedPassword []byte) (int, error) {
	var version int
	// The number comes from the school's counter, never from the rows left: a deactivation
	// wipes them, and a number given once is never given again.
	err := tx.QueryRow(ctx, `
		WITH counter AS (
			UPDATE tenants SET credentials_version = credentials_version + 1 WHERE tenant_id = $1
			RETURNING credentials_version
		)
		INSERT INTO tenant_credentials (tenant_id, version, client_id, secret_sealed, password_sealed, source, created_at)
		SELECT $1, credentials_version, $2, $3, $4, $5, clock_timestamp() FROM counter
		RETURNING version`, tenantID, c.ClientID, sealedSecret, sealedPassword, c.Source).Scan(&version)
	return version, err
}

// CurrentCredentials returns the tenant's newest credentials, opened, whatever its state.
func (s *Store) CurrentCredentials(ctx context.Context, tenantID string) (Credentials, error) {
	return s.credentials(ctx, tenantID, `
		SELECT client_id, secret_sealed, password_sealed, version, source, created_at
		FROM tenant_credentials WHERE tenant_id = $1
		ORDER BY version DESC LIMIT 1`)
}

// credentials runs query (one row of client id, sealed secret, sealed password, version, source,
// created at, for tenant $1) and opens the secrets.
func (s *Store) credentials(ctx context.Context, tenantID, query string) (Credentials, error) {
	var (
		c                        Credentials
		sealedSecret, sealedPass []byte
	)
	err := s.pool.QueryRow(ctx, query, tenantID).Scan(
		&c.ClientID, &sealedSecret, &sealedPass, &c.Version, &c.Source, &c.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Credentials{}, ErrNotFound
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials of tenant %s: %w", tenantID, err)
	}
	if c.Secret, err = s.open(sealedSecret, tenantID, ColCredentialSecret); err != nil {
		return Credentials{}, err
	}
	if c.Password, err = s.open(sealedPass, tenantID, ColCredentialPassword); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// ActiveCredentials returns the newest credentials of a tenant that is active or pending setup,
// opened; for a deactivated, deleted or unknown tenant, or one without credentials, ErrNotFound.
// This is what may be used to call the platform.
func (s *Store) ActiveCredentials(ctx context.Context, tenantID string) (Credentials, error) {
	return s.credentials(ctx, tenantID, `
		SELECT c.client_id, c.secret_sealed, c.password_sealed, c.version, c.source, c.created_at
		FROM tenant_credentials c JOIN tenants t ON t.tenant_id = c.tenant_id
		WHERE c.tenant_id = $1 AND t.state IN ('pending_setup', 'active')
		ORDER BY c.version DESC LIMIT 1`)
}

// MaxTenantIDLen is the longest tenant id the store accepts.
const MaxTenantIDLen = 64

// ValidTenantID reports whether id can be a platform tenant id: 1 to 64 letters, digits, '-' or
// '_' (the platform sends digits; the rest leaves room for test and integration ids). Anything
// that could smuggle a path, a query or markup is refused wherever a tenant id comes in.
func ValidTenantID(id string) bool {
	if id == "" || len(id) > MaxTenantIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ClientIDInUse reports whether any school's stored credentials use clientID. One platform
// application usually has one client id for every school, so a client id in use is a right one:
// when the platform refuses pasted credentials without saying which part, it was the password.
// The client id is not secret (every sign-in's authorize URL carries it).
func (s *Store) ClientIDInUse(ctx context.Context, clientID string) (bool, error) {
	var inUse bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tenant_credentials WHERE client_id = $1)`, clientID).Scan(&inUse); err != nil {
		return false, fmt.Errorf("client id in use: %w", err)
	}
	return inUse, nil
}
