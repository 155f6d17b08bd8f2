package calendar_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/calendar"
)

func TestParseRequestReadsTheDocumentedBody(t *testing.T) {
	t.Parallel()
	// The documented example, and the same fields in another order with one more.
	for _, body := range []string{
		`{"tenantId":"456800","user":"b953ec5f-598a-4305-87c1-d4b5f95a28c7","startDate":"2023-03-10","endDate":"2023-03-13"}`,
		` {"endDate": "2023-03-13", "extra": [1], "startDate": "2023-03-10", "user": "b953ec5f-598a-4305-87c1-d4b5f95a28c7", "tenantId": "456800"} `,
	} {
		r, err := calendar.ParseRequest([]byte(body), 62)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if r.TenantID != "456800" || r.User != "b953ec5f-598a-4305-87c1-d4b5f95a28c7" || r.Start.Format("2006-01-02") != "2023-03-10" ||
			r.End.Format("2006-01-02") != "2023-03-13" || r.Days() != 4 {
			t.Errorf("%+v (%d days)", r, r.Days())
		}
	}
}

func TestParseRequestRefusesMalformedFieldsAndRanges(t *testing.T) {
	t.Parallel()
	body := func(tenant, user, start, end string) string {
		return `{"tenantId":` + tenant + `,"user":` + user + `,"startDate":` + start + `,"endDate":` + end + `}`
	}
	ok := []string{`"1001"`, `"u-1"`, `"2023-03-10"`, `"2023-03-13"`}
	b := func(i int, v string) string {
		f := append([]string{}, ok...)
		f[i] = v
		return body(f[0], f[1], f[2], f[3])
	}
	cases := []struct{ name, body, field string }{
		{"tenant missing", `{"user":"u","startDate":"2023-03-10","endDate":"2023-03-10"}`, "tenantId"},
		{"tenant a number", b(0, `1001`), "tenantId"},
		{"tenant with a slash", b(0, `"10/01"`), "tenantId"},
		{"tenant empty", b(0, `""`), "tenantId"},
		{"user missing", `{"tenantId":"1","startDate":"2023-03-10","endDate":"2023-03-10"}`, "user"},
		{"user null", b(1, `null`), "user"},
		{"user with NUL", b(1, `"u\u0000"`), "user"},
		{"user with a newline", b(1, `"u\n"`), "user"},
		{"user with a bidi override", b(1, `"u\u202e"`), "user"},
		{"user not UTF-8", b(1, "\"u\xff\""), "user"},
		{"user too long", b(1, `"`+strings.Repeat("u", 257)+`"`), "user"},
		{"start missing", `{"tenantId":"1","user":"u","endDate":"2023-03-10"}`, "startDate"},
		{"start one-digit month", b(2, `"2023-3-10"`), "startDate"},
		{"start no dashes", b(2, `"20230310"`), "startDate"},
		{"start a time", b(2, `"2023-03-10T00:00:00Z"`), "startDate"},
		{"start February 30", b(2, `"2023-02-30"`), "startDate"},
		{"start words", b(2, `"tomorrow"`), "startDate"},
		{"end a number", b(3, `20230313`), "endDate"},
		{"end month 13", b(3, `"2023-13-01"`), "endDate"},
		{"reversed", b(3, `"2023-03-09"`), "endDate"},
		{"63 days", b(3, `"2023-05-11"`), "endDate"},
		{"a year", b(3, `"2024-03-10"`), "endDate"},
	}
	for _, tc := range cases {
		_, err := calendar.ParseRequest([]byte(tc.body), 62)
		var fe *calendar.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.field)
		}
	}
	for _, body := range []string{"", "[]", "null", `"x"`, "{", `{"tenantId":"1"`, "tenantId=1"} {
		if _, err := calendar.ParseRequest([]byte(body), 62); !errors.Is(err, calendar.ErrNotJSON) {
			t.Errorf("%q: %v, want ErrNotJSON", body, err)
		}
	}
	// The bounds: 62 days are fine, and 0 lifts the limit; one day is start = end.
	if r, err := calendar.ParseRequest([]byte(b(3, `"2023-05-10"`)), 62); err != nil || r.Days() != 62 {
		t.Errorf("62 days: %v", err)
	}
	if _, err := calendar.ParseRequest([]byte(b(3, `"2024-03-10"`)), 0); err != nil {
		t.Errorf("a year without a limit: %v", err)
	}
	if r, err := calendar.ParseRequest([]byte(b(3, `"2023-03-10"`)), 62); err != nil || r.Days() != 1 {
		t.Errorf("one day: %v", err)
	}
}
