package calendar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/gateway"
)

// askApp asks the partner's app for the user's events of the request's days:
//
//	GET {UPSTREAM_URL}{CALENDAR_UPSTREAM_PATH}?start=2023-03-10&end=2023-03-13
//
// with the identity headers of the school and user (X-Untis-*, X-Untis-Identity), as a proxied
// request of that user would carry them. The app answers 200 with text/calendar or JSON (or 204:
// no events). Anything else, an answer over MaxBytes, or no whole answer within Timeout is the
// outcome named, with the reason for the log.
func (s *Service) askApp(ctx context.Context, req Request, id *gateway.Identity, requestID string) (
	events []Event, drops Drops, outcome, reason string,
) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	q := url.Values{"start": {req.Start.Format(time.DateOnly)}, "end": {req.End.Format(time.DateOnly)}}
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, s.target+"?"+q.Encode(), nil)
	if err != nil {
		return nil, drops, OutcomeAppUnavailable, "the request could not be built: " + err.Error()
	}
	h := r.Header
	id.Set(h)
	h.Set("Accept", "text/calendar, application/json;q=0.9")
	h.Set("User-Agent", "untis-partner-server (Calendar API)")
	if requestID != "" {
		h.Set("X-Request-Id", requestID)
	}
	if p := s.cfg.PublicURL; p != nil {
		r.Host = p.Host
		h.Set("X-Forwarded-Host", p.Host)
		h.Set("X-Forwarded-Proto", p.Scheme)
	}
	resp, err := s.cfg.Client.Do(r)
	if err != nil {
		o, why := failure(ctx, err)
		return nil, drops, o, why
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent:
		return nil, drops, OutcomeServed, ""
	default:
		return nil, drops, OutcomeAppUnavailable, "the app answered " + strconv.Itoa(resp.StatusCode)
	}
	max := s.cfg.MaxBytes
	if max > 0 && resp.ContentLength > max {
		return nil, drops, OutcomeAppInvalid, fmt.Sprintf("the answer is over %d bytes (Content-Length %d)", max, resp.ContentLength)
	}
	body := io.Reader(resp.Body)
	if max > 0 {
		body = io.LimitReader(resp.Body, max+1)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		o, why := failure(ctx, err)
		return nil, drops, o, "reading the answer: " + why
	}
	if max > 0 && int64(len(data)) > max {
		return nil, drops, OutcomeAppInvalid, fmt.Sprintf("the answer is over %d bytes", max)
	}
	lim := Limits{MaxEvents: s.cfg.MaxEvents}
	ct := resp.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return nil, drops, OutcomeAppInvalid, "the answer has no usable Content-Type (" + quoteShort(ct) + "); want text/calendar or application/json"
	case mt == "text/calendar":
		if cs := strings.ToLower(params["charset"]); cs != "" && cs != "utf-8" && cs != "utf8" {
			return nil, drops, OutcomeAppInvalid, "the calendar's charset is " + quoteShort(cs) + "; only UTF-8 is taken"
		}
		events, drops, err = ParseICal(data, lim)
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		events, drops, err = ParseJSON(data, lim)
	default:
		return nil, drops, OutcomeAppInvalid, "the answer is " + quoteShort(mt) + "; want text/calendar or application/json"
	}
	if err != nil {
		return nil, drops, OutcomeAppInvalid, err.Error()
	}
	return events, drops, OutcomeServed, ""
}

// failure tells a timeout from an app that cannot be reached, and both from a platform that
// went away.
func failure(ctx context.Context, err error) (outcome, reason string) {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return OutcomeAppTimeout, "no whole answer within the timeout"
	case ctx.Err() != nil:
		return OutcomeCanceled, "the platform's request ended"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // without the URL: it is in the configuration, and the log has it once
	}
	return OutcomeAppUnavailable, err.Error()
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = cleanText(s, 80) + "…"
	}
	return strconv.Quote(s)
}
