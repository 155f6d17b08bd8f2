package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/discovery"
)

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// maxTokenBody bounds the token endpoint's answer.
const maxTokenBody = 64 << 10

// defaultLifetime is assumed when the platform does not say how long a token lives: the
// platform's documented 3 minutes.
const defaultLifetime = 3 * time.Minute

// tokenEndpoint is where and how a school's client-credentials token is asked for.
type tokenEndpoint struct {
	url string
	// post sends the client id and the password in the body (client_secret_post) instead of
	// HTTP Basic (client_secret_basic). Never both.
	post bool
}

// tokenEndpointFor reads the school's token endpoint and client authentication from its
// discovery document (OIDC Discovery §3: the source of truth), from the cache shared with the
// sign-in, or, for credentials not stored yet (uncached), fetched for this request alone. The
// documented {issuer}/token with HTTP Basic is used only for what the document does not name, or
// while it cannot be fetched. A document that names a token endpoint off UNTIS_API_URL, or only
// client authentication we cannot do, gets no request at all: the password goes nowhere the
// platform's answer chooses.
//
// Untis documents HTTP Basic with clientId:password for this grant, so Basic is used whenever
// the document lists client_secret_basic or lists nothing, and client_secret_post only when it
// is all the document lists.
func (c *Clients) tokenEndpointFor(ctx context.Context, tenantID string, cached bool) (tokenEndpoint, error) {
	if err := checkTenantID(tenantID); err != nil {
		return tokenEndpoint{}, err
	}
	get := c.disc.Get
	if !cached {
		get = c.disc.Fetch
	}
	doc, err := get(ctx, tenantID)
	switch {
	case errors.Is(err, discovery.ErrUnreachable):
		doc = c.disc.Documented(tenantID)
	case err != nil:
		return tokenEndpoint{}, &TokenError{Kind: ErrUnavailable, TenantID: tenantID,
			Err: fmt.Errorf("the school's OpenID discovery cannot be used: %w", err)}
	}
	return tokenEndpoint{
		url:  doc.TokenEndpoint,
		post: doc.ClientAuth(discovery.ClientSecretBasic) == discovery.ClientSecretPost,
	}, nil
}

// requestToken asks the school's token endpoint ep for a client-credentials token with the client
// id and the platform password.
//
// With HTTP Basic, RFC 6749 §2.3.1 form-encodes both before Basic, and so do we; partner code
// that works against the platform sends them as they are, and it is not documented which the
// platform decodes. So when the platform refuses encoded credentials that encoding changed (a
// password with '+', '/', '=' ...), they are tried once as they are. In the body
// (client_secret_post) form encoding is the only reading, so there is one request.
func (c *Clients) requestToken(ctx context.Context, tenantID string, ep tokenEndpoint, clientID, password string) (*cachedToken, error) {
	if ep.post {
		return c.tokenRequest(ctx, tenantID, ep, clientID, password)
	}
	encodedID, encodedPassword := url.QueryEscape(clientID), url.QueryEscape(password)
	tok, err := c.tokenRequest(ctx, tenantID, ep, encodedID, encodedPassword)
	if err != nil && errors.Is(err, ErrCredentialsRejected) && (encodedID != clientID || encodedPassword != password) {
		if tok, rawErr := c.tokenRequest(ctx, tenantID, ep, clientID, password); rawErr == nil {
			return tok, nil
		}
	}
	return tok, err
}

// tokenRequest makes one client-credentials request at ep: with the Basic user and password as
// given, or with them as client_id and client_secret in the body.
func (c *Clients) tokenRequest(ctx context.Context, tenantID string, ep tokenEndpoint, user, password string) (*cachedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.tuning.tokenTimeout)
	defer cancel()
	form := url.Values{"grant_type": {"client_credentials"}}
	if ep.post {
		form.Set("client_id", user)
		form.Set("client_secret", password)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("platform: token request for tenant %s: %w", tenantID, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if !ep.post {
		req.SetBasicAuth(user, password)
	}

	// Lifetimes count from before the request was sent, so network time never makes us hold a
	// token longer than the platform does.
	sent := c.now()
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.m.countTokenRequest(outcomeNetwork, time.Since(start))
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Err: transportError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody+1))
	elapsed := time.Since(start)
	if err != nil {
		c.m.countTokenRequest(outcomeNetwork, elapsed)
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Status: resp.StatusCode, Err: transportError(err)}
	}
	if resp.StatusCode != http.StatusOK {
		code, desc := errorBody(body, resp.Header)
		te := &TokenError{
			TenantID: tenantID, Status: resp.StatusCode, Code: code, Description: desc,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now()),
		}
		te.Kind = tokenErrorKind(resp.StatusCode, code)
		c.m.countTokenRequest(outcomeFor(te.Kind), elapsed)
		return nil, te
	}
	tr, err := parseTokenResponse(body)
	if err != nil {
		c.m.countTokenRequest(outcomeInvalid, elapsed)
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Status: resp.StatusCode, Err: err}
	}
	c.m.countTokenRequest(outcomeOK, elapsed)
	lifetime := defaultLifetime
	if tr.ExpiresIn > 0 && tr.ExpiresIn < 24*3600 {
		lifetime = time.Duration(tr.ExpiresIn) * time.Second
	}
	return &cachedToken{
		authorization: "Bearer " + tr.AccessToken,
		refreshAt:     sent.Add(lifetime - refreshMargin(lifetime)),
		expiresAt:     sent.Add(lifetime),
	}, nil
}

// parseTokenResponse reads a 200 answer of the token endpoint and refuses what cannot be used
// as a bearer token.
func parseTokenResponse(body []byte) (tokenResponse, error) {
	var tr tokenResponse
	switch {
	case len(body) > maxTokenBody || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "":
		return tr, errors.New("the token response is not the JSON the platform documents")
	case !validToken(tr.AccessToken):
		return tr, errors.New("the access token has characters a bearer token cannot have")
	case tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer"):
		return tr, fmt.Errorf("the platform issued a %q token; only bearer tokens are supported", clean(tr.TokenType, 32))
	}
	return tr, nil
}

// validToken accepts what can go into an Authorization header as it is: visible ASCII, at most
// 8 KiB (RFC 6750's b64token is stricter; real tokens are JWTs or opaque base64url).
func validToken(t string) bool {
	if len(t) > 8<<10 {
		return false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < 0x21 || t[i] > 0x7e {
			return false
		}
	}
	return true
}

// tokenErrorKind classifies a refused token request. invalid_client and invalid_grant (and a 401
// without a code) mean the credentials are wrong; 404 means the platform does not know the
// tenant, which for us is as good as wrong credentials.
func tokenErrorKind(status int, code string) error {
	switch code {
	case "invalid_client", "invalid_grant", "unauthorized_client":
		return ErrCredentialsRejected
	case "temporarily_unavailable", "server_error":
		if status == http.StatusTooManyRequests {
			return ErrRateLimited
		}
		return ErrUnavailable
	}
	switch status {
	case http.StatusUnauthorized, http.StatusNotFound:
		return ErrCredentialsRejected
	case http.StatusTooManyRequests:
		return ErrRateLimited
	}
	if status >= 500 {
		return ErrUnavailable
	}
	return ErrBadRequest
}

// ProveCredentials asks the platform for a client-credentials token with credentials that are
// not stored yet (the manual activation page, the operator console) and reports whether the
// platform accepts them. Nothing is cached or stored. The OIDC secret cannot be proved this way
// (only a login uses it), but when the password is refused and the secret is accepted in its
// place, the two were swapped, and the error says so.
//
// That second request is made only when the platform's answer says it was the password it
// refused (invalid_grant: the platform's answer to an OIDC secret given as the password), not
// for an unknown client id or tenant: every attempt on the activation page would otherwise cost
// the platform two refused token requests for the school.
//
// The token endpoint is the one the school's discovery names, read for this proof alone (the
// school may not be ours yet; storing its credentials drops any cached document anyway).
func (c *Clients) ProveCredentials(ctx context.Context, tenantID, clientID, secret, password string) error {
	ep, err := c.tokenEndpointFor(ctx, tenantID, false)
	if err != nil {
		return err
	}
	_, err = c.requestToken(ctx, tenantID, ep, clientID, password)
	var te *TokenError
	if err == nil || !errors.As(err, &te) || te.Code != "invalid_grant" || secret == "" || secret == password {
		return err
	}
	if _, swapErr := c.requestToken(ctx, tenantID, ep, clientID, secret); swapErr == nil {
		return &SwappedError{TenantID: tenantID, Err: err}
	}
	return err
}

// SwappedError says the secret and password were given in each other's place.
type SwappedError struct {
	TenantID string
	Err      error
}

func (e *SwappedError) Error() string {
	return fmt.Sprintf("platform: tenant %s: the secret and the password are swapped: the platform accepts the value given as secret as the password", e.TenantID)
}

// Unwrap makes errors.Is(err, ErrCredentialsRejected) hold.
func (e *SwappedError) Unwrap() error { return e.Err }
