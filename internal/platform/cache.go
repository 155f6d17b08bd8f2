package platform

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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
	credVersion   int       // the version of the stored credentials it was fetched with
	gen           uint64    // its place in the school's sequence of tokens (tenantState.gen)
}

// String keeps the token itself out of any log line or error that formats a cachedToken.
func (t *cachedToken) String() string {
	return fmt.Sprintf("token[gen=%d expires=%s]", t.gen, t.expiresAt.UTC().Format(time.RFC3339))
}

// storeWriteTimeout bounds the failing-mark writes, which run outside any caller's deadline.
const storeWriteTimeout = 5 * time.Second

// tenantState is one school's cache entry: the current token, the fetch in flight, and the
// backoff after failures. Its lock is never held during network or database I/O.
type tenantState struct {
	tenantID string
	tok      atomic.Pointer[cachedToken]
	// clean says there is nothing for healthy to do (no failure, and the store's mark is known
	// to be clear), so the common successful call takes no lock.
	clean atomic.Bool
	// marked is set while this process has the school's credentials marked failing.
	marked atomic.Bool

	mu       sync.Mutex
	flight   *flight   // the token request in progress, shared by every caller that waits
	gen      uint64    // generation of the newest token stored
	retryAt  time.Time // no token request before this (backoff)
	failures int       // consecutive failures, for the backoff's exponent
	// failGen is gen when the newest failure was recorded: a success with a token of that
	// generation or older (a still-valid token from before a failed refresh) proves nothing
	// about the credentials now, so it neither ends the backoff nor counts a second failure.
	failGen uint64
	lastErr error // the failure that started the backoff
	checked bool  // a success has cleared any mark another replica may have left
	// failSeq counts every failure ever recorded: a clear of the store's mark that began
	// before a new failure must not declare the school clean.
	failSeq uint64
	// clearing is set while one caller clears the store's mark, so concurrent successes do
	// not all write the same UPDATE.
	clearing bool
}

type flight struct {
	done chan struct{}
	tok  *cachedToken
	err  error
}

// refreshMargin is how long before expiry a token is refreshed: a sixth of its lifetime (30 s of
// the platform's 180 s), so a refresh has time to finish, and a request sent just before the
// refresh point still arrives while the token is valid.
func refreshMargin(lifetime time.Duration) time.Duration { return lifetime / 6 }

// authorization returns the token for the school's next API call. A cache hit takes no lock and
// does not allocate. Past the refresh point the current token is still returned while one
// background request fetches the next; without a valid token, callers wait for a single shared
// request, or fail fast while the school backs off.
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
		defer close(f.done)
		ctx, cancel := context.WithTimeout(context.Background(), c.tuning.tokenTimeout)
		defer cancel()
		tok, version, err := c.fetch(ctx, st.tenantID)
		f.tok, f.err = tok, err
		if err == nil {
			st.mu.Lock()
			st.gen++
			tok.gen = st.gen
			st.tok.Store(tok)
			st.flight = nil
			st.mu.Unlock()
			return
		}
		if errors.Is(err, ErrNoCredentials) {
			st.mu.Lock()
			st.flight = nil
			st.mu.Unlock()
			// Nothing to back off from; and an unknown or ended school keeps no cache entry.
			c.forget(st)
			return
		}
		c.m.refreshFailures.Inc()
		floor := time.Duration(0)
		var te *TokenError
		if errors.As(err, &te) {
			floor = te.RetryAfter
		}
		st.mu.Lock()
		st.flight = nil
		wait := c.recordFailureLocked(st, err, floor)
		st.mu.Unlock()
		c.log.Warn("platform token request failed; backing off",
			"tenant_id", st.tenantID, "err", err, "retry_in", wait.Round(time.Millisecond))
		// The mark is written before the waiters hear of the failure, so whoever sees the
		// error also sees the mark.
		if errors.Is(err, ErrCredentialsRejected) {
			c.markFailing(context.Background(), st, version, err.Error())
		}
	}()
	return f
}

// fetch loads the school's current credentials (only while it is active or pending setup) and
// asks the platform for a token at the token endpoint the school's discovery names. It returns the credentials' version, also on failure.
func (c *Clients) fetch(ctx context.Context, tenantID string) (*cachedToken, int, error) {
	creds, err := c.store.ActiveCredentials(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, fmt.Errorf("%w (tenant %s)", ErrNoCredentials, tenantID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("platform: load credentials of tenant %s: %w", tenantID, err)
	}
	ep, err := c.tokenEndpointFor(ctx, tenantID, true)
	if err != nil {
		return nil, creds.Version, err
	}
	tok, err := c.requestToken(ctx, tenantID, ep, creds.ClientID, creds.Password)
	if err != nil {
		return nil, creds.Version, err
	}
	tok.credVersion = creds.Version
	return tok, creds.Version, nil
}

// recordFailureLocked starts or extends the school's backoff: at least floor (the platform's
// Retry-After), at most BackoffMax. st.mu is held.
func (c *Clients) recordFailureLocked(st *tenantState, err error, floor time.Duration) time.Duration {
	st.clean.Store(false)
	st.failures++
	st.failSeq++
	st.failGen = st.gen
	if st.flight != nil {
		// A token request already running when the failure was recorded belongs to the same
		// incident: a refusal of its token must not count twice, nor its success end the
		// backoff (it gets generation gen+1).
		st.failGen++
	}
	wait := max(c.backoff(st.failures), min(floor, c.tuning.backoffMax))
	st.retryAt = c.now().Add(wait)
	st.lastErr = err
	return wait
}

// refused handles a 401 on a token fetched after an earlier 401: the credentials no longer get
// working tokens. The school backs off and its credentials are marked failing. Many callers
// refused on the same token count as one failure. The error is ErrCredentialsRejected (not
// also ErrUnauthorized: that kind is for a token the caller may replace, like a user's).
func (c *Clients) refused(ctx context.Context, st *tenantState, tok *cachedToken, apiErr *APIError) error {
	err := fmt.Errorf("%w: a freshly fetched token was refused too: %v", ErrCredentialsRejected, apiErr)
	st.mu.Lock()
	st.drop(tok)
	if tok.gen <= st.failGen && st.lastErr != nil {
		err := st.lastErr
		st.mu.Unlock()
		return err // already counted for this token
	}
	wait := c.recordFailureLocked(st, err, 0)
	st.mu.Unlock()
	c.log.Warn("platform refused a fresh token; backing off",
		"tenant_id", st.tenantID, "path", apiErr.Path, "code", apiErr.Code, "retry_in", wait.Round(time.Millisecond))
	c.markFailing(ctx, st, tok.credVersion, "a freshly fetched token was refused with 401 ("+apiErr.Code+": "+apiErr.Message+")")
	return err
}

// healthy records that the platform accepted a call made with tok: unless tok predates the
// newest failure, the backoff ends and a failing mark in the store is cleared. The clear is
// made by one caller at a time, within the caller's deadline; if it cannot be made, the next
// success tries again.
func (c *Clients) healthy(ctx context.Context, st *tenantState, tok *cachedToken) {
	if st.clean.Load() {
		return
	}
	st.mu.Lock()
	if st.failures > 0 && tok.gen <= st.failGen {
		st.mu.Unlock()
		return
	}
	st.failures, st.retryAt, st.lastErr = 0, time.Time{}, nil
	if !st.marked.Load() && st.checked {
		st.clean.Store(true)
		st.mu.Unlock()
		return
	}
	if st.clearing {
		st.mu.Unlock()
		return
	}
	st.clearing = true
	seq := st.failSeq
	st.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, storeWriteTimeout)
	defer cancel()
	err := c.store.ClearCredentialsFailing(ctx, st.tenantID)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.clearing = false
	if err != nil {
		c.log.Error("platform: clear the failing mark", "tenant_id", st.tenantID, "err", err)
		return
	}
	if st.failSeq != seq {
		return // a new failure came in meanwhile; its mark stands
	}
	if st.marked.Swap(false) {
		c.log.Info("platform accepts the school's credentials again", "tenant_id", st.tenantID)
	}
	st.checked = true
	st.clean.Store(true)
}

// markFailing writes the failing mark, unless newer credentials than credVersion have been
// stored meanwhile (a RESET raced the failure: the new credentials are not known to fail).
func (c *Clients) markFailing(ctx context.Context, st *tenantState, credVersion int, reason string) {
	ctx, cancel := context.WithTimeout(ctx, storeWriteTimeout)
	defer cancel()
	marked, err := c.store.MarkCredentialsFailing(ctx, st.tenantID, credVersion, reason, c.now())
	if err != nil {
		c.log.Error("platform: mark credentials failing", "tenant_id", st.tenantID, "err", err)
		return
	}
	if marked {
		st.mu.Lock()
		st.marked.Store(true)
		st.checked = false
		st.clean.Store(false) // whatever a success decided meanwhile, the store now has a mark
		st.mu.Unlock()
	}
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
