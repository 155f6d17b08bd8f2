package platform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// StreamRequest is a platform call whose answer the caller streams on (the internal API's
// passthrough): nothing of a successful answer's body is buffered here.
type StreamRequest struct {
	// Method is GET (the default), POST, PUT, PATCH or DELETE.
	Method string
	// Path is a platform API path in its escaped form, as it goes on the wire
	// ("/ims/oneroster/v1p1/users", "/WebUntis/api/rest/extern/v1/students/12").
	Path string
	// RawQuery is sent exactly as given (no re-encoding): a OneRoster filter keeps its quotes
	// and spaces as the caller encoded them. It must be visible ASCII without '#', at most
	// MaxRawQuery bytes.
	RawQuery string
	// Header holds the caller's request headers; only Accept, Accept-Language and (with a body)
	// Content-Type are sent on. Never Authorization, cookies or anything else.
	Header http.Header
	// Body is a write's body, held in memory so that the one retry after a 401 can send it
	// again (the caller bounds its size).
	Body []byte
}

// StreamResponse is the platform's successful (2xx) answer. The caller must close Body. Header
// is the platform's, unfiltered: the caller picks what it passes on.
type StreamResponse struct {
	StatusCode int
	Header     http.Header
	Body       io.ReadCloser
}

// MaxRawQuery bounds a streamed call's query string.
const MaxRawQuery = 8 << 10

// forwardedRequestHeaders are the only caller headers a streamed call sends on.
var forwardedRequestHeaders = []string{"Accept", "Accept-Language"}

// timeoutError is an attempt that got no answer in time; net.Error-like, so callers can tell a
// timeout (504) from other failures.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Timeout() bool { return true }

// errStreamIdle ends a body that stopped coming.
var errStreamIdle = errors.New("the platform stopped sending the answer")

// Stream calls the platform as the school and hands back its answer as it arrives, for the
// internal API's passthrough. The rules are GetJSON's: the school's cached token, a 401 answered
// by one new token and one more attempt (a second 401 marks the credentials failing), fast
// failure while the school backs off, no redirect followed. A GET is also retried on 429, 5xx
// and network failures, honouring Retry-After; a write (POST, PUT, PATCH, DELETE) never is,
// since the platform may have acted on it, except after a 401 (refused before anything was
// done).
//
// Retries happen only before the answer is handed back: once a 2xx's headers arrived, its body
// goes to the caller as it comes, and a failure in the middle is the caller's read error. Each
// attempt must get its answer's headers within the request timeout; after that the body may take
// as long as it keeps moving, and is cut when nothing arrives for StreamIdleTimeout. A non-2xx
// answer is an *APIError (its body, up to 64 KiB, is read for the platform's message).
//
// endpoint names the call for metrics (e.g. "internal.oneroster"); the latency observed is the
// time to the answer's headers.
func (cl Client) Stream(ctx context.Context, endpoint string, req StreamRequest) (*StreamResponse, error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	write := false
	switch method {
	case http.MethodGet:
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		write = true
	default:
		return nil, fmt.Errorf("%w: method %s is not supported", ErrBadRequest, method)
	}
	if err := CheckAPIPath(req.Path); err != nil {
		return nil, err
	}
	if err := checkRawQuery(req.RawQuery); err != nil {
		return nil, err
	}
	if err := checkTenantID(cl.tenantID); err != nil {
		return nil, err
	}
	if !write && len(req.Body) > 0 {
		return nil, fmt.Errorf("%w: a GET has no body", ErrBadRequest)
	}
	target := cl.c.base + req.Path
	if req.RawQuery != "" {
		target += "?" + req.RawQuery
	}
	header := make(http.Header, 3)
	for _, k := range forwardedRequestHeaders {
		if v := req.Header.Values(k); len(v) > 0 {
			header[k] = v
		}
	}
	if header.Get("Accept") == "" {
		header.Set("Accept", "application/json")
	}
	if write {
		if ct := req.Header.Get("Content-Type"); ct != "" {
			header.Set("Content-Type", ct)
		}
	}
	return call(ctx, cl, endpoint, method, req.Path, !write, func(authorization string) (*StreamResponse, *APIError) {
		return cl.open(ctx, endpoint, method, req.Path, target, authorization, header, req.Body, write)
	})
}

// CheckAPIPath reports whether p is a path the platform client may call: below the platform's
// API roots (OneRoster, REST), clean (no dot segments, "//" or trailing slash), without a query,
// fragment or backslash, with valid percent-escapes that encode neither a separator nor a dot
// nor a control character.
func CheckAPIPath(p string) error {
	if err := checkAPIPath(p); err != nil {
		return err
	}
	u, err := url.PathUnescape(p)
	if err != nil || strings.ContainsFunc(u, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: %q is not a platform API path", ErrBadRequest, p)
	}
	for i := 0; i < len(p); i++ {
		if p[i] <= 0x20 || p[i] >= 0x7f {
			return fmt.Errorf("%w: %q is not a platform API path", ErrBadRequest, p)
		}
	}
	return nil
}

// checkRawQuery accepts a query that goes on the wire as it is: visible ASCII without '#' (which
// would cut it), bounded.
func checkRawQuery(q string) error {
	if len(q) > MaxRawQuery {
		return fmt.Errorf("%w: the query is longer than %d bytes", ErrBadRequest, MaxRawQuery)
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= 0x20 || c >= 0x7f || c == '#' {
			return fmt.Errorf("%w: the query has a character that cannot be sent as it is (use percent-encoding)", ErrBadRequest)
		}
	}
	if _, err := url.ParseQuery(q); err != nil {
		return fmt.Errorf("%w: the query is not valid: bad percent-encoding", ErrBadRequest)
	}
	return nil
}

// open makes one attempt of a streamed call.
func (cl Client) open(ctx context.Context, endpoint, method, path, target, authorization string, header http.Header, body []byte, write bool) (*StreamResponse, *APIError) {
	c := cl.c
	fail := func(kind error, status int, err error) *APIError {
		return &APIError{Kind: kind, TenantID: cl.tenantID, Method: method, Endpoint: endpoint,
			Path: path, Status: status, Err: err}
	}
	actx, cancel := context.WithCancelCause(ctx)
	var rd io.Reader
	if write {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, method, target, rd)
	if err != nil {
		cancel(nil)
		return nil, fail(ErrBadRequest, 0, err)
	}
	req.Header = header.Clone()
	req.Header.Set("Authorization", authorization)

	timeout := &timeoutError{msg: fmt.Sprintf("timeout: no answer within %s", c.tuning.requestTimeout)}
	headers := time.AfterFunc(c.tuning.requestTimeout, func() { cancel(timeout) })
	start := time.Now()
	resp, err := c.stream.Do(req)
	if !headers.Stop() && err == nil {
		// The timeout fired just as the headers arrived: the body is cancelled already.
		resp.Body.Close()
		err = timeout
	}
	if err != nil {
		cancel(nil)
		c.m.observe(endpoint, outcomeNetwork, time.Since(start))
		if errors.Is(context.Cause(actx), timeout) {
			return nil, fail(ErrUnavailable, 0, timeout)
		}
		return nil, fail(ErrUnavailable, 0, transportError(err))
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		c.m.observe(endpoint, outcomeOK, time.Since(start))
		return &StreamResponse{
			StatusCode: resp.StatusCode,
			Header:     resp.Header,
			Body:       newIdleBody(actx, resp.Body, cancel, c.tuning.streamIdle),
		}, nil
	}
	defer cancel(nil)
	defer resp.Body.Close()
	return nil, cl.refusal(method, endpoint, path, start, resp)
}

// idleBody is a streamed answer's body that is cut when no byte arrives for idle: a platform
// that stalls half-way must not hold the caller (and a connection) forever.
type idleBody struct {
	ctx    context.Context // the attempt's: its cause says why a read failed
	rc     io.ReadCloser
	cancel context.CancelCauseFunc
	idle   time.Duration
	timer  *time.Timer
	once   sync.Once
}

func newIdleBody(ctx context.Context, rc io.ReadCloser, cancel context.CancelCauseFunc, idle time.Duration) *idleBody {
	b := &idleBody{ctx: ctx, rc: rc, cancel: cancel, idle: idle}
	if idle > 0 {
		b.timer = time.AfterFunc(idle, func() {
			cancel(fmt.Errorf("%w for %s", errStreamIdle, idle))
		})
	}
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && b.timer != nil {
		b.timer.Reset(b.idle)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		// Say why the body broke: the idle cut, or the transport's own reason.
		if cause := context.Cause(b.ctx); errors.Is(cause, errStreamIdle) {
			return n, cause
		}
		err = transportError(err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	var err error
	b.once.Do(func() {
		if b.timer != nil {
			b.timer.Stop()
		}
		err = b.rc.Close()
		b.cancel(nil)
	})
	return err
}
