package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/store"
)

// Signer signs the X-Untis-Identity assertion (assertion.Signer).
type Signer interface {
	Sign(assertion.Identity) (token string, exp time.Time, err error)
}

// SetupSource reads a school's setup answers (store.Store).
type SetupSource interface {
	SetupAnswers(ctx context.Context, tenantID string) (map[string]string, error)
}

// IdentitiesConfig configures Identities.
type IdentitiesConfig struct {
	Signer Signer
	Setup  SetupSource
	// MaxCached bounds the identities kept per session (default 10,000, about 2 KiB each).
	MaxCached int
	Now       func() time.Time
	Logger    *slog.Logger
}

// Identities turns a session into the identity headers, with the signed assertion. It keeps,
// per session, the headers and the assertion it built last, and reuses the assertion while it
// has more than half of its lifetime left: a busy session costs one signature every few minutes,
// not one per request. Setup answers are kept per school and dropped when the school changes
// (ChangeHandler). Safe for concurrent use.
type Identities struct {
	signer Signer
	setup  SetupSource
	max    int
	now    func() time.Time
	log    *slog.Logger

	mu       sync.Mutex
	sessions map[string]*cachedIdentity // by session id hash

	setupMu  sync.RWMutex
	setupGen uint64 // bumped by every invalidation: a read that started before one is not kept
	answers  map[string]*setupEntry
}

// setupTTL bounds how long setup answers are kept when no change notification arrives (a
// listener that lost its connection flushes everything when it is back; this is the backstop).
const setupTTL = 5 * time.Minute

// setupEntry is one school's answers, encoded once.
type setupEntry struct {
	encoded string
	kept    map[string]string
	fetched time.Time
}

// source is what an identity is built from; an identity is reused only while its source is
// unchanged.
type source struct {
	tenantID, sub, role, given, family, email, school string
	launch                                            map[string]string
	setup                                             *setupEntry
}

func (s *source) same(o *source) bool {
	return s.tenantID == o.tenantID && s.sub == o.sub && s.role == o.role && s.given == o.given &&
		s.family == o.family && s.email == o.email && s.school == o.school && s.setup == o.setup &&
		maps.Equal(s.launch, o.launch)
}

type cachedIdentity struct {
	src     source
	id      *Identity
	renewAt time.Time // half of the assertion's lifetime
}

// Identity is one signed-in user's identity headers, encoded. It is immutable.
type Identity struct {
	values [len(IdentityHeaders)]string
	// lines are the values as header lines, made once: every proxied request of a busy session
	// shares them instead of allocating ten slices. Each has capacity 1, so an append to a
	// request's header makes a copy and never reaches the others.
	lines [len(IdentityHeaders)][]string
	// Expires is when its assertion expires.
	Expires time.Time
}

func newIdentity(values [len(IdentityHeaders)]string, expires time.Time) *Identity {
	id := &Identity{values: values, Expires: expires}
	for i, v := range values {
		id.lines[i] = []string{v}[:1:1]
	}
	return id
}

// Set writes the identity headers into h, replacing any of the same name. The values are shared
// with every other request of the session: h's lines must not be modified in place (net/http
// and httputil only read them, or replace them whole).
func (id *Identity) Set(h http.Header) {
	for i, name := range IdentityHeaders {
		h[name] = id.lines[i]
	}
}

// Get returns the encoded value of one identity header ("" for another name).
func (id *Identity) Get(name string) string {
	for i, n := range IdentityHeaders {
		if n == name {
			return id.values[i]
		}
	}
	return ""
}

// NewIdentities builds Identities.
func NewIdentities(cfg IdentitiesConfig) *Identities {
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = 10_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Identities{
		signer: cfg.Signer, setup: cfg.Setup, max: cfg.MaxCached, now: cfg.Now, log: cfg.Logger,
		sessions: map[string]*cachedIdentity{}, answers: map[string]*setupEntry{},
	}
}

// For returns the identity of a live session. The caller has checked that the session may reach
// the app (its school is active).
func (ids *Identities) For(ctx context.Context, sess *store.Session) (*Identity, error) {
	setup, err := ids.setupOf(ctx, sess.TenantID)
	if err != nil {
		return nil, err
	}
	src := source{
		tenantID: sess.TenantID, sub: sess.Sub, role: sess.User.Role, given: sess.User.GivenName,
		family: sess.User.FamilyName, email: sess.User.Email, school: sess.TenantName,
		launch: sess.Launch, setup: setup,
	}
	now := ids.now()
	if len(sess.IDHash) > 0 {
		ids.mu.Lock()
		c := ids.sessions[string(sess.IDHash)] // no allocation for the lookup
		ids.mu.Unlock()
		if c != nil && now.Before(c.renewAt) && c.src.same(&src) {
			return c.id, nil
		}
	}
	id, err := ids.build(ctx, &src)
	if err != nil {
		return nil, err
	}
	if len(sess.IDHash) > 0 {
		renew := now.Add(id.Expires.Sub(now) / 2)
		ids.remember(string(sess.IDHash), &cachedIdentity{src: src, id: id, renewAt: renew}, now)
	}
	return id, nil
}

// ForUser returns the identity of a user who is not asking through a session: the platform's
// Calendar API names a school and a user, and the app is asked on their behalf. u is the user as
// the store knows them (only TenantID and Sub when they never signed in); there is no launch
// context. It is built anew each time (one signature), never cached.
func (ids *Identities) ForUser(ctx context.Context, u store.User, schoolName string) (*Identity, error) {
	setup, err := ids.setupOf(ctx, u.TenantID)
	if err != nil {
		return nil, err
	}
	return ids.build(ctx, &source{
		tenantID: u.TenantID, sub: u.Sub, role: u.Role, given: u.GivenName, family: u.FamilyName,
		email: u.Email, school: schoolName, setup: setup,
	})
}

// build encodes the headers and signs the assertion.
func (ids *Identities) build(ctx context.Context, src *source) (*Identity, error) {
	launch, launchKept, dropped := formEncode(src.launch)
	if len(dropped) > 0 {
		ids.log.WarnContext(ctx, "launch context too large for the identity headers; parameters left out",
			"tenant_id", src.tenantID, "left_out", dropped)
	}
	given, family := truncate(src.given, maxText), truncate(src.family, maxText)
	email, school := truncate(src.email, maxText), truncate(src.school, maxText)
	a := assertion.Identity{
		TenantID: src.tenantID, UserID: src.sub, Role: src.role, GivenName: given, FamilyName: family,
		Email: email, SchoolName: school, Launch: launchKept,
	}
	setup := ""
	if src.setup != nil {
		setup, a.Setup = src.setup.encoded, src.setup.kept
	}
	tok, exp, err := ids.signer.Sign(a)
	if err != nil {
		return nil, fmt.Errorf("identity of tenant %s: %w", src.tenantID, err)
	}
	return newIdentity([len(IdentityHeaders)]string{
		percentEncode(src.tenantID), percentEncode(src.sub), percentEncode(src.role),
		percentEncode(given), percentEncode(family), percentEncode(email), percentEncode(school),
		launch, setup, tok,
	}, exp), nil
}

// remember keeps c for key, making room when the cache is full: first the entries whose
// assertion is due for renewal anyway, then any (a map's order is random).
func (ids *Identities) remember(key string, c *cachedIdentity, now time.Time) {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if _, ok := ids.sessions[key]; !ok && len(ids.sessions) >= ids.max {
		for k, e := range ids.sessions {
			if !now.Before(e.renewAt) {
				delete(ids.sessions, k)
			}
		}
		for k := range ids.sessions {
			if len(ids.sessions) < ids.max*3/4 {
				break
			}
			delete(ids.sessions, k)
		}
	}
	ids.sessions[key] = c
}

// Cached reports how many sessions' identities are kept (for tests and metrics).
func (ids *Identities) Cached() int {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	return len(ids.sessions)
}

// setupOf returns the school's setup answers, encoded, from the cache or the store. nil when
// the school has none.
func (ids *Identities) setupOf(ctx context.Context, tenantID string) (*setupEntry, error) {
	now := ids.now()
	ids.setupMu.RLock()
	e, gen := ids.answers[tenantID], ids.setupGen
	ids.setupMu.RUnlock()
	if e != nil && now.Sub(e.fetched) < setupTTL {
		return e, nil
	}
	answers, err := ids.setup.SetupAnswers(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("identity of tenant %s: %w", tenantID, err)
	}
	encoded, kept, dropped := formEncode(answers)
	if len(dropped) > 0 {
		ids.log.WarnContext(ctx, "setup answers too large for the identity headers; answers left out",
			"tenant_id", tenantID, "left_out", dropped)
	}
	e = &setupEntry{encoded: encoded, kept: kept, fetched: now}
	ids.setupMu.Lock()
	if ids.setupGen == gen {
		ids.answers[tenantID] = e
	}
	ids.setupMu.Unlock()
	return e, nil
}

// Invalidate drops what is kept for one school (its setup answers changed, or its state).
func (ids *Identities) Invalidate(tenantID string) {
	ids.setupMu.Lock()
	ids.setupGen++
	delete(ids.answers, tenantID)
	ids.setupMu.Unlock()
}

// InvalidateAll drops every school's setup answers.
func (ids *Identities) InvalidateAll() {
	ids.setupMu.Lock()
	ids.setupGen++
	clear(ids.answers)
	ids.setupMu.Unlock()
}

// ChangeHandler keeps the setup answers in step with every replica's changes (the tenant_changed
// notifications the platform client's listener hears).
func (ids *Identities) ChangeHandler() store.TenantChangeHandler {
	return store.TenantChangeHandler{Changed: ids.Invalidate, Resync: ids.InvalidateAll}
}
