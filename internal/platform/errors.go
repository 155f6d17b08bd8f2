package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Kinds of failure a caller can branch on with errors.Is. Every error this package returns for a
// platform response wraps exactly one of them (an *APIError or a *TokenError carries the detail).
var (
	// ErrBadRequest: the platform refused the request as malformed (400), e.g. a bad filter.
	ErrBadRequest = errors.New("platform: bad request")
	// ErrUnauthorized: the platform did not accept the bearer token (401).
	ErrUnauthorized = errors.New("platform: unauthorized")
	// ErrForbidden: the token is valid but lacks the permission (403): the application's
	// permissions in the platform's app management, or the user's role.
	ErrForbidden = errors.New("platform: forbidden")
	// ErrNotFound: no such object (404), which includes objects of another school.
	ErrNotFound = errors.New("platform: not found")
	// ErrRateLimited: the platform asked us to slow down (429).
	ErrRateLimited = errors.New("platform: rate limited")
	// ErrUnavailable: the platform failed (5xx), could not be reached, or answered something
	// that is not what the API promises.
	ErrUnavailable = errors.New("platform: unavailable")
	// ErrCredentialsRejected: the platform refused the school's credentials (invalid_client or
	// invalid_grant at the token endpoint, or a freshly fetched token was refused too). The
	// school's credentials are marked failing until a call succeeds again.
	ErrCredentialsRejected = errors.New("platform: credentials rejected")
	// ErrNoCredentials: we hold no credentials for the school (never activated, or deactivated).
	ErrNoCredentials = errors.New("platform: no credentials for this school")
)

// APIError is a failed platform response. Message is the platform's own words: for logs and
// operators, never for end users (see PublicMessage).
type APIError struct {
	Kind     error  // one of the Err* kinds above
	TenantID string // "" for a call with a user's token whose school we were not told
	Method   string
	Endpoint string // the endpoint family, e.g. "oneroster.users"
	Path     string
	Status   int    // HTTP status; 0 when no response arrived
	Code     string // the platform's error code: OAuth "error", OneRoster imsx_codeMinor, or the {code} of the error object
	Message  string // the platform's description, truncated and stripped of control characters
	// RetryAfter is what the platform's Retry-After asked for (429, 503), 0 if nothing.
	RetryAfter time.Duration
	// Err is the underlying transport error when no response arrived.
	Err error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "platform: %s %s", e.Method, e.Path)
	if e.TenantID != "" {
		fmt.Fprintf(&b, " for tenant %s", e.TenantID)
	}
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Code != "" || e.Message != "" {
		b.WriteString(" (")
		b.WriteString(e.Code)
		if e.Code != "" && e.Message != "" {
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *APIError) Is(target error) bool { return target == e.Kind }

// Unwrap exposes the transport error, e.g. context.DeadlineExceeded.
func (e *APIError) Unwrap() error { return e.Err }

// TokenError is a refused client-credentials token request.
type TokenError struct {
	Kind        error // ErrCredentialsRejected, ErrRateLimited, ErrUnavailable or ErrBadRequest
	TenantID    string
	Status      int    // 0 when no response arrived
	Code        string // the OAuth error code: invalid_client, invalid_grant, ...
	Description string // the platform's error_description
	RetryAfter  time.Duration
	Err         error // the transport error when no response arrived
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "platform: client-credentials token for tenant %s", e.TenantID)
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s", e.Code)
		if e.Description != "" {
			fmt.Fprintf(&b, ": %s", e.Description)
		}
		b.WriteString(")")
	}
	if h := e.Hint(); h != "" {
		b.WriteString(": ")
		b.WriteString(h)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrCredentialsRejected) and friends work.
func (e *TokenError) Is(target error) bool { return target == e.Kind }

// Unwrap exposes the transport error.
func (e *TokenError) Unwrap() error { return e.Err }

// Hint says which credential the platform refused, where its answer tells. The client-credentials
// grant authenticates with the client id and the platform *password*; the OIDC *secret* belongs to
// the login flow only. Sending the secret is the most common partner mistake, and the platform
// answers it with invalid_grant.
func (e *TokenError) Hint() string {
	switch e.Code {
	case "invalid_grant":
		return "the platform refused the password: the client-credentials grant needs the platform password, not the OIDC secret"
	case "invalid_client":
		return "the platform refused the client id or the password"
	case "unauthorized_client":
		return "the application may not use the client-credentials grant at this school"
	case "invalid_scope":
		return "the application lacks a permission it asked for at this school (its permissions are set in the platform's app management)"
	}
	if e.Status == http.StatusNotFound {
		return "the platform does not know this tenant id"
	}
	return ""
}

// BackoffError is returned without asking the platform while a school's calls are backing off
// after failures. It wraps the failure that started the backoff.
type BackoffError struct {
	TenantID string
	Until    time.Time
	Err      error
}

func (e *BackoffError) Error() string {
	return fmt.Sprintf("platform: tenant %s: not calling the platform until %s after an earlier failure: %v",
		e.TenantID, e.Until.UTC().Format(time.RFC3339), e.Err)
}

// Unwrap gives the failure that started the backoff, so errors.Is(err, ErrCredentialsRejected)
// holds for a school whose credentials were refused.
func (e *BackoffError) Unwrap() error { return e.Err }

// PublicMessage turns any error of this package into words for an end user: what happened,
// never the platform's message, a token or an id.
func PublicMessage(err error) string {
	switch {
	case errors.Is(err, ErrNoCredentials):
		return "This school has not connected the app to Untis yet. Ask your school's Untis administrator to activate it."
	case errors.Is(err, ErrCredentialsRejected):
		return "Untis did not accept this school's connection to the app. Ask your school's Untis administrator to check the app's activation."
	case errors.Is(err, ErrForbidden):
		return "Untis does not allow the app to read this information at your school."
	case errors.Is(err, ErrNotFound):
		return "Untis does not know what was asked for."
	case errors.Is(err, ErrRateLimited), errors.Is(err, ErrUnavailable):
		return "Untis is not answering right now. Please try again in a few minutes."
	}
	return "Something went wrong while talking to Untis. Please try again."
}

// kindOf maps an HTTP status to the kind of failure.
func kindOf(status int) error {
	switch {
	case status == http.StatusBadRequest:
		return ErrBadRequest
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusNotFound || status == http.StatusGone:
		return ErrNotFound
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status >= 400 && status < 500:
		return ErrBadRequest
	}
	return ErrUnavailable
}

// maxMessageLen bounds the platform's message we keep.
const maxMessageLen = 300

// errorBody reads what the platform said in an error response. It understands the three shapes
// seen on the platform: OAuth ({error, error_description}), OneRoster (statusInfoSet with
// imsx_codeMinor and imsx_description) and the common error object ({code, message}).
func errorBody(body []byte, header http.Header) (code, message string) {
	var v struct {
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
		Code        json.RawMessage `json:"code"`
		Message     json.RawMessage `json:"message"`
		StatusInfo  []struct {
			CodeMinor   string `json:"imsx_codeMinor"`
			Description string `json:"imsx_description"`
		} `json:"statusInfoSet"`
		// Some OneRoster implementations send the singular.
		StatusInfoOne *struct {
			CodeMinor   string `json:"imsx_codeMinor"`
			Description string `json:"imsx_description"`
		} `json:"imsx_statusInfo"`
	}
	if json.Unmarshal(body, &v) == nil {
		switch {
		case len(v.StatusInfo) > 0:
			code, message = v.StatusInfo[0].CodeMinor, v.StatusInfo[0].Description
		case v.StatusInfoOne != nil:
			code, message = v.StatusInfoOne.CodeMinor, v.StatusInfoOne.Description
		case v.Error != "":
			code, message = v.Error, v.Description
		case len(v.Code) > 0 || len(v.Message) > 0:
			code, message = rawCode(v.Code), rawCode(v.Message)
		}
	}
	if code == "" && message == "" {
		// RFC 6750: a 401 may say why only in its challenge.
		code, message = bearerChallenge(header.Get("WWW-Authenticate"))
	}
	return clean(code, 64), clean(message, maxMessageLen)
}

// rawCode renders a field of the error object as text: the code, which the docs type as an
// integer but which may come as a string, and the message. Anything else (an object, a list)
// is dropped rather than losing the rest of the body.
func rawCode(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// bearerChallenge pulls error and error_description out of a Bearer WWW-Authenticate header.
func bearerChallenge(h string) (code, desc string) {
	scheme, params, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ""
	}
	for params != "" {
		var kv string
		kv, params = cutParam(params)
		k, v, _ := strings.Cut(kv, "=")
		v = strings.Trim(strings.TrimSpace(v), `"`)
		switch strings.TrimSpace(k) {
		case "error":
			code = v
		case "error_description":
			desc = v
		}
	}
	return code, desc
}

// cutParam returns the first comma-separated parameter, respecting quotes.
func cutParam(s string) (param, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

// clean makes a platform string safe for a log line: control characters become spaces and the
// length is bounded (on a rune boundary).
func clean(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
	if len(s) > limit {
		cut := limit
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// maxRetryAfterSeconds bounds a Retry-After so that converting it cannot overflow: a day is
// longer than anything this client waits for anyway.
const maxRetryAfterSeconds = 24 * 3600

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n >= 0 {
		return time.Duration(min(n, maxRetryAfterSeconds)) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
