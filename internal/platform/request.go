package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	pathpkg "path"
	"strings"
	"time"
)

// maxResponseBody bounds a successful API response (a 1,000-user OneRoster page is about 1 MiB).
const maxResponseBody = 32 << 20

// maxErrorBody bounds what we read of an error response.
const maxErrorBody = 64 << 10

// GetJSON calls GET {UNTIS_API_URL}{path}?{query} and decodes the JSON answer into out. path
// must be one of the platform's API paths (OneRoster or REST); the school's token (or the user's,
// for a ForUser client) is sent. endpoint names the family for metrics (e.g. "rest.timetable").
//
// A 401 with the school's token is answered by fetching a new token once and retrying once. 429,
// 5xx and network failures are retried with backoff, honouring Retry-After.
func (cl Client) GetJSON(ctx context.Context, endpoint, path string, query url.Values, out any) error {
	if err := checkAPIPath(path); err != nil {
		return err
	}
	if err := checkTenantID(cl.tenantID); err != nil {
		return err
	}
	target := cl.c.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	body, err := cl.get(ctx, endpoint, path, target)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return &APIError{Kind: ErrUnavailable, TenantID: cl.tenantID, Method: http.MethodGet, Endpoint: endpoint,
			Path: path, Status: http.StatusOK, Err: fmt.Errorf("the response is not the JSON the API documents: %w", err)}
	}
	return nil
}

// checkAPIPath accepts only paths below the platform's API roots, without dot segments or
// separators (plain or percent-encoded) that could climb out of them, a query or a fragment.
// Nor a ";": Java servers (Tomcat) drop ";..." path parameters before they resolve a path, so
// "/students/..;/teachers", a segment "..;" to path.Clean, is "/teachers" on the platform.
func checkAPIPath(p string) error {
	lower := strings.ToLower(p)
	ok := (strings.HasPrefix(p, "/ims/oneroster/") || strings.HasPrefix(p, "/WebUntis/api/rest/")) &&
		pathpkg.Clean(p) == p && !strings.ContainsAny(p, "?#\\;") &&
		!strings.Contains(lower, "%2e") && !strings.Contains(lower, "%2f") && !strings.Contains(lower, "%5c")
	if !ok {
		return fmt.Errorf("%w: %q is not a platform API path", ErrBadRequest, p)
	}
	return nil
}

// get runs one GET with the retry rules and returns the body of the 200 answer.
func (cl Client) get(ctx context.Context, endpoint, path, target string) ([]byte, error) {
	return call(ctx, cl, endpoint, http.MethodGet, path, true, func(authorization string) ([]byte, *APIError) {
		return cl.send(ctx, endpoint, path, target, authorization)
	})
}

// call runs a platform request with the school's token (or the user's) and the platform's rules:
// attempt makes one request with the Authorization header value it is given. A 401 with the
// school's token drops the token, fetches a new one once and repeats the attempt once (the
// platform refused the token before it processed anything, so this is safe for any method); a
// second 401 marks the credentials failing. When retry is set (idempotent requests), 429, 5xx
// and network failures are tried again with backoff, honouring Retry-After.
func call[T any](ctx context.Context, cl Client, endpoint, method, path string, retry bool, attempt func(authorization string) (T, *APIError)) (T, error) {
	var zero T
	c := cl.c
	if cl.asUser && cl.userToken == "" {
		return zero, &APIError{Kind: ErrUnauthorized, TenantID: cl.tenantID, Method: method, Endpoint: endpoint,
			Path: path, Err: errors.New("no user token was given")}
	}
	var st *tenantState
	if !cl.asUser {
		st = c.state(cl.tenantID)
	}
	refetched, retriedState := false, false
	for n := 1; ; n++ {
		var tok *cachedToken
		authorization := "Bearer " + cl.userToken
		if st != nil {
			var err error
			if tok, err = c.authorization(ctx, st); err != nil {
				if !retriedState && errors.Is(err, ErrCredentialsRejected) && !c.current(st) {
					// The credentials changed while the refused request ran: try the new ones.
					retriedState = true
					st = c.state(cl.tenantID)
					n--
					continue
				}
				return zero, err
			}
			authorization = tok.authorization
		}
		out, apiErr := attempt(authorization)
		if apiErr == nil {
			if st != nil {
				c.healthy(ctx, st, tok)
			}
			return out, nil
		}
		if apiErr.Kind == ErrUnauthorized {
			c.m.unauthorized.Inc()
			if st == nil {
				return zero, apiErr // a user's token: the caller decides (re-login, or the school's token)
			}
			if !refetched {
				// The platform may invalidate a token at any time: fetch a fresh one, once. The
				// refetch is not one of the attempts that 429 and 5xx may use.
				st.drop(tok)
				refetched = true
				n--
				continue
			}
			return zero, c.refused(ctx, st, tok, apiErr)
		}
		if st != nil && apiErr.Status >= 400 && apiErr.Status < 500 && apiErr.Kind != ErrRateLimited {
			c.healthy(ctx, st, tok) // the platform took the token; it refused the call itself
		}
		if !retry {
			return zero, apiErr // not idempotent: the platform may have acted on it
		}
		wait, again := cl.retryWait(ctx, apiErr, n)
		if !again {
			return zero, apiErr
		}
		c.m.retries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, fmt.Errorf("%w (gave up waiting to retry: %w)", apiErr, ctx.Err())
		case <-t.C:
		}
	}
}

// retryWait decides whether a failed idempotent call is tried again, and after how long.
func (cl Client) retryWait(ctx context.Context, e *APIError, attempt int) (time.Duration, bool) {
	tu := cl.c.tuning
	if attempt >= tu.maxAttempts || (e.Kind != ErrRateLimited && e.Kind != ErrUnavailable) {
		return 0, false
	}
	if e.Status == 0 && errors.Is(e.Err, context.Canceled) {
		return 0, false // the caller gave up
	}
	if e.Status >= 200 && e.Status < 400 {
		return 0, false // an answer that arrived but is unusable (a redirect, an oversize body) comes again
	}
	wait := jitter(tu.retryBase, tu.maxRetryAfter, attempt)
	if e.RetryAfter > 0 {
		if e.RetryAfter > tu.maxRetryAfter {
			return 0, false // the platform asks for longer than a caller should wait
		}
		wait = e.RetryAfter
	}
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		return 0, false
	}
	return wait, true
}

// send makes one attempt.
func (cl Client) send(ctx context.Context, endpoint, path, target, authorization string) ([]byte, *APIError) {
	c := cl.c
	ctx, cancel := context.WithTimeout(ctx, c.tuning.requestTimeout)
	defer cancel()
	fail := func(kind error, status int, err error) *APIError {
		return &APIError{Kind: kind, TenantID: cl.tenantID, Method: http.MethodGet, Endpoint: endpoint,
			Path: path, Status: status, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fail(ErrBadRequest, 0, err)
	}
	req.Header.Set("Authorization", authorization)
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.m.observe(endpoint, outcomeNetwork, time.Since(start))
		return nil, fail(ErrUnavailable, 0, transportError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.ContentLength > maxResponseBody {
		c.m.observe(endpoint, outcomeInvalid, time.Since(start))
		return nil, fail(ErrUnavailable, resp.StatusCode, fmt.Errorf("the response is larger than %d MiB", maxResponseBody>>20))
	}
	if resp.StatusCode == http.StatusOK {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
		elapsed := time.Since(start)
		switch {
		case err != nil:
			c.m.observe(endpoint, outcomeNetwork, elapsed)
			return nil, fail(ErrUnavailable, 0, transportError(err))
		case len(body) > maxResponseBody:
			c.m.observe(endpoint, outcomeInvalid, elapsed)
			return nil, fail(ErrUnavailable, resp.StatusCode, fmt.Errorf("the response is larger than %d MiB", maxResponseBody>>20))
		}
		c.m.observe(endpoint, outcomeOK, elapsed)
		return body, nil
	}
	return nil, cl.refusal(http.MethodGet, endpoint, path, start, resp)
}

// refusal is the *APIError of an answer that is not the success the call takes (GetJSON takes
// a 200, Stream any 2xx): its body, up to maxErrorBody, is read for the platform's message, and
// its Retry-After kept. A status below 400 (a redirect, never followed, or another success) is
// not what the API promises: the platform counts as unavailable.
func (cl Client) refusal(method, endpoint, path string, start time.Time, resp *http.Response) *APIError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	kind := kindOf(resp.StatusCode)
	if resp.StatusCode < 400 {
		kind = ErrUnavailable
	}
	cl.c.m.observe(endpoint, outcomeFor(kind), time.Since(start))
	e := &APIError{Kind: kind, TenantID: cl.tenantID, Method: method, Endpoint: endpoint, Path: path, Status: resp.StatusCode}
	e.Code, e.Message = errorBody(body, resp.Header)
	e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), cl.c.now())
	return e
}

// transportError keeps a transport failure's cause without the URL that *url.Error prefixes
// (the URL may carry a filter with a user's name in it; the APIError names the path already).
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timeout: %w", err)
	}
	return err
}
