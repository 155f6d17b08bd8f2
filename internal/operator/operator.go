// Package operator signs the partner's own staff in to the console (/admin): argon2id password
// hashes, sign-in limits per client network (per account and network, and per network alone),
// and server-side console sessions in a __Host- cookie of their own (SameSite=Strict: the console
// is never framed or reached from another site).
package operator

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/store"
)

// CookieName is the console session's cookie.
const CookieName = "__Host-untis-admin"

// Password rules for `server operator add`.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 512
)

// Sign-in limits. Both count per client network (an IPv4 address or an IPv6 /64), never per
// account alone: a lock per account would let any client keep the console closed to the right
// password from everywhere. Both decay (leaky buckets shared by every replica, store.Attempt).
var (
	// NetworkLimit: 20 sign-in attempts from one network at once, then one every 30 s (20 per
	// 10 minutes), whatever the account.
	NetworkLimit = store.Limit{Scope: "console-network", Burst: 20, Every: 30 * time.Second}
	// AccountLimit: per account and network, 5 attempts, then one every 12 minutes (5 an hour).
	// The attempt is counted before the password is checked, so parallel guesses cannot outrun
	// it; a successful sign-in empties it, and so do `server operator unlock` and a password
	// reset. Addresses that have no account count the same, so the answer tells nothing about
	// which accounts exist.
	AccountLimit = store.Limit{Scope: store.ScopeConsoleAccount, Burst: 5, Every: 12 * time.Minute}
)

// Errors of SignIn. ErrBadCredentials is one answer for a wrong password and an unknown
// address, so the page does not tell which accounts exist.
var (
	ErrBadCredentials = errors.New("wrong e-mail address or password")
	ErrNoSession      = errors.New("no console session")
)

// RateLimitedError is a sign-in refused before the password was checked: the client's network
// tried too often, for any account (Account false) or for this one (Account true).
type RateLimitedError struct {
	RetryAfter time.Duration
	Account    bool
}

func (e *RateLimitedError) Error() string {
	if e.Account {
		return "too many sign-in attempts for this account from this network"
	}
	return "too many sign-in attempts from this network"
}

// Config configures a Manager.
type Config struct {
	Store       *store.Store
	IdleTimeout time.Duration // default 30 minutes
	MaxAge      time.Duration // default 8 hours
	Now         func() time.Time
	Logger      *slog.Logger
	// Hash sets the argon2id cost (tests lower it); zero is DefaultParams.
	Hash Params
}

// Manager signs operators in and finds their sessions.
type Manager struct {
	store  *store.Store
	idle   time.Duration
	max    time.Duration
	now    func() time.Time
	log    *slog.Logger
	params Params
	// hashing bounds the argon2id computations running at once: each takes Params.Memory, and a
	// flood of sign-in attempts must not take the machine's memory with it.
	hashing chan struct{}
	// dummy is a hash to check against when the account does not exist, so that both cases take
	// the same time.
	dummy string
}

// New builds a Manager.
func New(cfg Config) *Manager {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.MaxAge < cfg.IdleTimeout {
		cfg.MaxAge = max(cfg.IdleTimeout, 8*time.Hour)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hash == (Params{}) {
		cfg.Hash = DefaultParams
	}
	m := &Manager{store: cfg.Store, idle: cfg.IdleTimeout, max: cfg.MaxAge, now: cfg.Now, log: cfg.Logger,
		params: cfg.Hash, hashing: make(chan struct{}, 2)}
	m.dummy, _ = cfg.Hash.Hash(session.NewToken())
	return m
}

// NormalizeEmail is the form operator e-mail addresses are stored and looked up in.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// SignIn checks an operator's e-mail address and password and, when they are right, starts a
// console session (the cookie is set on w). network (the client's address, or its IPv6 /64)
// feeds the limits: too many attempts are a *RateLimitedError.
func (m *Manager) SignIn(ctx context.Context, w http.ResponseWriter, email, password, network string) (*store.OperatorSession, error) {
	now := m.now()
	email = NormalizeEmail(email)
	if wait, err := m.store.Attempt(ctx, NetworkLimit, "", network, now); err != nil {
		return nil, err
	} else if wait > 0 {
		return nil, &RateLimitedError{RetryAfter: wait}
	}
	if email == "" || password == "" || len(password) > MaxPasswordLen {
		return nil, ErrBadCredentials
	}
	// Counted before the password is checked, for unknown addresses too.
	if wait, err := m.store.Attempt(ctx, AccountLimit, email, network, now); err != nil {
		return nil, err
	} else if wait > 0 {
		return nil, &RateLimitedError{RetryAfter: wait, Account: true}
	}
	op, err := m.store.OperatorByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		// The same work as a wrong password, so the timing does not tell which accounts exist.
		_, _ = m.check(ctx, m.dummy, password)
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	ok, err := m.check(ctx, op.PasswordHash, password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrBadCredentials
	}
	if err := m.store.ForgetAttempts(ctx, AccountLimit.Scope, email, network); err != nil {
		return nil, err
	}
	if err := m.store.RecordOperatorSignIn(ctx, op.ID, now); err != nil {
		return nil, err
	}
	id := session.NewToken()
	os := store.OperatorSession{IDHash: store.HashID(id), OperatorID: op.ID, Email: op.Email, CSRFToken: []byte(session.NewToken()),
		LastSeenAt: now, IdleExpiresAt: now.Add(m.idle), ExpiresAt: now.Add(m.max)}
	if err := m.store.CreateOperatorSession(ctx, os); err != nil {
		return nil, err
	}
	http.SetCookie(w, cookie(id, int(m.max.Seconds())))
	return &os, nil
}

// check compares password with hash, at most two at a time.
func (m *Manager) check(ctx context.Context, hash, password string) (bool, error) {
	select {
	case m.hashing <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-m.hashing }()
	return CheckPassword(hash, password)
}

// Load returns the request's live console session, or ErrNoSession. Activity moves the idle
// expiry.
func (m *Manager) Load(ctx context.Context, r *http.Request) (*store.OperatorSession, error) {
	id := session.CookieID(r, CookieName)
	if id == "" {
		return nil, ErrNoSession
	}
	now := m.now()
	os, err := m.store.OperatorSessionByID(ctx, store.HashID(id), now)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, err
	}
	if now.Sub(os.LastSeenAt) >= time.Minute {
		if err := m.store.TouchOperatorSession(ctx, os.IDHash, now, now.Add(m.idle)); err != nil {
			m.log.WarnContext(ctx, "console session activity not recorded", "err", err)
		}
	}
	return &os, nil
}

// SignOut ends the request's console session and clears its cookie.
func (m *Manager) SignOut(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, cookie("", -1))
	id := session.CookieID(r, CookieName)
	if id == "" {
		return nil
	}
	return m.store.DeleteOperatorSession(ctx, store.HashID(id))
}

// ValidCSRF compares a submitted form token with the session's in constant time.
func ValidCSRF(os *store.OperatorSession, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), os.CSRFToken) == 1
}

func cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
}

// Params are argon2id's cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultParams follow OWASP's password storage recommendation for argon2id (19 MiB, 2 passes,
// 1 lane): about 30 ms per check on one core.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

// Hash returns password's argon2id hash in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash), with a fresh 16-byte salt.
func (p Params) Hash(password string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// HashPassword hashes with DefaultParams.
func HashPassword(password string) (string, error) { return DefaultParams.Hash(password) }

// CheckPassword reports whether password matches a PHC argon2id hash, comparing in constant time.
// The cost is read from the hash, so hashes made with other parameters keep working.
func CheckPassword(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("operator: password hash is not argon2id")
	}
	var (
		version int
		p       Params
	)
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("operator: password hash has an unknown argon2 version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil ||
		p.Memory == 0 || p.Memory > 1<<21 || p.Time == 0 || p.Time > 16 || p.Threads == 0 {
		return false, errors.New("operator: password hash has bad parameters")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errors.New("operator: password hash has a bad salt")
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) < 16 {
		return false, errors.New("operator: password hash has a bad key")
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
