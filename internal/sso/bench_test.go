package sso

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// Keys are generated once per test binary: RSA-2048 generation costs tens of milliseconds.
var (
	benchKeysOnce sync.Once
	benchRSA      *rsa.PrivateKey
	benchRSA2     *rsa.PrivateKey // a second RSA key: the "rotated" key and the use=enc key
	benchEC       *ecdsa.PrivateKey
)

func benchKeys(tb testing.TB) (rsaKey, rsaKey2 *rsa.PrivateKey, ecKey *ecdsa.PrivateKey) {
	tb.Helper()
	benchKeysOnce.Do(func() {
		var err error
		if benchRSA, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if benchRSA2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if benchEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
	})
	return benchRSA, benchRSA2, benchEC
}

// testClock is an injectable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// jwksServer serves a JWKS that the test may change, and counts the requests for it.
type jwksServer struct {
	srv     *httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	doc     []byte
	// cacheControl is sent as the Cache-Control header when set; status, when set, is
	// answered instead of the JWKS; hold, when set, receives each request's arrival and
	// then blocks it until the test sends on it again.
	cacheControl string
	status       int
	hold         chan struct{}
}

func newJWKSServer(tb testing.TB, keys ...jose.JSONWebKey) *jwksServer {
	tb.Helper()
	j := &jwksServer{}
	j.publish(tb, keys...)
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		doc, cc, status, hold := j.doc, j.cacheControl, j.status, j.hold
		j.mu.Unlock()
		if hold != nil {
			hold <- struct{}{} // arrived
			<-hold             // released
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	tb.Cleanup(j.srv.Close)
	return j
}

// set changes how the server answers from now on.
func (j *jwksServer) set(cacheControl string, status int, hold chan struct{}) {
	j.mu.Lock()
	j.cacheControl, j.status, j.hold = cacheControl, status, hold
	j.mu.Unlock()
}

func (j *jwksServer) publish(tb testing.TB, keys ...jose.JSONWebKey) {
	tb.Helper()
	doc, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		tb.Fatal(err)
	}
	j.mu.Lock()
	j.doc = doc
	j.mu.Unlock()
}

func (j *jwksServer) keySet(clock *testClock) *keySet {
	return &keySet{
		url: j.srv.URL + "/jwks", client: j.srv.Client(), minInterval: DefaultJWKSMinInterval, now: clock.Now,
	}
}

func pubJWK(key crypto.Signer, kid, alg, use string) jose.JSONWebKey {
	return jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: alg, Use: use}
}

// signToken signs claims as a compact JWS with key, naming kid in the header.
func signToken(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		tb.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

const (
	benchIssuer   = "https://platform.example/WebUntis/api/sso/v3/1001"
	benchClientID = "client-1001"
	benchNonce    = "n-0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
)

func idTokenClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": benchIssuer, "aud": benchClientID, "sub": "3f1c2a9e-0b7d-4c55-9a31-2d1e7f0c4b8a",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "auth_time": now.Unix(), "nonce": benchNonce,
	}
}

// verifyLikeService is Service.verifyIDToken's path after discovery plus complete's nonce check:
// a verifier per call over the school's keySet, the error holder in the context, then the nonce.
func verifyLikeService(ctx context.Context, keys *keySet, now func() time.Time, raw, nonce string) (*oidc.IDToken, error) {
	v := oidc.NewVerifier(benchIssuer, keys, &oidc.Config{
		ClientID: benchClientID, SupportedSigningAlgs: signingAlgs, Now: now,
	})
	holder := &errHolder{}
	idt, err := v.Verify(context.WithValue(ctx, errHolderKey{}, holder), raw)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, errors.New("nonce mismatch")
	}
	return idt, nil
}

func benchmarkVerify(b *testing.B, alg jose.SignatureAlgorithm, key crypto.Signer) {
	clock := &testClock{now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
	j := newJWKSServer(b, pubJWK(key, "k1", string(alg), "sig"))
	keys := j.keySet(clock)
	raw := signToken(b, alg, key, "k1", idTokenClaims(clock.Now()))
	ctx := context.Background()
	// The first call fetches the JWKS; the loop measures the cached path, as production runs it.
	if _, err := verifyLikeService(ctx, keys, clock.Now, raw, benchNonce); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := verifyLikeService(ctx, keys, clock.Now, raw, benchNonce); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if n := j.fetches.Load(); n != 1 {
		b.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

// BenchmarkVerifyIDToken measures verifying an RS256 (RSA-2048) id_token as Complete does, with
// the school's keys cached (design target: <= 100 us/op).
func BenchmarkVerifyIDToken(b *testing.B) {
	key, _, _ := benchKeys(b)
	benchmarkVerify(b, jose.RS256, key)
}

// BenchmarkVerifyIDTokenES256 is the same with an ES256 (P-256) id_token, which the simulator
// issues.
func BenchmarkVerifyIDTokenES256(b *testing.B) {
	_, _, key := benchKeys(b)
	benchmarkVerify(b, jose.ES256, key)
}

// BenchmarkVerifyIDTokenUnknownKid measures refusing a token whose kid the JWKS does not hold
// after the one fetch an unknown kid may make per interval: what a flood of made-up kids costs
// the server.
func BenchmarkVerifyIDTokenUnknownKid(b *testing.B) {
	key, _, _ := benchKeys(b)
	clock := &testClock{now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
	j := newJWKSServer(b, pubJWK(key, "k1", "RS256", "sig"))
	keys := j.keySet(clock)
	raw := signToken(b, jose.RS256, key, "not-published", idTokenClaims(clock.Now()))
	ctx := context.Background()
	// The first token makes the first download; the second one fetch for an unknown kid. The
	// loop measures the refusals after that, within the interval.
	for range 2 {
		if _, err := keys.verify(ctx, raw); !errors.Is(err, errUnknownKey) {
			b.Fatalf("err = %v, want errUnknownKey", err)
		}
	}
	if n := j.fetches.Load(); n != 2 {
		b.Fatalf("JWKS fetched %d times before the loop, want 2", n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := keys.verify(ctx, raw); !errors.Is(err, errUnknownKey) {
			b.Fatalf("err = %v, want errUnknownKey", err)
		}
	}
	b.StopTimer()
	if n := j.fetches.Load(); n != 2 {
		b.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

func TestKeySetFetchLimit(t *testing.T) {
	t.Parallel()
	rsaKey, rsaKey2, _ := benchKeys(t)
	ctx := context.Background()

	t.Run("flood then rotation", func(t *testing.T) {
		t.Parallel()
		clock := &testClock{now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
		j := newJWKSServer(t, pubJWK(rsaKey, "k1", "RS256", "sig"))
		keys := j.keySet(clock)
		claims := idTokenClaims(clock.Now())

		flood := func(n int) {
			t.Helper()
			tokens := make([]string, n)
			for i := range tokens {
				tokens[i] = signToken(t, jose.RS256, rsaKey, fmt.Sprintf("random-%d-%s", i, randomString()[:8]), claims)
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			start := make(chan struct{})
			for i := range tokens {
				wg.Go(func() {
					<-start
					_, errs[i] = keys.verify(ctx, tokens[i])
				})
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if !errors.Is(err, errUnknownKey) {
					t.Fatalf("token %d: err = %v, want errUnknownKey", i, err)
				}
			}
		}

		// 200 tokens at once, each naming a kid nobody published, against a key set that holds
		// nothing yet: the first download serves them, and at most one more is made for the
		// unknown kids; none is accepted.
		flood(200)
		if n := j.fetches.Load(); n < 1 || n > 2 {
			t.Fatalf("a flood of unknown kids on an empty key set made %d JWKS fetches, want 1 or 2", n)
		}
		// The published key works, without a fetch.
		before := j.fetches.Load()
		if _, err := keys.verify(ctx, signToken(t, jose.RS256, rsaKey, "k1", claims)); err != nil {
			t.Fatalf("known key: %v", err)
		}
		if n := j.fetches.Load(); n != before {
			t.Fatalf("a known key fetched")
		}
		// Within the interval, another flood: whichever flood came after the first download,
		// exactly one fetch was made for the unknown kids.
		clock.Advance(10 * time.Second)
		flood(200)
		if n := j.fetches.Load(); n != 2 {
			t.Fatalf("two floods within the interval made %d fetches, want the first download and one more", n)
		}
		before = 2
		// After the interval, a flood of 200 unknown kids at once costs exactly one fetch.
		clock.Advance(DefaultJWKSMinInterval)
		flood(200)
		if n := j.fetches.Load(); n != before+1 {
			t.Fatalf("a flood after the interval made %d fetches, want 1", n-before)
		}

		// Once that interval is over, the platform rotates: k2 is published, and a k2 token is
		// accepted with one fetch.
		clock.Advance(DefaultJWKSMinInterval + time.Second)
		j.publish(t, pubJWK(rsaKey, "k1", "RS256", "sig"), pubJWK(rsaKey2, "k2", "RS256", "sig"))
		rotated := signToken(t, jose.RS256, rsaKey2, "k2", claims)
		if _, err := keys.verify(ctx, rotated); err != nil {
			t.Fatalf("k2 after the rotation: %v", err)
		}
		if n := j.fetches.Load(); n != before+2 {
			t.Fatalf("JWKS fetched %d times for the rotation, want 1", n-before-1)
		}
		// And the next k2 token needs no fetch at all.
		if _, err := keys.verify(ctx, rotated); err != nil {
			t.Fatalf("k2 again: %v", err)
		}
		if n := j.fetches.Load(); n != before+2 {
			t.Fatalf("JWKS fetched %d times, want still %d", n, before+2)
		}
	})

	t.Run("enc and oct keys never used", func(t *testing.T) {
		t.Parallel()
		clock := &testClock{now: time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)}
		hmacSecret := []byte("0123456789abcdef0123456789abcdef")
		j := newJWKSServer(t,
			pubJWK(rsaKey, "sig1", "RS256", "sig"),
			pubJWK(rsaKey2, "enc1", "RS256", "enc"),
			// A symmetric key: were it used, anyone who saw the JWKS could sign.
			jose.JSONWebKey{Key: hmacSecret, KeyID: "oct1", Algorithm: "HS256", Use: "sig"},
			// An oct key with an RS256 label, to be sure the filter is by key type, not by alg.
			jose.JSONWebKey{Key: hmacSecret, KeyID: "oct2", Algorithm: "RS256"},
		)
		keys := j.keySet(clock)
		claims := idTokenClaims(clock.Now())
		if _, err := keys.verify(ctx, signToken(t, jose.RS256, rsaKey, "sig1", claims)); err != nil {
			t.Fatalf("signing key: %v", err)
		}
		keys.mu.Lock()
		held := keys.keys
		keys.mu.Unlock()
		if len(held) != 1 || held[0].KeyID != "sig1" {
			var ids []string
			for _, k := range held {
				ids = append(ids, k.KeyID)
			}
			t.Fatalf("key set holds %v, want only sig1", ids)
		}

		cases := []struct {
			name string
			raw  string
			want error
		}{
			// errUnknownKey (not errBadSignature) shows the key was not even tried.
			{"RS256 by the use=enc key", signToken(t, jose.RS256, rsaKey2, "enc1", claims), errUnknownKey},
			{"RS256 naming the oct key", signToken(t, jose.RS256, rsaKey2, "oct2", claims), errUnknownKey},
			// HS256 is refused before any key is looked at, whatever the kid.
			{"HS256 with the oct secret", signToken(t, jose.HS256, hmacSecret, "oct1", claims), errBadSignature},
			{"HS256 naming the oct key", signToken(t, jose.HS256, hmacSecret, "oct2", claims), errBadSignature},
			// No kid: every held key is tried, and only sig1 is held.
			{"RS256 by the enc key, no kid", signToken(t, jose.RS256, rsaKey2, "", claims), errBadSignature},
		}
		for _, c := range cases {
			if _, err := keys.verify(ctx, c.raw); !errors.Is(err, c.want) {
				t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
			}
		}
		// A key set whose JWKS holds only an enc and an oct key has no key at all.
		only := newJWKSServer(t, pubJWK(rsaKey2, "enc1", "RS256", "enc"),
			jose.JSONWebKey{Key: hmacSecret, KeyID: "oct1", Algorithm: "HS256"})
		if _, err := only.keySet(clock).verify(ctx, signToken(t, jose.RS256, rsaKey2, "enc1", claims)); !errors.Is(err, errJWKSFetch) {
			t.Errorf("JWKS of enc and oct keys only: err = %v, want errJWKSFetch", err)
		}
	})
}
