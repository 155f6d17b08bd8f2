// Package assertion signs X-Untis-Identity: a short-lived JWT that tells the partner's app, behind
// the gateway, who is signed in, in a form any JOSE library can verify against the server's JWKS
// (/.well-known/jwks.json). It is the field's pattern (Pomerium's X-Pomerium-Jwt-Assertion): the
// identity headers are convenient, the assertion is what an app that wants proof checks.
//
// The signing key is shared by every replica: it lives in PostgreSQL (signing_keys), its private
// half sealed under ENCRYPTION_KEYS. Keys rotate on a schedule with an overlap: a successor is
// published in the JWKS a while before it signs, and a key that stopped signing stays published
// until every assertion it signed has expired, so no valid assertion ever fails to verify.
package assertion

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/untis-partner/server/internal/store"
)

// Alg is the signature algorithm: ECDSA P-256 with SHA-256. Every mainstream JOSE library
// (go-jose, jose for Node, PyJWT, firebase/php-jwt, Nimbus, Microsoft.IdentityModel) verifies it;
// EdDSA is still missing from some of them.
const Alg = jose.ES256

// Defaults and bounds of Config.
const (
	DefaultTTL         = 5 * time.Minute
	MaxTTL             = 5 * time.Minute
	DefaultRotateEvery = 7 * 24 * time.Hour
	DefaultRefresh     = 30 * time.Second
	// jwksMaxAge is how long an app may cache the JWKS. Scheduled keys are published much
	// longer than this before they sign; after a forced rotation an app that meets an unknown
	// kid fetches the JWKS again, as JOSE libraries do.
	jwksMaxAge = 5 * time.Minute
)

// Config configures a Signer.
type Config struct {
	Store *store.Store
	// Issuer is the iss claim: PUBLIC_URL.
	Issuer string
	// Audience is the aud claim: who the assertion is for (the partner's app).
	Audience string
	// TTL is how long an assertion is valid (DefaultTTL, at most MaxTTL).
	TTL time.Duration
	// RotateEvery is how long a key signs before its successor takes over (DefaultRotateEvery).
	RotateEvery time.Duration
	// Refresh is how often the keys are read from the store again, so a key another replica
	// added is published and used here too (DefaultRefresh).
	Refresh time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// Identity is what an assertion says: the signed-in user, by school and platform subject, and
// what the gateway's identity headers say too.
type Identity struct {
	TenantID   string
	UserID     string // the platform's sub
	Role       string
	GivenName  string
	FamilyName string
	Email      string
	SchoolName string
	Launch     map[string]string
	Setup      map[string]string
}

// Claims is the JSON of an assertion's payload.
type Claims struct {
	jwt.Claims
	TenantID   string            `json:"tenant_id"`
	UserID     string            `json:"user_id"`
	Role       string            `json:"role,omitempty"`
	GivenName  string            `json:"given_name,omitempty"`
	FamilyName string            `json:"family_name,omitempty"`
	Email      string            `json:"email,omitempty"`
	SchoolName string            `json:"school_name,omitempty"`
	Launch     map[string]string `json:"launch,omitempty"`
	Setup      map[string]string `json:"setup,omitempty"`
}

// Subject is the sub claim for a user: tenant id and platform sub together, because a platform
// sub is unique only within its school. An app that keys its users on sub alone cannot mix up
// two schools' users.
func Subject(tenantID, userID string) string { return tenantID + "/" + userID }

// Signer signs assertions and serves the JWKS. It is safe for concurrent use.
type Signer struct {
	cfg   Config
	log   *slog.Logger
	state atomic.Pointer[keyState]
}

// keyState is one reading of the keys: the published set, and a signer for each key, newest
// first, so that a published successor takes over at its time without waiting for a refresh.
type keyState struct {
	signers []keySigner
	jwks    []byte // {"keys":[...]}, public halves only
}

type keySigner struct {
	kid    string
	from   time.Time
	signer jose.Signer
}

// at is the signer of the key that signs at now: the newest whose time has come.
func (st *keyState) at(now time.Time) *keySigner {
	for i := range st.signers {
		if !st.signers[i].from.After(now) {
			return &st.signers[i]
		}
	}
	return &st.signers[len(st.signers)-1] // clocks disagree: the oldest held
}

// New reads the keys, creating the first one when there is none, and returns a Signer ready to
// sign. Run keeps it in step with the store afterwards.
func New(ctx context.Context, cfg Config) (*Signer, error) {
	if cfg.Store == nil || cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("assertion: Store, Issuer and Audience are required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL > MaxTTL {
		return nil, fmt.Errorf("assertion: TTL %s is over %s", cfg.TTL, MaxTTL)
	}
	if cfg.RotateEvery <= 0 {
		cfg.RotateEvery = DefaultRotateEvery
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.RotateEvery < 4*cfg.Refresh {
		return nil, fmt.Errorf("assertion: rotation every %s is too often (at least %s)", cfg.RotateEvery, 4*cfg.Refresh)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Signer{cfg: cfg, log: cfg.Logger}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// overlap is how long a key stays published after it stopped signing: its last assertion's
// lifetime, plus a refresh period and a minute for replicas that have not yet read that it
// stopped, and for clocks that differ a little.
func (s *Signer) overlap() time.Duration { return s.cfg.TTL + s.cfg.Refresh + time.Minute }

// prepublish is how long a scheduled successor is published before it signs: long enough for
// every replica to read it and for apps that cache the JWKS to fetch it again.
func (s *Signer) prepublish() time.Duration {
	return min(max(jwksMaxAge+2*s.cfg.Refresh, time.Hour), s.cfg.RotateEvery/4)
}

// Reload reads the keys from the store. It adds the first key when there is none, and a
// successor when the signing key is due for rotation.
func (s *Signer) Reload(ctx context.Context) error {
	now := s.cfg.Now()
	keys, err := s.cfg.Store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	if signing(keys, now) == nil {
		// No key signs yet (a new database): one that signs at once.
		if err := s.add(ctx, now, now, func(keys []store.SigningKey) bool { return signing(keys, now) == nil }); err != nil {
			return err
		}
	} else if newest := keys[0]; !newest.SignsFrom.After(now) && now.Sub(newest.SignsFrom) >= s.cfg.RotateEvery-s.prepublish() {
		// The newest key signs and has no successor yet: publish one now that takes over when
		// this key's time is up.
		// After a long downtime the successor's time may have passed: it still waits until
		// every replica has read it.
		from := newest.SignsFrom.Add(s.cfg.RotateEvery)
		if earliest := now.Add(2*s.cfg.Refresh + 5*time.Second); from.Before(earliest) {
			from = earliest
		}
		if err := s.add(ctx, now, from, func(keys []store.SigningKey) bool { return len(keys) == 0 || keys[0].KID == newest.KID }); err != nil {
			return err
		}
	} else {
		return s.use(keys, now)
	}
	keys, err = s.cfg.Store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("assertion: %w", err)
	}
	return s.use(keys, now)
}

// Rotate adds a successor that signs once every replica has read it (after two refresh
// periods), for an operator who wants a new key now. The current key stays published until its
// assertions have expired. It returns the new key's id and when it starts signing.
func (s *Signer) Rotate(ctx context.Context) (string, time.Time, error) {
	now := s.cfg.Now()
	from := now.Add(2*s.cfg.Refresh + 5*time.Second)
	kid, err := s.addKey(ctx, now, from, nil)
	if err != nil {
		return "", time.Time{}, err
	}
	return kid, from, s.Reload(ctx)
}

func (s *Signer) add(ctx context.Context, now, signsFrom time.Time, due func([]store.SigningKey) bool) error {
	kid, err := s.addKey(ctx, now, signsFrom, due)
	switch {
	case errors.Is(err, store.ErrKeyNotDue):
		return nil // another replica was first
	case err != nil:
		return err
	}
	s.log.InfoContext(ctx, "identity assertion key added", "kid", kid, "signs_from", signsFrom.UTC().Format(time.RFC3339))
	return nil
}

func (s *Signer) addKey(ctx context.Context, now, signsFrom time.Time, due func([]store.SigningKey) bool) (string, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("assertion: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("assertion: encode key: %w", err)
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(Alg), Use: "sig"}
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("assertion: key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	k := store.SigningKey{KID: kid, Alg: string(Alg), PrivateKey: der, CreatedAt: now, SignsFrom: signsFrom}
	if err := s.cfg.Store.AddSigningKey(ctx, now, k, signsFrom.Add(s.overlap()), due); err != nil {
		if errors.Is(err, store.ErrKeyNotDue) {
			return "", err
		}
		return "", fmt.Errorf("assertion: %w", err)
	}
	return kid, nil
}

// signing is the key that signs at now: the newest whose signs_from has come (keys are newest
// first).
func signing(keys []store.SigningKey, now time.Time) *store.SigningKey {
	for i := range keys {
		if !keys[i].SignsFrom.After(now) {
			return &keys[i]
		}
	}
	return nil
}

// use makes keys (newest first) the published set.
func (s *Signer) use(keys []store.SigningKey, now time.Time) error {
	if signing(keys, now) == nil {
		return errors.New("assertion: no signing key")
	}
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	var st keyState
	for _, k := range keys {
		parsed, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
		if err != nil {
			return fmt.Errorf("assertion: key %s: %w", k.KID, err)
		}
		priv, ok := parsed.(*ecdsa.PrivateKey)
		if !ok || k.Alg != string(Alg) {
			return fmt.Errorf("assertion: key %s is not an %s key", k.KID, Alg)
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &priv.PublicKey, KeyID: k.KID, Algorithm: k.Alg, Use: "sig"})
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: Alg, Key: jose.JSONWebKey{Key: priv, KeyID: k.KID}},
			(&jose.SignerOptions{}).WithType("JWT"))
		if err != nil {
			return fmt.Errorf("assertion: signer: %w", err)
		}
		st.signers = append(st.signers, keySigner{kid: k.KID, from: k.SignsFrom, signer: signer})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("assertion: jwks: %w", err)
	}
	st.jwks = b
	s.state.Store(&st)
	return nil
}

// Run refreshes the keys every Refresh until ctx ends. A failed refresh keeps the keys held:
// they stay published well past the next refresh.
func (s *Signer) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.Reload(ctx); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "identity assertion keys not refreshed", "err", err)
		}
	}
}

// TTL is how long an assertion is valid.
func (s *Signer) TTL() time.Duration { return s.cfg.TTL }

// Sign returns an assertion of id, valid for TTL from now, and when it expires.
func (s *Signer) Sign(id Identity) (string, time.Time, error) {
	now := s.cfg.Now()
	ks := s.state.Load().at(now)
	exp := now.Add(s.cfg.TTL)
	c := Claims{
		Claims: jwt.Claims{
			Issuer:    s.cfg.Issuer,
			Subject:   Subject(id.TenantID, id.UserID),
			Audience:  jwt.Audience{s.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)), // a little clock skew
			Expiry:    jwt.NewNumericDate(exp),
		},
		TenantID: id.TenantID, UserID: id.UserID, Role: id.Role,
		GivenName: id.GivenName, FamilyName: id.FamilyName, Email: id.Email, SchoolName: id.SchoolName,
		Launch: id.Launch, Setup: id.Setup,
	}
	tok, err := jwt.Signed(ks.signer).Claims(c).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("assertion: sign: %w", err)
	}
	return tok, exp, nil
}

// KeyID is the id of the key that signs now.
func (s *Signer) KeyID() string { return s.state.Load().at(s.cfg.Now()).kid }

// JWKS is the published key set: the public halves of every key not yet retired.
func (s *Signer) JWKS() []byte { return s.state.Load().jwks }

// ServeHTTP serves the JWKS (GET /.well-known/jwks.json).
func (s *Signer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b := s.JWKS()
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(jwksMaxAge.Seconds())))
	h.Set("Access-Control-Allow-Origin", "*") // public keys; a browser-side verifier may fetch them
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
