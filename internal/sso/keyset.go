package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
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

// noKeysRetryInterval is the least time between fetches while no key is held at all.
const noKeysRetryInterval = 5 * time.Second

// maxJWKSBytes bounds a JWKS document; a real one is a few kilobytes.
const maxJWKSBytes = 256 << 10

// keySet is one JWKS URL's keys. It implements go-oidc's KeySet. An id_token whose key id it
// does not hold makes it fetch the JWKS again, but at most once per minInterval, so tokens with
// made-up key ids cannot make the server hammer the platform; between fetches such tokens fail.
type keySet struct {
	url         string
	client      *http.Client
	minInterval time.Duration
	now         func() time.Time
	fetches     func() // counts a fetch (metrics); may be nil

	mu        sync.Mutex
	keys      []jose.JSONWebKey
	lastFetch time.Time     // start of the newest fetch; zero before the first
	inflight  chan struct{} // closed when the running fetch ends; nil when none runs
	fetchErr  error         // the newest fetch's failure, nil after a success
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
	keys, err := k.current(ctx)
	if err != nil {
		return nil, err
	}
	if payload, found, err := verifyWith(jws, keys, kid); found {
		return payload, err
	}
	// A key id we do not hold: the platform may have rotated its key. Fetch again, if allowed.
	keys, fetchErr := k.refetch(ctx)
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

// current returns the keys, fetching them when there are none yet.
func (k *keySet) current(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	keys, busy := k.keys, k.inflight != nil
	k.mu.Unlock()
	if keys != nil && !busy {
		return keys, nil
	}
	keys, err := k.fetch(ctx)
	if keys == nil {
		if err == nil {
			err = fmt.Errorf("%w: no keys yet and the last fetch was less than %s ago", errJWKSFetch, k.minInterval)
		}
		return nil, err
	}
	return keys, nil
}

// refetch fetches the keys again for a key id we do not hold, unless the last fetch began less
// than minInterval ago. It returns the keys held afterwards.
func (k *keySet) refetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	keys, err := k.fetch(ctx)
	if keys == nil && err != nil {
		return nil, err
	}
	return keys, nil
}

// fetch downloads the JWKS, or joins the download already running, or (when the last one began
// less than minInterval ago) returns what is held with the last download's error.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.keys, k.fetchErr
	}
	interval := k.minInterval
	if k.keys == nil {
		// Nothing held yet (the first fetch failed): every sign-in of the school fails until a
		// fetch succeeds, so try again sooner.
		interval = min(interval, noKeysRetryInterval)
	}
	if !k.lastFetch.IsZero() && k.now().Sub(k.lastFetch) < interval {
		defer k.mu.Unlock()
		return k.keys, k.fetchErr
	}
	ch := make(chan struct{})
	k.inflight = ch
	k.lastFetch = k.now()
	k.mu.Unlock()

	// The download runs detached from the caller's cancellation: a caller giving up must not
	// fail the others waiting for the same download.
	keys, err := k.download(context.WithoutCancel(ctx))
	k.mu.Lock()
	if err == nil {
		k.keys = keys
	}
	k.fetchErr = err
	k.inflight = nil
	keys = k.keys
	k.mu.Unlock()
	close(ch)
	return keys, err
}

func (k *keySet) download(ctx context.Context) ([]jose.JSONWebKey, error) {
	if k.fetches != nil {
		k.fetches()
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errJWKSFetch, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errJWKSFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("%w: %s answered %d", errJWKSFetch, k.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errJWKSFetch, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("%w: document over %d bytes", errJWKSFetch, maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%w: not a JWKS: %v", errJWKSFetch, err)
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
		return nil, fmt.Errorf("%w: %s holds no public signing key", errJWKSFetch, k.url)
	}
	return keys, nil
}
