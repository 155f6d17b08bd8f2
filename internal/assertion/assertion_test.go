package assertion_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

const (
	issuer   = "https://partner.example"
	audience = "https://app.partner.example"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func openStore(t testing.TB, url string) *store.Store {
	t.Helper()
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), url, kr, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func newSigner(t testing.TB, st *store.Store, c *clock, mod ...func(*assertion.Config)) *assertion.Signer {
	t.Helper()
	cfg := assertion.Config{Store: st, Issuer: issuer, Audience: audience, Now: c.Now, Refresh: 10 * time.Second}
	for _, m := range mod {
		m(&cfg)
	}
	s, err := assertion.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var teacher = assertion.Identity{
	TenantID: "1001", UserID: "t-42", Role: "teacher", GivenName: "Jürgen", FamilyName: "Groß",
	Email: "j.gross@schule.example", SchoolName: "Gymnasium Süd",
	Launch: map[string]string{"lesson_id": "426840"}, Setup: map[string]string{"district": "Nord"},
}

// verify checks token the way an app does with any JOSE library: against the published JWKS,
// with the expected issuer and audience, at the given time.
func verify(t testing.TB, jwks []byte, token string, at time.Time, aud string) (assertion.Claims, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatalf("JWKS is not a JSON Web Key Set: %v", err)
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return assertion.Claims{}, err
	}
	if len(tok.Headers) != 1 {
		return assertion.Claims{}, errors.New("want one signature")
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) == 0 {
		return assertion.Claims{}, errors.New("kid not in the JWKS")
	}
	var c assertion.Claims
	if err := tok.Claims(keys[0].Key, &c); err != nil {
		return assertion.Claims{}, err
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: issuer, AnyAudience: jwt.Audience{aud}, Time: at}, 0); err != nil {
		return c, err
	}
	return c, nil
}

func TestAssertionVerifiesAgainstTheJWKSWithEveryClaim(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := newSigner(t, openStore(t, pgtest.NewDatabase(t)), c)
	tok, exp, err := s.Sign(teacher)
	if err != nil {
		t.Fatal(err)
	}
	if got := exp.Sub(c.Now()); got != assertion.DefaultTTL || got > assertion.MaxTTL {
		t.Errorf("lifetime %s, want %s", got, assertion.DefaultTTL)
	}
	got, err := verify(t, s.JWKS(), tok, c.Now(), audience)
	if err != nil {
		t.Fatalf("a fresh assertion does not verify: %v", err)
	}
	if got.Subject != "1001/t-42" || got.TenantID != "1001" || got.UserID != "t-42" || got.Role != "teacher" ||
		got.GivenName != "Jürgen" || got.FamilyName != "Groß" || got.SchoolName != "Gymnasium Süd" ||
		got.Email != teacher.Email || got.Launch["lesson_id"] != "426840" || got.Setup["district"] != "Nord" {
		t.Errorf("claims = %+v", got)
	}
	// The header names the key and the type, as JOSE libraries expect.
	parsed, _ := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if h := parsed.Headers[0]; h.KeyID != s.KeyID() || h.Algorithm != "ES256" || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header = %+v", h)
	}
}

func TestAssertionIsRefused(t *testing.T) {
	t.Parallel()
	c := newClock()
	url := pgtest.NewDatabase(t)
	s := newSigner(t, openStore(t, url), c)
	tok, _, err := s.Sign(teacher)
	if err != nil {
		t.Fatal(err)
	}
	other := newSigner(t, openStore(t, pgtest.NewDatabase(t)), c) // another deployment's key
	otherTok, _, _ := other.Sign(teacher)

	// A token signed with a key of the right kid but another private key.
	forged := func() string {
		priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sig, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: priv, KeyID: s.KeyID()}}, nil)
		out, _ := jwt.Signed(sig).Claims(assertion.Claims{Claims: jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience},
			Expiry: jwt.NewNumericDate(c.Now().Add(time.Minute))}, TenantID: "1002", UserID: "t-42"}).Serialize()
		return out
	}()
	for _, tc := range []struct {
		name  string
		token string
		at    time.Time
		aud   string
	}{
		{"after its exp", tok, c.Now().Add(assertion.DefaultTTL + time.Second), audience},
		{"signed with another deployment's key", otherTok, c.Now(), audience},
		{"signed with another key under our kid", forged, c.Now(), audience},
		{"for another audience", tok, c.Now(), "https://other-app.example"},
	} {
		if _, err := verify(t, s.JWKS(), tc.token, tc.at, tc.aud); err == nil {
			t.Errorf("%s: verified", tc.name)
		}
	}
}

// Replicas on one database sign with the same key, however many start at once on an empty one.
func TestReplicasShareOneKey(t *testing.T) {
	t.Parallel()
	c := newClock()
	url := pgtest.NewDatabase(t)
	st := openStore(t, url)
	signers := make([]*assertion.Signer, 8)
	var wg sync.WaitGroup
	for i := range signers {
		wg.Go(func() { signers[i] = newSigner(t, openStore(t, url), c) })
	}
	wg.Wait()
	keys, err := st.SigningKeys(context.Background(), c.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 {
		t.Fatalf("%d keys after 8 replicas started, want 1", len(keys))
	}
	tok, _, _ := signers[3].Sign(teacher)
	for i, s := range signers {
		if _, err := verify(t, s.JWKS(), tok, c.Now(), audience); err != nil {
			t.Errorf("replica %d's JWKS does not verify replica 3's assertion: %v", i, err)
		}
	}
}

// A scheduled rotation publishes the successor before it signs, switches at its time without
// waiting for a refresh, and keeps the old key published until its last assertion expired.
func TestScheduledRotationKeepsEveryAssertionVerifiable(t *testing.T) {
	t.Parallel()
	c := newClock()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	rotate := func(cfg *assertion.Config) { cfg.RotateEvery = 24 * time.Hour }
	a := newSigner(t, openStore(t, url), c, rotate)
	b := newSigner(t, openStore(t, url), c, rotate) // a second replica
	first := a.KeyID()
	oldTok, _, _ := a.Sign(teacher)

	c.Advance(23*time.Hour + 30*time.Minute) // within the hour before the successor signs
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != first || b.KeyID() != first {
		t.Fatalf("the successor signs before its time")
	}
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(b.JWKS(), &set)
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS holds %d keys before the switch, want the old and its successor", len(set.Keys))
	}
	c.Advance(29 * time.Minute)
	lastOld, _, _ := a.Sign(teacher) // a minute before the switch

	c.Advance(time.Minute) // the successor's time; no refresh ran
	if a.KeyID() == first || a.KeyID() != b.KeyID() {
		t.Fatalf("replicas sign with %s and %s after the switch, want the successor (old %s)", a.KeyID(), b.KeyID(), first)
	}
	newTok, _, _ := b.Sign(teacher)
	for name, tok := range map[string]string{"signed just before the switch": lastOld, "signed after": newTok} {
		if _, err := verify(t, a.JWKS(), tok, c.Now(), audience); err != nil {
			t.Errorf("assertion %s does not verify during the overlap: %v", name, err)
		}
	}
	if _, err := verify(t, a.JWKS(), oldTok, c.Now(), audience); err == nil {
		t.Errorf("a day-old assertion still verifies")
	}

	c.Advance(assertion.DefaultTTL + 2*time.Minute) // past the overlap
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(a.JWKS(), &set)
	if len(set.Keys) != 1 || set.Keys[0].KeyID != b.KeyID() {
		t.Errorf("JWKS after the overlap = %s, want only the successor", a.JWKS())
	}
}

// A rotation an operator asks for waits until every replica has read the new key, and the old
// key's assertions keep verifying.
func TestForcedRotation(t *testing.T) {
	t.Parallel()
	c := newClock()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	a := newSigner(t, openStore(t, url), c)
	b := newSigner(t, openStore(t, url), c)
	first := a.KeyID()
	before, _, _ := b.Sign(teacher)
	kid, from, err := a.Rotate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if kid == first || !from.After(c.Now()) {
		t.Fatalf("Rotate = %s from %s", kid, from)
	}
	c.Advance(10 * time.Second) // b's refresh
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(t, b.JWKS(), before, c.Now(), audience); err != nil {
		t.Errorf("an assertion signed before the rotation does not verify: %v", err)
	}
	c.Advance(from.Sub(c.Now()))
	if a.KeyID() != kid || b.KeyID() != kid {
		t.Fatalf("replicas sign with %s and %s, want %s", a.KeyID(), b.KeyID(), kid)
	}
	after, _, _ := a.Sign(teacher)
	for _, s := range []*assertion.Signer{a, b} {
		for _, tok := range []string{before, after} {
			if _, err := verify(t, s.JWKS(), tok, c.Now(), audience); err != nil {
				t.Errorf("does not verify after the switch: %v", err)
			}
		}
	}
}

func TestPrivateKeyIsSealedAtRest(t *testing.T) {
	t.Parallel()
	c := newClock()
	url := pgtest.NewDatabase(t)
	st := openStore(t, url)
	newSigner(t, st, c)
	keys, err := st.SigningKeys(context.Background(), c.Now())
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys = %d, %v", len(keys), err)
	}
	var raw []byte
	if err := st.Pool().QueryRow(context.Background(), `SELECT private_key_sealed FROM signing_keys`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, keys[0].PrivateKey) || bytes.Contains(raw, keys[0].PrivateKey[len(keys[0].PrivateKey)-32:]) {
		t.Fatal("the private key is stored in the clear")
	}
	// Another keyring cannot open it.
	other, _ := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{8}, secret.KeySize)})
	st2, err := store.Open(context.Background(), url, other, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	if _, err := st2.SigningKeys(context.Background(), c.Now()); !errors.Is(err, secret.ErrOpen) {
		t.Errorf("opened under another keyring: %v", err)
	}
}

func TestJWKSHandler(t *testing.T) {
	t.Parallel()
	c := newClock()
	s := newSigner(t, openStore(t, pgtest.NewDatabase(t)), c)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/jwk-set+json" ||
		rec.Header().Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("%d %v", rec.Code, rec.Header())
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("body %s: %v", rec.Body, err)
	}
	k := set.Keys[0]
	if !k.IsPublic() || k.Use != "sig" || k.Algorithm != "ES256" || k.KeyID == "" {
		t.Errorf("published key %+v", k)
	}
	if bytes.Contains(rec.Body.Bytes(), []byte(`"d"`)) {
		t.Error("the JWKS holds a private key parameter")
	}
}

func TestConfigBounds(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	for name, cfg := range map[string]assertion.Config{
		"TTL over five minutes": {Store: st, Issuer: issuer, Audience: audience, TTL: 6 * time.Minute},
		"no audience":           {Store: st, Issuer: issuer},
		"rotation too often":    {Store: st, Issuer: issuer, Audience: audience, RotateEvery: time.Minute},
	} {
		if _, err := assertion.New(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	c := newClock()
	s := newSigner(b, openStore(b, pgtest.NewDatabase(b)), c)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Sign(teacher); err != nil {
			b.Fatal(err)
		}
	}
}
