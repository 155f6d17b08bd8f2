package httpserver

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/untis-partner/server/internal/sso"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/web"
)

// The safety net behind the input checks: wherever the database's refusal of text for its
// encoding surfaces, it is answered as bad input (400), never as an outage (503), and logged
// without the bytes the database quotes.
func TestInvalidTextFromTheDatabaseIsBadInput(t *testing.T) {
	t.Parallel()
	for _, code := range []string{"22021", "22P05"} {
		dbErr := fmt.Errorf("operator: %w", &pgconn.PgError{Code: code, Message: `invalid byte sequence for encoding "UTF8": 0xff 0x41`})
		s, logs := newTestServer(false)
		req := httptest.NewRequest(http.MethodPost, "/admin/login", nil)

		rec := httptest.NewRecorder()
		s.storeTrouble(rec, req, dbErr, false)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "cannot be used") {
			t.Errorf("%s: page = %d\n%s", code, rec.Code, rec.Body)
		}
		rec = httptest.NewRecorder()
		s.storeTrouble(rec, req, dbErr, true)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_input"`) {
			t.Errorf("%s: JSON = %d %s", code, rec.Code, rec.Body)
		}
		rec = httptest.NewRecorder()
		s.signInFailed(rec, req, &sso.Error{Kind: sso.KindUnavailable, Reason: "store", Err: dbErr})
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%s: sign-in = %d", code, rec.Code)
		}
		for _, r := range logs.Records(t) {
			if r["level"] == "ERROR" || strings.Contains(fmt.Sprint(r), "0xff") {
				t.Errorf("%s: log %v", code, r)
			}
		}
	}
	// Any other store failure is still an outage.
	s, _ := newTestServer(false)
	rec := httptest.NewRecorder()
	s.storeTrouble(rec, httptest.NewRequest(http.MethodGet, "/", nil), errors.New("connection refused"), false)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a store outage = %d", rec.Code)
	}
}

func TestBadParam(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vs   url.Values
		only []string
		want string
		bad  bool
	}{
		{url.Values{"a": {"fine", "ünïcode – ok"}}, nil, "", false},
		{url.Values{"a": {"ok"}, "b": {"x\x00y"}}, nil, "b", true},
		{url.Values{"b": {"ok", "\xff"}}, nil, "b", true},
		{url.Values{"n\xffame": {"ok"}}, nil, `"n\xffame"`, true},
		{url.Values{"n\x00": {"ok"}}, nil, `"n\x00"`, true},
		// Only the named parameters are looked at, when given.
		{url.Values{"other": {"\x00"}, "state": {"s"}}, []string{"state", "code"}, "", false},
		{url.Values{"code": {"\xc3("}}, []string{"state", "code"}, "code", true},
	} {
		got, bad := badParam(tc.vs, tc.only...)
		if got != tc.want || bad != tc.bad {
			t.Errorf("badParam(%q, %v) = %q, %v; want %q, %v", tc.vs, tc.only, got, bad, tc.want, tc.bad)
		}
	}
}

func TestWaitWords(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		time.Second: "a few seconds", 3 * time.Second: "a few seconds", 30 * time.Second: "30 seconds", 44 * time.Second: "40 seconds",
		time.Minute: "a minute", 2 * time.Minute: "2 minutes", 12*time.Minute + time.Second: "13 minutes",
	} {
		if got := i18n.English(web.Locales()).MustLocalize(waitWords(d)); got != want {
			t.Errorf("waitWords(%v) = %q, want %q", d, got, want)
		}
	}
}
