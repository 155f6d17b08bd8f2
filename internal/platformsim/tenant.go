package platformsim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// Tenant states from the simulator's (the platform's) point of view.
const (
	// StatusNew: the school has not activated the app yet. Its credentials
	// work anyway, as if the admin had copied them by hand (onboarding
	// scenario 3).
	StatusNew = "new"
	// StatusActive: a CREATED, REACTIVATED or RESET webhook was sent.
	StatusActive = "active"
	// StatusDeactivated and StatusDeleted: the app was deactivated or
	// deleted; the tenant's credentials and tokens stop working.
	StatusDeactivated = "deactivated"
	StatusDeleted     = "deleted"
)

var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// tenant is one school. The roster is immutable once seeded; the other
// fields are guarded by Sim.mu.
type tenant struct {
	id, name, slug             string
	clientID, secret, password string
	country, region, language  string
	status                     string
	signedInUser               string
	tokenEpoch                 uint64   // bumped by RevokeTokens; older tokens are dead
	scopes                     []string // what the application may ask for (PAM permissions)
	interop                    InteropOptions
	roster                     *roster
	extern                     *externData // the extern API's students, seeded on first use
	lastWebhook                *sentWebhook
	lastResult                 *WebhookResult
	lastResultErr              string
	lastTimetable              *TimetableResult
}

// TenantInfo is a snapshot of a tenant, for tests, the pages and the
// control API. It includes the credentials: this is a simulator.
type TenantInfo struct {
	ID           string `json:"tenantId"`
	Name         string `json:"name"`
	ClientID     string `json:"clientId"`
	Secret       string `json:"secret"`
	Password     string `json:"password"`
	Status       string `json:"status"`
	Country      string `json:"country"`
	Region       string `json:"region"`
	Language     string `json:"language"`
	SchoolID     string `json:"schoolSourcedId"`
	Issuer       string `json:"issuer"`
	Users        int    `json:"users"`
	Classes      int    `json:"classes"`
	SignedInUser string `json:"signedInUser,omitempty"`
	// Scopes are the scopes the application is allowed at this school.
	Scopes []string `json:"scopes"`
	// Interop are the school's "behave like another OP" switches.
	Interop InteropOptions `json:"interop"`
	// LastWebhook is the partner's answer to the last webhook sent for
	// this tenant, if any; LastWebhookError says why delivery failed.
	LastWebhook      *WebhookResult `json:"lastWebhook,omitempty"`
	LastWebhookError string         `json:"lastWebhookError,omitempty"`
}

func (s *Sim) infoLocked(t *tenant) TenantInfo {
	return TenantInfo{
		ID: t.id, Name: t.name, ClientID: t.clientID, Secret: t.secret, Password: t.password,
		Status: t.status, Country: t.country, Region: t.region, Language: t.language,
		SchoolID: t.roster.org.SourcedID, Issuer: s.Issuer(t.id),
		Users: len(t.roster.users), Classes: len(t.roster.classes), SignedInUser: t.signedInUser,
		Scopes: slices.Clone(t.scopes), Interop: t.interop,
		LastWebhook: t.lastResult, LastWebhookError: t.lastResultErr,
	}
}

// randomToken returns n random bytes, base64url-encoded without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand.Read does not fail on supported platforms (and
		// panics itself since Go 1.24); keep the guard for clarity.
		panic(fmt.Sprintf("platformsim: crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// AddTenant seeds a school from spec and registers it. Seeding a large
// school (thousands of users) happens before the lock is taken.
func (s *Sim) AddTenant(spec TenantSpec) (TenantInfo, error) {
	if !tenantIDPattern.MatchString(spec.ID) {
		return TenantInfo{}, fmt.Errorf("platformsim: tenant id %q: want 1-64 letters, digits, '-' or '_'", spec.ID)
	}
	t := &tenant{
		id:       spec.ID,
		name:     orDefault(spec.Name, "Schule "+spec.ID),
		clientID: orDefault(spec.ClientID, DefaultClientID),
		secret:   orDefault(spec.Secret, randomToken(24)),
		password: orDefault(spec.Password, randomToken(24)),
		country:  orDefault(spec.Country, "DE"),
		region:   orDefault(spec.Region, "DE-BY"),
		language: orDefault(spec.Language, "de"),
		status:   StatusNew,
	}
	var err error
	if t.scopes, err = appScopes(spec.Scopes); err != nil {
		return TenantInfo{}, err
	}
	if t.secret == t.password {
		return TenantInfo{}, errors.New("platformsim: secret and password must differ")
	}
	t.slug = slugify(t.name)
	t.roster = seedRoster(t.id, t.name, t.slug, spec)

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.tenants[t.id]; dup {
		return TenantInfo{}, fmt.Errorf("platformsim: tenant %q already exists", t.id)
	}
	s.tenants[t.id] = t
	s.order = append(s.order, t.id)
	return s.infoLocked(t), nil
}

// SeedDemo adds the two demo schools: tenant 1001 "Gymnasium am See" and
// tenant 1002 "Mittelschule Nord". It is a no-op for a school that exists.
// A school the state file (Config.StateFile) knows gets its saved status and
// credentials back; otherwise its credentials come from DemoSeed (or are
// random) and it is not activated yet.
func (s *Sim) SeedDemo() {
	specs := []TenantSpec{
		{ID: "1001", Name: "Gymnasium am See", Teachers: 6, Students: 20, Admins: 2, Parents: 1, Classes: 6,
			Country: "AT", Region: "AT-5", Language: "de"},
		{ID: "1002", Name: "Mittelschule Nord", Teachers: 5, Students: 22, Admins: 1, Parents: 2, Aides: 1, Classes: 4,
			Country: "DE", Region: "DE-BE", Language: "de"},
	}
	for _, spec := range specs {
		if _, ok := s.Tenant(spec.ID); ok {
			continue
		}
		saved, restore := s.saved[spec.ID]
		switch {
		case restore:
			spec.Secret, spec.Password = saved.Secret, saved.Password
		case len(s.demoSeed) > 0:
			spec.Secret = s.demoCredential("secret", spec.ID)
			spec.Password = s.demoCredential("password", spec.ID)
		}
		if _, err := s.AddTenant(spec); err != nil {
			s.log.Error("platformsim: seed demo school", "tenant_id", spec.ID, "err", err)
			continue
		}
		if restore {
			s.mu.Lock()
			s.tenants[spec.ID].status = saved.Status
			s.mu.Unlock()
		}
	}
}

// demoCredential derives a stable demo credential from DemoSeed.
func (s *Sim) demoCredential(kind, tenantID string) string {
	m := hmac.New(sha256.New, s.demoSeed)
	m.Write([]byte("platformsim demo " + kind + "\x00" + tenantID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// Tenant returns a snapshot of one tenant.
func (s *Sim) Tenant(tenantID string) (TenantInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return TenantInfo{}, false
	}
	return s.infoLocked(t), true
}

// Tenants returns snapshots of all tenants in the order they were added.
func (s *Sim) Tenants() []TenantInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]TenantInfo, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.infoLocked(s.tenants[id]))
	}
	return out
}

// Credentials returns a tenant's current client id, OIDC secret and
// platform password.
func (s *Sim) Credentials(tenantID string) (clientID, secret, password string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return "", "", "", false
	}
	return t.clientID, t.secret, t.password, true
}

// rosterOf returns a tenant's immutable roster.
func (s *Sim) rosterOf(tenantID string) *roster {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tenants[tenantID]; t != nil {
		return t.roster
	}
	return nil
}

// Users returns a copy of a tenant's users in seeding order
// (administrators, teachers, students, parents, aides).
func (s *Sim) Users(tenantID string) []User {
	r := s.rosterOf(tenantID)
	if r == nil {
		return nil
	}
	return append([]User(nil), r.users...)
}

// User returns one of a tenant's users by sourcedId.
func (s *Sim) User(tenantID, sourcedID string) (User, bool) {
	r := s.rosterOf(tenantID)
	if r == nil {
		return User{}, false
	}
	i, ok := r.userIdx[sourcedID]
	if !ok {
		return User{}, false
	}
	return r.users[i], true
}

// UserByRole returns the tenant's first user with the given OneRoster role.
func (s *Sim) UserByRole(tenantID, role string) (User, bool) {
	r := s.rosterOf(tenantID)
	if r == nil {
		return User{}, false
	}
	for _, u := range r.users {
		if u.Role == role {
			return u, true
		}
	}
	return User{}, false
}

// Classes returns a copy of a tenant's classes (WebUntis lessons).
func (s *Sim) Classes(tenantID string) []Class {
	r := s.rosterOf(tenantID)
	if r == nil {
		return nil
	}
	return append([]Class(nil), r.classes...)
}

// Enrollments returns a copy of a tenant's enrollments.
func (s *Sim) Enrollments(tenantID string) []Enrollment {
	r := s.rosterOf(tenantID)
	if r == nil {
		return nil
	}
	return append([]Enrollment(nil), r.enrollments...)
}

// School returns a tenant's school org.
func (s *Sim) School(tenantID string) (Org, bool) {
	r := s.rosterOf(tenantID)
	if r == nil {
		return Org{}, false
	}
	return r.org, true
}

// SetSignedInUser sets who is "signed in to WebUntis" for a tenant when the
// browser has no simulator cookie. An empty sourcedID clears it.
func (s *Sim) SetSignedInUser(tenantID, sourcedID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return ErrUnknownTenant
	}
	if _, ok := t.roster.userIdx[sourcedID]; sourcedID != "" && !ok {
		return fmt.Errorf("platformsim: tenant %s has no user %q", tenantID, sourcedID)
	}
	t.signedInUser = sourcedID
	return nil
}

// credentialsUsable reports whether the platform still honours the
// tenant's credentials and tokens.
func (t *tenant) credentialsUsable() bool {
	return t.status != StatusDeactivated && t.status != StatusDeleted
}
