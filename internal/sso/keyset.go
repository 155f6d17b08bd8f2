package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// signingAlgs are the id_token algorithms accepted: the RSA and ECDSA families. "none" and the
// HMAC algorithms are never accepted, so neither an unsigned token nor one "signed" with the
// public key as an HMAC secret can pass.
var signingAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

var joseAlgs = func() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(signingAlgs))
	for i, a := range signingAlgs {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}()

// Signature failures, told apart for the log and the metrics.
var (
	errUnknownKey   = errors.New("id_token signed with a key the platform's JWKS does not hold")
	errBadSignature = errors.New("id_token signature does not verify")
	errJWKSFetch    = errors.New("could not fetch the platform's JWKS")
)

// noKeysRetryInterval is the least time between fetches after a failed one: while no key is
// held at all, or while the held keys are past their max-age and could not be refreshed.
const noKeysRetryInterval = 5 * time.Second

// maxJWKSBytes bounds a JWKS document; a real one is a few kilobytes.
const maxJWKSBytes = 256 << 10

// How long fetched keys are trusted before they are fetched again: the JWKS answer's
// Cache-Control max-age, within sane bounds, so a key the platform removed stops being trusted
// without a restart, and a platform answering max-age=0 is not fetched on every sign-in.
const (
	jwksMinMaxAge     = 5 * time.Minute
	jwksMaxMaxAge     = 24 * time.Hour
	jwksDefaultMaxAge = time.Hour // when the answer names no max-age
)

// keySet is one JWKS URL's keys. It implements go-oidc's KeySet.
//
// An id_token whose key id it does not hold makes it fetch the JWKS at once (concurrent callers
// share one fetch), since the platform may have rotated its key right after our last fetch. A
// key id still unknown after a fresh fetch is refused, and the next fetch for an unknown key id
// waits until minInterval after the last one: tokens with made-up key ids cost at most one
// fetch per minInterval. Keys past their max-age are fetched again before they are used (in
// the background while the key set is in use: Service.RefreshKeys).
type keySet struct {
	url         string
	client      *http.Client
	minInterval time.Duration
	now         func() time.Time
	fetches     func() // counts a download (metrics); may be nil

	// lastUsed is the clock's Unix nanoseconds at the newest verification: the background
	// refresh keeps only key sets in use fresh.
	lastUsed atomic.Int64

	mu           sync.Mutex
	keys         []jose.JSONWebKey
	expires      time.Time     // the held keys' max-age ends; zero while none are held
	lastFetch    time.Time     // start of the newest fetch; zero before the first
	lastKidFetch time.Time     // start of the newest fetch made for an unknown key id
	inflight     chan struct{} // closed when the running fetch ends; nil when none runs
	fetchErr     error         // the newest fetch's failure, nil after a success
}

// errHolder carries the typed signature error out of go-oidc, which flattens it into text.
type errHolder struct{ err error }

type errHolderKey struct{}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	payload, err := k.verify(ctx, raw)
	if err != nil {
		if h, ok := ctx.Value(errHolderKey{}).(*errHolder); ok {
			h.err = err
		}
	}
	return payload, err
}

func (k *keySet) verify(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, joseAlgs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadSignature, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", errBadSignature)
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, fresh, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	if payload, found, err := verifyWith(jws, keys, kid); found {
		return payload, err
	}
	if fresh {
		// The keys were fetched while this token waited: it is still unknown after a fresh
		// fetch.
		return nil, errUnknownKey
	}
	// A key id we do not hold: the platform may have rotated its key since our last fetch.
	keys, fetchErr := k.fetchForUnknownKid(ctx)
	if payload, found, err := verifyWith(jws, keys, kid); found {
		return payload, err
	}
	if fetchErr != nil {
		return nil, fmt.Errorf("%w (and %w)", errUnknownKey, fetchErr)
	}
	return nil, errUnknownKey
}

// verifyWith checks the signature with the key named kid (every key of a fitting type when the
// token names none). found is false when no key could even be tried.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, found bool, err error) {
	alg := jws.Signatures[0].Header.Algorithm
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		found = true
		if p, err := jws.Verify(key.Key); err == nil {
			return p, true, nil
		}
	}
	if found {
		return nil, true, errBadSignature
	}
	return nil, false, nil
}

// current returns the keys to verify with: the held ones while their max-age lasts, else the
// result of a fetch (joined when one runs). fresh says they come from a fetch that ended while
// this call waited. Keys past their max-age that cannot be refreshed are still used (the
// platform being unreachable must not end every sign-in), and fetched again at most every
// noKeysRetryInterval.
func (k *keySet) current(ctx context.Context) (keys []jose.JSONWebKey, fresh bool, err error) {
	now := k.now()
	k.lastUsed.Store(now.UnixNano())
	k.mu.Lock()
	if k.keys != nil && now.Before(k.expires) {
		// Also while a (background) fetch runs: these keys are still good.
		keys := k.keys
		k.mu.Unlock()
		return keys, false, nil
	}
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		return k.join(ctx, ch)
	}
	if !k.lastFetch.IsZero() && now.Sub(k.lastFetch) < noKeysRetryInterval {
		keys, err := k.keys, k.fetchErr
		k.mu.Unlock()
		if keys == nil {
			if err == nil {
				err = fmt.Errorf("%w: no keys yet and the last fetch was less than %s ago", errJWKSFetch, noKeysRetryInterval)
			}
			return nil, false, err
		}
		return keys, false, nil
	}
	ch := k.startLocked(now)
	k.mu.Unlock()
	k.run(context.WithoutCancel(ctx), ch)
	k.mu.Lock()
	keys, err = k.keys, k.fetchErr
	k.mu.Unlock()
	if keys != nil {
		// Held keys serve even when their refresh failed.
		return keys, err == nil, nil
	}
	return nil, true, err
}

// fetchForUnknownKid fetches the keys for a key id we do not hold, or joins the fetch already
// running; when the last fetch for an unknown key id began less than minInterval ago, it
// returns the held keys without fetching.
func (k *keySet) fetchForUnknownKid(ctx context.Context) ([]jose.JSONWebKey, error) {
	now := k.now()
	k.mu.Lock()
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		keys, _, err := k.join(ctx, ch)
		return keys, err
	}
	if !k.lastKidFetch.IsZero() && now.Sub(k.lastKidFetch) < k.minInterval {
		defer k.mu.Unlock()
		return k.keys, nil
	}
	k.lastKidFetch = now
	ch := k.startLocked(now)
	k.mu.Unlock()
	k.run(context.WithoutCancel(ctx), ch)
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys, k.fetchErr
}

// join waits for the running fetch and returns what is held after it.
func (k *keySet) join(ctx context.Context, ch chan struct{}) ([]jose.JSONWebKey, bool, error) {
	select {
	case <-ch:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys != nil {
		return k.keys, k.fetchErr == nil, nil
	}
	return nil, true, k.fetchErr
}

// startLocked marks a fetch as running; the caller runs it with run. k.mu is held.
func (k *keySet) startLocked(now time.Time) chan struct{} {
	ch := make(chan struct{})
	k.inflight = ch
	k.lastFetch = now
	return ch
}

// run downloads the JWKS and stores the outcome: new keys and their max-age, or the failure
// (the held keys stay). Callers waiting on ch see the outcome once it is closed.
func (k *keySet) run(ctx context.Context, ch chan struct{}) {
	keys, maxAge, err := k.download(ctx)
	k.mu.Lock()
	if err == nil {
		k.keys = keys
		k.expires = k.now().Add(maxAge)
	}
	k.fetchErr = err
	k.inflight = nil
	k.mu.Unlock()
	close(ch)
}

// refreshDue reports whether the background refresh should fetch the keys now: they are held,
// in use within idleAfter, no fetch runs, and their max-age ends within lead.
func (k *keySet) refreshDue(now time.Time, lead, idleAfter time.Duration) bool {
	if now.Sub(time.Unix(0, k.lastUsed.Load())) > idleAfter {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys != nil && k.inflight == nil && !now.Before(k.expires.Add(-lead)) &&
		(k.fetchErr == nil || now.Sub(k.lastFetch) >= noKeysRetryInterval)
}

// idle reports whether the key set was not used within idleAfter.
func (k *keySet) idle(now time.Time, idleAfter time.Duration) bool {
	return now.Sub(time.Unix(0, k.lastUsed.Load())) > idleAfter
}

// refresh fetches the keys in the background, unless a fetch runs already. It reports whether it
// fetched, and the fetch's error.
func (k *keySet) refresh(ctx context.Context) (bool, error) {
	k.mu.Lock()
	if k.inflight != nil {
		k.mu.Unlock()
		return false, nil
	}
	ch := k.startLocked(k.now())
	k.mu.Unlock()
	k.run(ctx, ch)
	k.mu.Lock()
	defer k.mu.Unlock()
	return true, k.fetchErr
}

func (k *keySet) download(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) {
	if k.fetches != nil {
		k.fetches()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errJWKSFetch, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errJWKSFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, 0, fmt.Errorf("%w: %s answered %d", errJWKSFetch, k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errJWKSFetch, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("%w: document over %d bytes", errJWKSFetch, maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, 0, fmt.Errorf("%w: not a JWKS: %v", errJWKSFetch, err)
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, key := range set.Keys {
		// Only public signing keys: a private key published by mistake is never used, and
		// symmetric keys would open the door to HMAC forgeries.
		if !key.Valid() || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, 0, fmt.Errorf("%w: %s holds no public signing key", errJWKSFetch, k.url)
	}
	return keys, jwksMaxAge(resp.Header), nil
}

// jwksMaxAge is how long a JWKS answer may be used: its Cache-Control max-age within
// [jwksMinMaxAge, jwksMaxMaxAge]; no-cache and no-store count as 0, a missing or unreadable
// max-age as jwksDefaultMaxAge.
func jwksMaxAge(h http.Header) time.Duration {
	age, found := jwksDefaultMaxAge, false
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-cache", "no-store":
				age, found = 0, true
			case "max-age":
				if found {
					continue
				}
				n, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64)
				if err != nil || n < 0 {
					continue
				}
				age, found = time.Duration(min(n, int64(jwksMaxMaxAge/time.Second)))*time.Second, true
			}
		}
	}
	return min(max(age, jwksMinMaxAge), jwksMaxMaxAge)
}
