package calendar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/untis-partner/server/internal/store"
)

// MaxRequestBody bounds the platform's request body (its documented body is under 200 bytes);
// the webhooks' limit, as the request is signed the same way.
const MaxRequestBody = 64 << 10

// MaxUserIDLen bounds the user id of a request (the platform sends a UUID).
const MaxUserIDLen = 256

// Request is the platform's calendar request, checked: the school, the user (the platform's
// external user UUID, which is the sub of the user's sign-in) and the days asked for, both
// included.
type Request struct {
	TenantID   string
	User       string
	Start, End time.Time // midnight UTC of the first and the last day asked for
}

// Days is the number of days the request covers (both dates included).
func (r Request) Days() int { return int(r.End.Sub(r.Start)/(24*time.Hour)) + 1 }

// ErrNotJSON is returned by ParseRequest for a body that is not a JSON object.
var ErrNotJSON = errors.New("calendar request is not a JSON object")

// FieldError is a request with a missing or malformed field. Its message names the field and
// never quotes a value, so it is safe to send back.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %q %s", e.Field, e.Problem) }

// requestBody is the documented body; unknown fields are ignored (the platform may add some).
type requestBody struct {
	TenantID  *string `json:"tenantId"`
	User      *string `json:"user"`
	StartDate *string `json:"startDate"`
	EndDate   *string `json:"endDate"`
}

// ParseRequest reads a verified body: {"tenantId", "user", "startDate", "endDate"}, every field
// a string, the dates YYYY-MM-DD. The range must not be reversed and, when maxDays > 0, must not
// cover more than maxDays days.
func ParseRequest(body []byte, maxDays int) (Request, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return Request{}, ErrNotJSON
	}
	var b requestBody
	if err := json.Unmarshal(body, &b); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return Request{}, &FieldError{Field: typeErr.Field, Problem: "must be a string"}
		}
		return Request{}, ErrNotJSON
	}
	var r Request
	switch {
	case b.TenantID == nil || *b.TenantID == "":
		return Request{}, &FieldError{Field: "tenantId", Problem: "is missing"}
	case !store.ValidTenantID(*b.TenantID):
		return Request{}, &FieldError{Field: "tenantId", Problem: "must be 1 to 64 letters, digits, - or _"}
	}
	r.TenantID = *b.TenantID
	switch {
	case b.User == nil || *b.User == "":
		return Request{}, &FieldError{Field: "user", Problem: "is missing"}
	case len(*b.User) > MaxUserIDLen:
		return Request{}, &FieldError{Field: "user", Problem: fmt.Sprintf("is longer than %d bytes", MaxUserIDLen)}
	case strings.ContainsFunc(*b.User, func(c rune) bool {
		return unicode.IsControl(c) || unicode.Is(unicode.Cf, c) || unicode.IsSpace(c) || c == unicode.ReplacementChar
	}):
		// json.Unmarshal turns bytes that are not UTF-8 into U+FFFD: such an id is not the one sent.
		return Request{}, &FieldError{Field: "user", Problem: "contains spaces, control characters or bytes that are not UTF-8"}
	}
	r.User = *b.User
	var err error
	if r.Start, err = parseDate("startDate", b.StartDate); err != nil {
		return Request{}, err
	}
	if r.End, err = parseDate("endDate", b.EndDate); err != nil {
		return Request{}, err
	}
	if r.End.Before(r.Start) {
		return Request{}, &FieldError{Field: "endDate", Problem: "is before startDate"}
	}
	if maxDays > 0 && r.Days() > maxDays {
		return Request{}, &FieldError{Field: "endDate", Problem: fmt.Sprintf("is too far from startDate: at most %d days may be asked for at once", maxDays)}
	}
	return r, nil
}

// parseDate reads a calendar date, YYYY-MM-DD exactly.
func parseDate(field string, v *string) (time.Time, error) {
	if v == nil || *v == "" {
		return time.Time{}, &FieldError{Field: field, Problem: "is missing"}
	}
	t, err := time.Parse(time.DateOnly, *v)
	if err != nil || len(*v) != len(time.DateOnly) {
		return time.Time{}, &FieldError{Field: field, Problem: "must be a date such as 2023-03-10 (YYYY-MM-DD)"}
	}
	return t, nil
}
