package platform

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestErrorBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body, challenge string
		code, message         string
	}{
		{"OneRoster statusInfoSet", `{"statusInfoSet":[{"imsx_codeMajor":"failure","imsx_codeMinor":"unknown_object","imsx_description":"no such user"}]}`, "", "unknown_object", "no such user"},
		{"OneRoster singular", `{"imsx_statusInfo":{"imsx_codeMinor":"forbidden","imsx_description":"nope"}}`, "", "forbidden", "nope"},
		{"OAuth", `{"error":"invalid_token","error_description":"Error message."}`, "", "invalid_token", "Error message."},
		{"error object, integer code", `{"code":404,"message":"The Person could not be found."}`, "", "404", "The Person could not be found."},
		{"error object, string code", `{"code":"E42","message":"broken"}`, "", "E42", "broken"},
		{"error object, message only", `{"message":"broken"}`, "", "", "broken"},
		{"challenge only", ``, `Bearer realm="oauth2-resource", error="invalid_token", error_description="Token, expired"`, "invalid_token", "Token, expired"},
		{"HTML", `<html><body>502 Bad Gateway</body></html>`, "", "", ""},
		{"empty", ``, "", "", ""},
		{"control characters", `{"error":"x","error_description":"line1\nline2\u001b[31m"}`, "", "x", "line1 line2 [31m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.challenge != "" {
				h.Set("WWW-Authenticate", tt.challenge)
			}
			code, msg := errorBody([]byte(tt.body), h)
			if code != tt.code || msg != tt.message {
				t.Errorf("errorBody = %q, %q; want %q, %q", code, msg, tt.code, tt.message)
			}
		})
	}
	long := `{"error":"x","error_description":"` + strings.Repeat("ä", 400) + `"}`
	if _, msg := errorBody([]byte(long), http.Header{}); len(msg) > maxMessageLen+len("…") || !strings.HasSuffix(msg, "…") {
		t.Errorf("long message not bounded: %d bytes", len(msg))
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	for status, want := range map[int]error{
		400: ErrBadRequest, 401: ErrUnauthorized, 403: ErrForbidden, 404: ErrNotFound, 410: ErrNotFound,
		409: ErrBadRequest, 422: ErrBadRequest, 429: ErrRateLimited, 500: ErrUnavailable, 502: ErrUnavailable, 503: ErrUnavailable,
	} {
		if got := kindOf(status); got != want {
			t.Errorf("kindOf(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestTokenErrorKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status int
		code   string
		want   error
	}{
		{400, "invalid_grant", ErrCredentialsRejected},
		{401, "invalid_client", ErrCredentialsRejected},
		{400, "unauthorized_client", ErrCredentialsRejected},
		{401, "", ErrCredentialsRejected},
		{404, "invalid_request", ErrCredentialsRejected}, // unknown tenant
		{400, "invalid_scope", ErrBadRequest},
		{400, "invalid_request", ErrBadRequest},
		{429, "temporarily_unavailable", ErrRateLimited},
		{503, "temporarily_unavailable", ErrUnavailable},
		{500, "server_error", ErrUnavailable},
		{502, "", ErrUnavailable},
	}
	for _, tt := range tests {
		if got := tokenErrorKind(tt.status, tt.code); got != tt.want {
			t.Errorf("tokenErrorKind(%d, %q) = %v, want %v", tt.status, tt.code, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"3":                             3 * time.Second,
		" 0 ":                           0,
		"-1":                            0,
		"soon":                          0,
		"Mon, 23 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Mon, 23 Nov 2026 09:00:00 GMT": 0, // in the past
	}
	for h, want := range tests {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func TestJitterStaysInItsBand(t *testing.T) {
	t.Parallel()
	base, limit := time.Second, 30*time.Second
	for n := 1; n <= 10; n++ {
		hi := min(base<<(n-1), limit)
		for range 200 {
			if d := jitter(base, limit, n); d < hi/2 || d > hi {
				t.Fatalf("jitter(n=%d) = %v, want within [%v, %v]", n, d, hi/2, hi)
			}
		}
	}
}

func TestErrorsAreBranchable(t *testing.T) {
	t.Parallel()
	api := &APIError{Kind: ErrNotFound, TenantID: "1", Method: "GET", Path: "/ims/oneroster/v1p1/users/x", Status: 404, Code: "unknown_object", Message: "no"}
	if !errors.Is(api, ErrNotFound) || errors.Is(api, ErrForbidden) {
		t.Error("APIError.Is")
	}
	if got := api.Error(); got != "platform: GET /ims/oneroster/v1p1/users/x for tenant 1: 404 Not Found (unknown_object: no)" {
		t.Errorf("Error() = %q", got)
	}
	tok := &TokenError{Kind: ErrCredentialsRejected, TenantID: "1", Status: 400, Code: "invalid_grant"}
	backoff := &BackoffError{TenantID: "1", Until: time.Now(), Err: tok}
	if !errors.Is(backoff, ErrCredentialsRejected) {
		t.Error("BackoffError does not unwrap to the rejection")
	}
	var te *TokenError
	if !errors.As(backoff, &te) || te.Hint() == "" {
		t.Error("BackoffError does not unwrap to the TokenError")
	}
	for _, err := range []error{api, tok, backoff, errors.New("other")} {
		if PublicMessage(err) == "" {
			t.Errorf("PublicMessage(%v) is empty", err)
		}
	}
}

// FuzzErrorBody: whatever the platform answers, reading its error never panics and never keeps
// more than the bounds or a control character.
func FuzzErrorBody(f *testing.F) {
	for _, seed := range []struct{ body, challenge string }{
		{`{"statusInfoSet":[{"imsx_codeMinor":"unknown_object","imsx_description":"no such user"}]}`, ""},
		{`{"code":404,"message":"The Person could not be found."}`, ""},
		{`{"code":"x","message":"y"}`, ""},
		{`{"error":"invalid_token","error_description":"Error message."}`, ""},
		{``, `Bearer realm="r", error="invalid_token", error_description="a, \"b\""`},
		{`<html>`, `Basic realm="x"`},
		{`{"statusInfoSet":[]}`, `Bearer error="`},
	} {
		f.Add([]byte(seed.body), seed.challenge)
	}
	f.Fuzz(func(t *testing.T, body []byte, challenge string) {
		code, msg := errorBody(body, http.Header{"Www-Authenticate": {challenge}})
		if len(code) > 64+len("…") || len(msg) > maxMessageLen+len("…") {
			t.Fatalf("unbounded: %d, %d bytes", len(code), len(msg))
		}
		for _, r := range code + msg {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character %U kept", r)
			}
		}
	})
}
