package internalapi

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// passWait bounds how long a passthrough may wait for the platform's answer to begin: the
// platform client's own limits (10 s per attempt, three attempts for a GET, Retry-After up to
// 10 s) end it well before.
const passWait = 2 * time.Minute

// passedHeaders are the platform's answer headers the app gets. Link and Location are rewritten
// to this API's paths (or dropped); nothing else passes: no cookie, no authentication header,
// nothing the platform's infrastructure adds.
var passedHeaders = []string{"Content-Type", "Content-Language", "Content-Length", "ETag", "Last-Modified", "X-Total-Count"}

// oneRoster answers GET /v1/schools/{tenantId}/ims/oneroster/v1p1/...: the platform's OneRoster
// answer for the school, streamed, with the query passed on exactly as it came.
func (a *API) oneRoster(w http.ResponseWriter, r *http.Request) {
	tenantID, ok := tenantParam(w, r)
	if !ok {
		return
	}
	if r.Method != http.MethodGet {
		writeProblem(w, r, problem{kind: kindMethodNotAllowed, allow: http.MethodGet, TenantID: tenantID,
			detail: "OneRoster is read-only: GET only."})
		return
	}
	p, ok := platformPath(w, r, tenantID, oneRosterRoot)
	if !ok {
		return
	}
	a.pass(w, r, tenantID, "internal.oneroster", platform.StreamRequest{Path: p, RawQuery: r.URL.RawQuery, Header: r.Header})
}

// extern answers /v1/schools/{tenantId}/WebUntis/api/rest/extern/...: GET for every path, and
// writes (POST, PUT, PATCH, DELETE) where INTERNAL_API_WRITE_PATHS allows them.
func (a *API) extern(w http.ResponseWriter, r *http.Request) {
	tenantID, ok := tenantParam(w, r)
	if !ok {
		return
	}
	p, ok := platformPath(w, r, tenantID, externRoot)
	if !ok {
		return
	}
	allowed := a.writePaths.Methods(p)
	switch r.Method {
	case http.MethodGet:
		a.pass(w, r, tenantID, "internal.extern", platform.StreamRequest{Path: p, RawQuery: r.URL.RawQuery, Header: r.Header})
		return
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
	default:
		writeProblem(w, r, problem{kind: kindMethodNotAllowed, allow: strings.Join(append([]string{http.MethodGet}, allowed...), ", "),
			TenantID: tenantID, detail: "This path takes the methods in the Allow header."})
		return
	}
	if !a.writePaths.Allows(r.Method, p) {
		writeProblem(w, r, problem{kind: kindWriteNotAllowed, TenantID: tenantID,
			detail: r.Method + " is not allowed on this path: the operator lists the extern API paths the app may write to in INTERNAL_API_WRITE_PATHS."})
		return
	}
	body, ok := a.readBody(w, r)
	if !ok {
		return
	}
	a.pass(w, r, tenantID, "internal.extern_write", platform.StreamRequest{
		Method: r.Method, Path: p, RawQuery: r.URL.RawQuery, Header: r.Header, Body: body,
	})
}

// readBody reads a write's body, bounded by INTERNAL_API_MAX_BODY. It is held in memory: the
// platform client sends it again after a 401 (one new token, one more attempt).
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	rd := io.Reader(r.Body)
	if a.maxBody > 0 {
		if r.ContentLength > a.maxBody {
			writeProblem(w, r, problem{kind: kindTooLarge, TenantID: stateOf(r).tenantID,
				detail: "The body is larger than INTERNAL_API_MAX_BODY (" + strconv.FormatInt(a.maxBody, 10) + " bytes)."})
			return nil, false
		}
		rd = http.MaxBytesReader(w, r.Body, a.maxBody)
	}
	body, err := io.ReadAll(rd)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeProblem(w, r, problem{kind: kindTooLarge, TenantID: stateOf(r).tenantID,
			detail: "The body is larger than INTERNAL_API_MAX_BODY (" + strconv.FormatInt(a.maxBody, 10) + " bytes)."})
		return nil, false
	case err != nil:
		writeProblem(w, r, problem{kind: kindBadRequest, TenantID: stateOf(r).tenantID, detail: "The body could not be read."})
		return nil, false
	}
	return body, true
}

// platformPath takes the platform path from the request as it was sent (its escaped form: what
// follows /v1/schools/{tenantId}), which must lie below root and pass the platform client's
// path rules: no dot segments, no encoded slash, dot or backslash, no ";", no trailing slash.
func platformPath(w http.ResponseWriter, r *http.Request, tenantID, root string) (string, bool) {
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	rest, ok := strings.CutPrefix(raw, "/v1/schools/"+tenantID)
	if ok && strings.HasPrefix(rest, root) && platform.CheckAPIPath(rest) == nil {
		return rest, true
	}
	writeProblem(w, r, problem{kind: kindBadRequest, TenantID: tenantID,
		detail: "The path is not a plain platform API path below " + root +
			": no . or .. segments, no encoded slashes, dots or backslashes, no \";\", no empty segment or trailing slash."})
	return "", false
}

// pass makes the platform call for a reachable school and streams its answer.
func (a *API) pass(w http.ResponseWriter, r *http.Request, tenantID, endpoint string, req platform.StreamRequest) {
	ctx := r.Context()
	if why := queryProblem(req.RawQuery); why != "" {
		writeProblem(w, r, problem{kind: kindBadRequest, TenantID: tenantID, detail: why})
		return
	}
	t, err := a.store.Tenant(ctx, tenantID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeProblem(w, r, problem{kind: kindSchoolNotFound, TenantID: tenantID, detail: "No school with this tenant id has activated the app."})
		return
	case err != nil:
		a.internalError(w, r, "read school", err)
		return
	case !reachable(t.State):
		// A deactivated or deleted school's data is never fetched.
		writeProblem(w, r, problem{kind: kindSchoolNotActive, TenantID: tenantID, State: t.State,
			detail: "The school is " + t.State + ": its data is not fetched from the platform."})
		return
	}

	// The platform may take a while (retries with backoff): the connection's deadlines must not
	// end the request meanwhile.
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(passWait)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)

	resp, err := a.platform.For(tenantID).Stream(ctx, endpoint, req)
	if err != nil {
		a.platformProblem(w, r, tenantID, err)
		return
	}
	defer resp.Body.Close()
	h := w.Header()
	for _, k := range passedHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	if n, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); h.Get("Content-Length") != "" && (err != nil || n < 0) {
		h.Del("Content-Length")
	}
	if links := a.rewriteLinks(resp.Header.Values("Link"), tenantID); links != "" {
		h.Set("Link", links)
	}
	if loc, ok := a.rewriteURL(resp.Header.Get("Location"), tenantID); ok {
		h.Set("Location", loc)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(resp.StatusCode)
	a.copyBody(w, r, rc, resp.Body)
}

// copyBuffers are the passthrough's copy buffers: memory stays flat however large the answer.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody streams the platform's answer to the app, flushing every chunk. The connection's
// deadlines move forward while bytes move, so a long answer is never cut while it flows, and one
// that stalls (either side) ends after the idle timeout. A platform failure half-way aborts the
// answer (the connection is closed without the end of the body), so the app sees a broken
// answer, never a truncated one that looks complete.
func (a *API) copyBody(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, body io.Reader) {
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	throttle := min(time.Second, a.idle/8)
	var moved time.Time
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if now := time.Now(); now.Sub(moved) >= throttle {
				moved = now
				_ = rc.SetWriteDeadline(now.Add(a.idle))
				_ = rc.SetReadDeadline(now.Add(a.idle))
			}
			if _, err := w.Write(buf[:n]); err != nil {
				setOutcome(r, "client_gone")
				return
			}
			if err := rc.Flush(); err != nil {
				setOutcome(r, "client_gone")
				return
			}
		}
		if errors.Is(rerr, io.EOF) {
			setOutcome(r, "ok")
			return
		}
		if rerr != nil {
			if r.Context().Err() != nil {
				setOutcome(r, "client_gone")
				return
			}
			a.log.Warn("internal api: the platform's answer broke off; aborting the response",
				"tenant_id", stateOf(r).tenantID, "err", rerr, "request_id", w.Header().Get("X-Request-Id"))
			setOutcome(r, "aborted")
			panic(http.ErrAbortHandler)
		}
	}
}

// queryProblem says why a query cannot go to the platform as it is, or "" when it can (the
// platform client checks it again; this answers before the database is asked).
func queryProblem(q string) string {
	if len(q) > platform.MaxRawQuery {
		return "The query is longer than " + strconv.Itoa(platform.MaxRawQuery) + " bytes."
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= 0x20 || c >= 0x7f || c == '#' {
			return "The query has a character that must be percent-encoded (spaces as %20, quotes as %27)."
		}
	}
	if _, err := url.ParseQuery(q); err != nil {
		return "The query has a malformed percent-encoding."
	}
	return ""
}

// platformProblem answers a failed platform call with its problem type.
func (a *API) platformProblem(w http.ResponseWriter, r *http.Request, tenantID string, err error) {
	if r.Context().Err() != nil {
		setOutcome(r, "client_gone") // nobody reads the answer
		return
	}
	// The error names the platform path, status and the platform's words; never a token.
	a.log.Info("internal api: platform call failed", "tenant_id", tenantID, "err", err,
		"request_id", w.Header().Get("X-Request-Id"))
	var (
		be *platform.BackoffError
		ae *platform.APIError
		te *platform.TokenError
	)
	retryIn := func(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }
	switch {
	case errors.As(err, &be) && errors.Is(err, platform.ErrCredentialsRejected):
		writeProblem(w, r, problem{kind: kindCredentialsFailing, TenantID: tenantID, retryAfter: retryIn(time.Until(be.Until)),
			detail: "The platform refused the school's credentials; calls for it wait until the backoff ends."})
	case errors.Is(err, platform.ErrCredentialsRejected):
		writeProblem(w, r, problem{kind: kindCredentialsFailing, TenantID: tenantID, retryAfter: 2,
			detail: "The platform refused the school's credentials."})
	case errors.As(err, &be):
		writeProblem(w, r, problem{kind: kindPlatformUnavailable, status: http.StatusServiceUnavailable, TenantID: tenantID,
			retryAfter: retryIn(time.Until(be.Until)), detail: "The platform failed for this school a moment ago; calls wait until the backoff ends."})
	case errors.Is(err, platform.ErrNoCredentials):
		writeProblem(w, r, problem{kind: kindSchoolNotActive, TenantID: tenantID, detail: "The school has no credentials any more (it was deactivated just now)."})
	case errors.As(err, &ae):
		a.apiErrorProblem(w, r, tenantID, ae)
	case errors.As(err, &te):
		p := problem{kind: kindPlatformUnavailable, TenantID: tenantID, PlatformStatus: te.Status, PlatformCode: te.Code,
			detail: "The platform's token endpoint failed."}
		if errors.Is(err, platform.ErrRateLimited) {
			p.status, p.retryAfter = http.StatusServiceUnavailable, retryIn(te.RetryAfter)
		}
		if errors.Is(err, platform.ErrBadRequest) {
			p.kind, p.status, p.detail = kindPlatformRefused, http.StatusBadGateway, "The platform's token endpoint refused the application's token request."
		}
		writeProblem(w, r, p)
	case errors.Is(err, platform.ErrBadRequest):
		writeProblem(w, r, problem{kind: kindBadRequest, TenantID: tenantID, detail: "The request cannot be sent to the platform as it is."})
	case errors.Is(err, context.DeadlineExceeded):
		writeProblem(w, r, problem{kind: kindPlatformUnavailable, status: http.StatusGatewayTimeout, TenantID: tenantID,
			detail: "The platform did not answer in time."})
	default:
		a.internalError(w, r, "call the platform", err)
	}
}

// apiErrorProblem answers the platform's own refusal or failure.
func (a *API) apiErrorProblem(w http.ResponseWriter, r *http.Request, tenantID string, ae *platform.APIError) {
	p := problem{TenantID: tenantID, PlatformStatus: ae.Status, PlatformCode: ae.Code, PlatformMessage: ae.Message}
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(ae, platform.ErrNotFound):
		p.kind, p.status, p.detail = kindNotFound, http.StatusNotFound, "The platform does not know what was asked for."
	case errors.Is(ae, platform.ErrRateLimited):
		p.kind, p.status, p.detail = kindPlatformUnavailable, http.StatusServiceUnavailable, "The platform asks us to slow down."
		p.retryAfter = max(1, int(math.Ceil(ae.RetryAfter.Seconds())))
	case errors.Is(ae, platform.ErrBadRequest), errors.Is(ae, platform.ErrForbidden):
		p.kind, p.status, p.detail = kindPlatformRefused, ae.Status, "The platform refused the request."
		if p.status < 400 || p.status > 499 {
			p.status = http.StatusBadRequest
		}
	case ae.Status == 0 && errors.As(ae.Err, &timeout) && timeout.Timeout(), errors.Is(ae.Err, context.DeadlineExceeded):
		p.kind, p.status, p.detail = kindPlatformUnavailable, http.StatusGatewayTimeout, "The platform did not answer in time."
	default:
		p.kind, p.status = kindPlatformUnavailable, http.StatusBadGateway
		switch {
		case ae.Status >= 500:
			p.detail = "The platform failed."
		case ae.Status == 0:
			p.detail = "The platform could not be reached."
		default:
			p.detail = "The platform answered something its API does not promise."
		}
	}
	writeProblem(w, r, p)
}

// rewriteURL turns a URL of the platform's (absolute on UNTIS_API_URL, or a path) below the
// OneRoster or extern roots into this API's path for the school; anything else is not passed on.
func (a *API) rewriteURL(u, tenantID string) (string, bool) {
	var rest string
	switch {
	case u == "":
		return "", false
	case strings.HasPrefix(u, a.apiBase+"/"):
		rest = u[len(a.apiBase):]
	case strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//"):
		rest = u
	default:
		return "", false
	}
	p := rest
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if !strings.HasPrefix(p, oneRosterRoot) && !strings.HasPrefix(p, externRoot) || platform.CheckAPIPath(p) != nil {
		return "", false
	}
	if strings.ContainsFunc(rest, func(c rune) bool { return c <= 0x20 || c >= 0x7f }) {
		return "", false
	}
	return "/v1/schools/" + tenantID + rest, true
}

// rewriteLinks rewrites the targets of the platform's Link headers (RFC 8288) to this API's
// paths, keeping their parameters; a link to anywhere else is dropped.
func (a *API) rewriteLinks(values []string, tenantID string) string {
	var out []string
	for _, v := range values {
		for _, lv := range splitLinks(v) {
			lv = strings.TrimSpace(lv)
			end := strings.IndexByte(lv, '>')
			if !strings.HasPrefix(lv, "<") || end < 0 {
				continue
			}
			if u, ok := a.rewriteURL(strings.TrimSpace(lv[1:end]), tenantID); ok {
				out = append(out, "<"+u+">"+lv[end+1:])
			}
		}
	}
	return strings.Join(out, ", ")
}

// splitLinks splits a Link header at the commas between link-values (not those inside <...>
// or a quoted string).
func splitLinks(h string) []string {
	var out []string
	inURI, inQuote, start := false, false, 0
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"' && !inURI:
			inQuote = !inQuote
		case c == '<' && !inQuote:
			inURI = true
		case c == '>' && !inQuote:
			inURI = false
		case c == ',' && !inURI && !inQuote:
			out = append(out, h[start:i])
			start = i + 1
		}
	}
	return append(out, h[start:])
}
