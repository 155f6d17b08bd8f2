package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// User returns a school's user as the last sign-in stored it: (tenantID, sub) and the profile
// from OneRoster. ErrNotFound for a user who never signed in (or of another school). The
// Calendar API asks for the users of its requests, who need not have a session.
func (s *Store) User(ctx context.Context, tenantID, sub string) (User, error) {
	u := User{TenantID: tenantID, Sub: sub}
	var orgs []byte
	err := s.pool.QueryRow(ctx, `
		SELECT role, given_name, family_name, email, username, orgs FROM users
		WHERE tenant_id = $1 AND sub = $2`, tenantID, sub).Scan(
		&u.Role, &u.GivenName, &u.FamilyName, &u.Email, &u.Username, &orgs)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("user of tenant %s: %w", tenantID, err)
	}
	if err := json.Unmarshal(orgs, &u.Orgs); err != nil {
		return User{}, fmt.Errorf("user of tenant %s: orgs: %w", tenantID, err)
	}
	return u, nil
}
