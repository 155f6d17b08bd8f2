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

// requestToken asks the school's token endpoint for a client-credentials token: HTTP Basic with
// the client id and the platform password. RFC 6749 §2.3.1 form-encodes both before Basic, and
// so do we; partner code that works against the platform sends them as they are, and it is not
// documented which the platform decodes. So when the platform refuses encoded credentials that
// encoding changed (a password with '+', '/', '=' ...), they are tried once as they are.
func (c *Clients) requestToken(ctx context.Context, tenantID, clientID, password string) (*cachedToken, error) {
	if err := checkTenantID(tenantID); err != nil {
		return nil, err
	}
	encodedID, encodedPassword := url.QueryEscape(clientID), url.QueryEscape(password)
	tok, err := c.tokenRequest(ctx, tenantID, encodedID, encodedPassword)
	if err != nil && errors.Is(err, ErrCredentialsRejected) && (encodedID != clientID || encodedPassword != password) {
		if tok, rawErr := c.tokenRequest(ctx, tenantID, clientID, password); rawErr == nil {
			return tok, nil
		}
	}
	return tok, err
}

// tokenRequest makes one client-credentials request with the Basic user and password as given.
func (c *Clients) tokenRequest(ctx context.Context, tenantID, basicUser, basicPassword string) (*cachedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, c.tuning.tokenTimeout)
	defer cancel()
	endpoint := c.base + "/WebUntis/api/sso/v3/" + tenantID + "/token"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint,
		strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		return nil, fmt.Errorf("platform: token request for tenant %s: %w", tenantID, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(basicUser, basicPassword)

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
func (c *Clients) ProveCredentials(ctx context.Context, tenantID, clientID, secret, password string) error {
	_, err := c.requestToken(ctx, tenantID, clientID, password)
	var te *TokenError
	if err == nil || !errors.As(err, &te) || te.Code != "invalid_grant" || secret == "" || secret == password {
		return err
	}
	if _, swapErr := c.requestToken(ctx, tenantID, clientID, secret); swapErr == nil {
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
