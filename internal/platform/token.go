package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/untis-partner/server/internal/store"
)

// cachedToken is a client-credentials token and when to stop using it. Immutable once stored.
type cachedToken struct {
	authorization string    // the Authorization header value: "Bearer <token>"
	refreshAt     time.Time // after this a background refresh starts; the token is still served
	expiresAt     time.Time // after this the token is never sent
}

// tenantState is one school's cache entry: the current token, the fetch in flight, and the
// backoff after failures.
type tenantState struct {
	tenantID string
	tok      atomic.Pointer[cachedToken]

	mu       sync.Mutex
	flight   *flight   // the token request in progress, shared by every caller that waits
	retryAt  time.Time // no token request before this (backoff)
	failures int       // consecutive failures, for the backoff's exponent
	lastErr  error     // the failure that started the backoff
	// failing is set while the school's credentials are marked failing in the store by this
	// process; checked is set once a success has cleared any mark another replica may have
	// left, so healthy calls write nothing.
	failing, checked bool
	// clean says there is nothing for healthy to do (no failures, no mark): the common case
	// skips st.mu.
	clean atomic.Bool
}

type flight struct {
	done chan struct{}
	tok  *cachedToken
	err  error
}

func (st *tenantState) isFailing() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.failing
}

// refreshMargin is how long before expiry a token is refreshed: a sixth of its lifetime (30 s of
// the platform's 180 s), so a refresh has time to finish, and a request sent just before the
// refresh point still arrives while the token is valid.
func refreshMargin(lifetime time.Duration) time.Duration { return lifetime / 6 }

// authorization returns the Authorization header for the school's next API call. A cache hit
// takes no lock and does not allocate. Past the refresh point the current token is still
// returned while one background request fetches the next; without a valid token, callers wait
// for a single shared request.
func (c *Clients) authorization(ctx context.Context, st *tenantState) (*cachedToken, error) {
	now := c.now()
	if t := st.tok.Load(); t != nil && now.Before(t.refreshAt) {
		c.m.cacheHit.Inc()
		return t, nil
	}

	st.mu.Lock()
	t := st.tok.Load()
	switch {
	case t != nil && now.Before(t.refreshAt):
		st.mu.Unlock()
		c.m.cacheHit.Inc()
		return t, nil
	case t != nil && now.Before(t.expiresAt):
		// Still valid: serve it and refresh behind the caller's back.
		if st.flight == nil && !now.Before(st.retryAt) {
			st.flight = c.startFetch(st)
		}
		st.mu.Unlock()
		c.m.cacheRefresh.Inc()
		return t, nil
	}
	if t != nil {
		st.tok.CompareAndSwap(t, nil) // expired: never send it
	}
	f := st.flight
	if f == nil {
		if now.Before(st.retryAt) {
			err := &BackoffError{TenantID: st.tenantID, Until: st.retryAt, Err: st.lastErr}
			st.mu.Unlock()
			c.m.fastFail.Inc()
			return nil, err
		}
		f = c.startFetch(st)
		st.flight = f
	}
	st.mu.Unlock()
	c.m.cacheMiss.Inc()

	select {
	case <-f.done:
		return f.tok, f.err
	case <-ctx.Done():
		return nil, fmt.Errorf("platform: waiting for a token for tenant %s: %w", st.tenantID, ctx.Err())
	}
}

// drop forgets tok after the platform refused it, unless another caller has already replaced it,
// so many calls failing on one token cause one new token request, not many.
func (st *tenantState) drop(tok *cachedToken) {
	st.tok.CompareAndSwap(tok, nil)
}

// startFetch starts the one token request for st. The request runs detached from any caller's
// context: a caller that gives up does not fail the request for the others waiting on it.
// st.mu is held.
func (c *Clients) startFetch(st *tenantState) *flight {
	f := &flight{done: make(chan struct{})}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.tuning.tokenTimeout)
		defer cancel()
		tok, err := c.fetch(ctx, st.tenantID)
		c.settle(ctx, st, tok, err)
		f.tok, f.err = tok, err
		close(f.done)
	}()
	return f
}

// fetch loads the school's current credentials and asks the platform for a token.
func (c *Clients) fetch(ctx context.Context, tenantID string) (*cachedToken, error) {
	creds, err := c.store.CurrentCredentials(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w (tenant %s)", ErrNoCredentials, tenantID)
	}
	if err != nil {
		return nil, fmt.Errorf("platform: load credentials of tenant %s: %w", tenantID, err)
	}
	return c.requestToken(ctx, tenantID, creds.ClientID, creds.Password)
}

// settle records the outcome of a token request in st.
func (c *Clients) settle(ctx context.Context, st *tenantState, tok *cachedToken, err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.flight = nil
	if err == nil {
		st.tok.Store(tok)
		return
	}
	if errors.Is(err, ErrNoCredentials) {
		return // nothing to back off from: the store will say the same until it changes
	}
	c.m.refreshFailures.Inc()
	st.clean.Store(false)
	st.failures++
	wait := c.backoff(st.failures)
	var te *TokenError
	if errors.As(err, &te) && te.RetryAfter > wait {
		wait = te.RetryAfter
	}
	st.retryAt = c.now().Add(wait)
	st.lastErr = err
	if errors.Is(err, ErrCredentialsRejected) {
		c.markFailingLocked(ctx, st, err.Error())
	}
	c.log.Warn("platform token request failed; backing off",
		"tenant_id", st.tenantID, "err", err, "failures", st.failures, "retry_in", wait.Round(time.Millisecond))
}

// refused handles a 401 on a token fetched after an earlier 401: the credentials no longer get
// working tokens. The school backs off and its credentials are marked failing.
func (c *Clients) refused(ctx context.Context, st *tenantState, tok *cachedToken, apiErr *APIError) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.drop(tok)
	st.clean.Store(false)
	st.failures++
	wait := c.backoff(st.failures)
	st.retryAt = c.now().Add(wait)
	err := fmt.Errorf("%w: a freshly fetched token was refused too: %w", ErrCredentialsRejected, apiErr)
	st.lastErr = err
	c.markFailingLocked(ctx, st, "a freshly fetched token was refused with 401 ("+apiErr.Code+": "+apiErr.Message+")")
	c.log.Warn("platform refused a fresh token; backing off",
		"tenant_id", st.tenantID, "path", apiErr.Path, "code", apiErr.Code, "failures", st.failures, "retry_in", wait.Round(time.Millisecond))
	return err
}

// healthy records that the platform accepted a call with the school's token: the backoff ends and
// a failing mark in the store is cleared.
func (c *Clients) healthy(ctx context.Context, st *tenantState) {
	if st.clean.Load() {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.failures, st.retryAt, st.lastErr = 0, time.Time{}, nil
	if st.checked && !st.failing {
		st.clean.Store(true)
		return
	}
	if err := c.store.ClearCredentialsFailing(context.WithoutCancel(ctx), st.tenantID); err != nil {
		c.log.Error("platform: clear the failing mark", "tenant_id", st.tenantID, "err", err)
		return
	}
	if st.failing {
		c.log.Info("platform accepts the school's credentials again", "tenant_id", st.tenantID)
	}
	st.failing, st.checked = false, true
	st.clean.Store(true)
}

// markFailingLocked writes the failing mark. st.mu is held.
func (c *Clients) markFailingLocked(ctx context.Context, st *tenantState, reason string) {
	if _, err := c.store.MarkCredentialsFailing(context.WithoutCancel(ctx), st.tenantID, reason, c.now()); err != nil {
		c.log.Error("platform: mark credentials failing", "tenant_id", st.tenantID, "err", err)
		return
	}
	st.failing, st.checked = true, false
}

// backoff is the wait after the n-th consecutive failure: exponential from BackoffBase, capped at
// BackoffMax, with "equal jitter" (between half and all of it) so many replicas and schools do
// not retry in step.
func (c *Clients) backoff(n int) time.Duration {
	return jitter(c.tuning.backoffBase, c.tuning.backoffMax, n)
}

func jitter(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	return half + rand.N(d-half+1)
}

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
// the client id and the platform password (form-encoded first, as RFC 6749 §2.3.1 asks).
func (c *Clients) requestToken(ctx context.Context, tenantID, clientID, password string) (*cachedToken, error) {
	if err := checkTenantID(tenantID); err != nil {
		return nil, err
	}
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
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(password))

	// Lifetimes count from before the request was sent, so network time never makes us hold a
	// token longer than the platform does.
	sent := c.now()
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.m.observe(endpointToken, outcomeNetwork, time.Since(start))
		c.m.tokenRequests(outcomeNetwork).Inc()
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Err: transportError(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenBody+1))
	elapsed := time.Since(start)
	if err != nil {
		c.m.observe(endpointToken, outcomeNetwork, elapsed)
		c.m.tokenRequests(outcomeNetwork).Inc()
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Status: resp.StatusCode, Err: transportError(err)}
	}
	if resp.StatusCode != http.StatusOK {
		code, desc := errorBody(body, resp.Header)
		te := &TokenError{
			TenantID: tenantID, Status: resp.StatusCode, Code: code, Description: desc,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.now()),
		}
		te.Kind = tokenErrorKind(resp.StatusCode, code)
		outcome := outcomeFor(te.Kind)
		c.m.observe(endpointToken, outcome, elapsed)
		c.m.tokenRequests(outcome).Inc()
		return nil, te
	}
	var tr tokenResponse
	if len(body) > maxTokenBody || json.Unmarshal(body, &tr) != nil || tr.AccessToken == "" {
		c.m.observe(endpointToken, outcomeInvalid, elapsed)
		c.m.tokenRequests(outcomeInvalid).Inc()
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Status: resp.StatusCode,
			Err: errors.New("the token response is not the JSON the platform documents")}
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		c.m.observe(endpointToken, outcomeInvalid, elapsed)
		c.m.tokenRequests(outcomeInvalid).Inc()
		return nil, &TokenError{Kind: ErrUnavailable, TenantID: tenantID, Status: resp.StatusCode,
			Err: fmt.Errorf("the platform issued a %q token; only bearer tokens are supported", clean(tr.TokenType, 32))}
	}
	c.m.observe(endpointToken, outcomeOK, elapsed)
	c.m.tokenRequests(outcomeOK).Inc()
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
func (c *Clients) ProveCredentials(ctx context.Context, tenantID, clientID, secret, password string) error {
	_, err := c.requestToken(ctx, tenantID, clientID, password)
	if err == nil || !errors.Is(err, ErrCredentialsRejected) || secret == "" || secret == password {
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
