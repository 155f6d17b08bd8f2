package exampleapp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// claims is the payload of X-Untis-Identity. sub is "tenantId/userId": a platform user id is
// unique only within its school, so an app that keys its users on sub cannot mix two schools up.
type claims struct {
	jwt.Claims
	TenantID   string            `json:"tenant_id"`
	UserID     string            `json:"user_id"`
	Role       string            `json:"role"`
	GivenName  string            `json:"given_name"`
	FamilyName string            `json:"family_name"`
	Email      string            `json:"email"`
	SchoolName string            `json:"school_name"`
	Launch     map[string]string `json:"launch"`
	Setup      map[string]string `json:"setup"`
}

// verifier checks X-Untis-Identity: an ES256 JWS whose key is in the gateway's JWKS, with the
// expected issuer and audience, not expired. The JWKS is cached; a token signed by a key id the
// cache does not know fetches it again (the gateway rotated its key), at most once per
// refetchEvery, so a flood of forged key ids cannot make the app hammer the gateway.
type verifier struct {
	jwksURL, issuer, audience string
	client                    *http.Client
	now                       func() time.Time
	refetchEvery              time.Duration // default 30 s
	maxAge                    time.Duration // a JWKS older than this is fetched again (default 5 min)

	mu        sync.Mutex
	keys      map[string]*ecdsa.PublicKey // by kid
	fetchedAt time.Time                   // of the keys held
	triedAt   time.Time                   // of the last fetch, successful or not
}

// leeway allows for clocks that differ a little between the gateway and the app.
const leeway = 30 * time.Second

func newVerifier(jwksURL, issuer, audience string) *verifier {
	return &verifier{
		jwksURL: jwksURL, issuer: issuer, audience: audience,
		client: &http.Client{Timeout: 5 * time.Second}, now: time.Now,
		refetchEvery: 30 * time.Second, maxAge: 5 * time.Minute,
	}
}

// verified is the outcome of checking one token, for the page.
type verified struct {
	OK     bool
	Reason string // why not, in plain words
	KeyID  string
	Claims *claims
}

// Verify checks a token. It never returns an error: the reason is part of the result.
func (v *verifier) Verify(ctx context.Context, token string) verified {
	if token == "" {
		return verified{Reason: "no X-Untis-Identity header came with the request"}
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return verified{Reason: "the token is not a compact ES256 JWS: " + err.Error()}
	}
	if len(tok.Headers) != 1 {
		return verified{Reason: "the token does not have exactly one signature"}
	}
	kid := tok.Headers[0].KeyID
	res := verified{KeyID: kid}
	key, err := v.key(ctx, kid)
	if err != nil {
		res.Reason = err.Error()
		return res
	}
	var c claims
	if err := tok.Claims(key, &c); err != nil {
		res.Reason = "the signature does not verify with the gateway's key " + kid
		return res
	}
	res.Claims = &c
	now := v.now()
	switch {
	case c.Expiry == nil || c.IssuedAt == nil:
		res.Reason = "the token has no exp or iat claim"
		return res
	case c.Subject != c.TenantID+"/"+c.UserID || c.TenantID == "" || c.UserID == "":
		res.Reason = fmt.Sprintf("sub %q is not tenant_id/user_id", c.Subject)
		return res
	}
	err = c.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.audience}, Time: now}, leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		res.Reason = fmt.Sprintf("the token expired at %s (it is %s now)", c.Expiry.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrInvalidIssuer):
		res.Reason = fmt.Sprintf("the issuer is %q, expected %q", c.Issuer, v.issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		res.Reason = fmt.Sprintf("the audience is %q, expected %q", []string(c.Audience), v.audience)
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		res.Reason = "the token is not valid yet (is a clock wrong?)"
	case err != nil:
		res.Reason = err.Error()
	default:
		res.OK = true
	}
	return res
}

// key returns the public key with the id kid from the JWKS, fetching the JWKS when it is not
// held or too old (at most once per refetchEvery).
func (v *verifier) key(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	k, ok := v.keys[kid]
	if ok && now.Sub(v.fetchedAt) < v.maxAge {
		return k, nil
	}
	if !v.triedAt.IsZero() && now.Sub(v.triedAt) < v.refetchEvery {
		if ok {
			return k, nil // old, but fetched again very recently and failed: keep it
		}
		return nil, fmt.Errorf("the gateway's JWKS has no key %q (fetched again at most every %s)", kid, v.refetchEvery)
	}
	v.triedAt = now
	keys, err := v.fetch(ctx)
	if err != nil {
		if ok {
			return k, nil
		}
		return nil, fmt.Errorf("the gateway's JWKS could not be fetched: %w", err)
	}
	v.keys, v.fetchedAt = keys, now
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("the gateway's JWKS has no key %q: signed by someone else", kid)
}

// fetch reads the JWKS and keeps its P-256 signing keys.
func (v *verifier) fetch(ctx context.Context) (map[string]*ecdsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %d", v.jwksURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%s is not a JWKS: %w", v.jwksURL, err)
	}
	keys := map[string]*ecdsa.PublicKey{}
	for _, k := range set.Keys {
		pub, ok := k.Key.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() || k.KeyID == "" || (k.Use != "" && k.Use != "sig") ||
			(k.Algorithm != "" && k.Algorithm != string(jose.ES256)) {
			continue
		}
		keys[k.KeyID] = pub
	}
	return keys, nil
}
