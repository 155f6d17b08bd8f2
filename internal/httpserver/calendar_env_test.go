package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ics "github.com/arran4/golang-ical"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/calendar"
	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/httpserver"
)

// calApp is the partner's app in the calendar tests: an httptest server whose answer at the
// calendar path each test sets, recording what it was asked.
type calApp struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	h    http.HandlerFunc
	seen []seenRequest
}

func newCalApp(t testing.TB) *calApp {
	a := &calApp{h: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no answer set", http.StatusTeapot) }}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.hits.Add(1)
		a.mu.Lock()
		a.seen = append(a.seen, seenRequest{Method: r.Method, Path: r.URL.Path, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()})
		h := a.h
		a.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *calApp) answer(h http.HandlerFunc) {
	a.mu.Lock()
	a.h = h
	a.mu.Unlock()
}

// answerWith makes the app answer every request with status, content type and body.
func (a *calApp) answerWith(status int, contentType, body string) {
	a.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	})
}

func (a *calApp) last(t testing.TB) seenRequest {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		t.Fatal("the app was not asked")
	}
	return a.seen[len(a.seen)-1]
}

// calendarEnv is a server in gateway mode in front of a calApp (or, with noApp, the built-in app
// and no one to ask), with the platform simulator that signs the Calendar API's requests.
type calendarEnv struct {
	*signinEnv
	app   *calApp
	clock *testClock
}

type calOptions struct {
	noApp     bool
	timeout   time.Duration
	maxBytes  int64
	maxEvents int
}

func newCalendarEnv(t testing.TB, o calOptions) *calendarEnv {
	t.Helper()
	c := &calendarEnv{app: newCalApp(t), clock: &testClock{now: time.Now()}}
	if o.timeout == 0 {
		o.timeout = calendar.DefaultTimeout
	}
	if o.maxBytes == 0 {
		o.maxBytes = calendar.DefaultMaxBytes
	}
	if o.maxEvents == 0 {
		o.maxEvents = calendar.DefaultMaxEvents
	}
	opts := signinOptions{}
	opts.deps = func(in *instance, publicURL string, d *httpserver.Deps) {
		signer, err := assertion.New(context.Background(), assertion.Config{
			Store: in.store, Issuer: publicURL, Audience: publicURL, Now: c.clock.Now, Refresh: 10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids := gateway.NewIdentities(gateway.IdentitiesConfig{Signer: signer, Setup: in.store, Now: c.clock.Now})
		d.Identities, d.JWKS = ids, signer
		pub, _ := url.Parse(publicURL)
		cfg := calendar.Config{
			Store: in.store, Verifier: d.Webhooks, UpstreamPath: "/untis/calendar", Identities: ids, PublicURL: pub,
			Timeout: o.timeout, MaxBytes: o.maxBytes, MaxEvents: o.maxEvents, MaxDays: calendar.DefaultMaxDays,
			Logger: d.Logger, Metrics: d.Metrics,
		}
		if !o.noApp {
			up, _ := url.Parse(c.app.srv.URL)
			cfg.Upstream = up
			// The whole gateway, as deployed: the calendar route must stay the server's.
			d.Proxy = &gateway.ProxyConfig{Upstream: up, PublicURL: pub, UpstreamTimeout: gateway.DefaultUpstreamTimeout}
		}
		if d.Calendar, err = calendar.New(cfg); err != nil {
			t.Fatal(err)
		}
	}
	c.signinEnv = newSigninEnv(t, opts)
	return c
}

// calendarBody is the platform's documented request body.
func calendarBody(tenantID, user, start, end string) []byte {
	b, _ := json.Marshal(map[string]string{"tenantId": tenantID, "user": user, "startDate": start, "endDate": end})
	return b
}

// postCalendar sends body to the Calendar-Path with the headers given (nil: signed by the
// simulator, as the platform does).
func (c *calendarEnv) postCalendar(body []byte, header http.Header) answer {
	c.t.Helper()
	if header == nil {
		auth, alg := c.sim.SignWebhook(body)
		header = http.Header{"Authorization": {auth}, "Algorithm": {alg}, "Content-Type": {"application/json; charset=utf-8"}}
	}
	req, err := http.NewRequest(http.MethodPost, c.app0()+httpserver.CalendarPath, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header = header
	return obSend(c.t, req)
}

func (c *calendarEnv) app0() string { return c.signinEnv.app.srv.URL }

// calendarOf checks that an answer is a well-formed calendar (RFC 5545's octet rules, and an
// independent parser reads it) and returns its events.
func calendarOf(t testing.TB, a answer) []*ics.VEvent {
	t.Helper()
	if a.status != http.StatusOK || a.header.Get("Content-Type") != "text/calendar; charset=utf-8" {
		t.Fatalf("answer %d %s: %.300s", a.status, a.header.Get("Content-Type"), a.body)
	}
	if !strings.HasSuffix(a.body, "\r\n") {
		t.Fatal("the calendar does not end with CRLF")
	}
	for i, l := range strings.Split(strings.TrimSuffix(a.body, "\r\n"), "\r\n") {
		if len(l) > 75 || strings.ContainsAny(l, "\r\n") {
			t.Fatalf("line %d: %q", i+1, l)
		}
	}
	cal, err := ics.ParseCalendar(strings.NewReader(a.body))
	if err != nil {
		t.Fatalf("golang-ical: %v\n%s", err, a.body)
	}
	for _, e := range cal.Events() {
		for _, p := range []ics.ComponentProperty{ics.ComponentPropertyUniqueId, ics.ComponentPropertyDtstamp,
			ics.ComponentPropertyDtStart, ics.ComponentPropertyDtEnd} {
			if e.GetProperty(p) == nil {
				t.Fatalf("a VEVENT without %s:\n%s", p, a.body)
			}
		}
	}
	return cal.Events()
}

// icsEvents is an app's iCalendar answer of n lessons from day on, each 50 minutes, hourly.
func icsEvents(day string, n int) string {
	start, _ := time.Parse(time.DateOnly, day)
	start = start.Add(7 * time.Hour)
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//example app//EN\r\n")
	for i := range n {
		s := start.Add(time.Duration(i) * time.Hour)
		fmt.Fprintf(&b, "BEGIN:VEVENT\r\nUID:%d-lesson\r\nDTSTART:%s\r\nDTEND:%s\r\nSUMMARY:Stunde %d\\, Mathematik\r\nLOCATION:Raum %d\r\nEND:VEVENT\r\n",
			1000+i, s.Format("20060102T150405Z"), s.Add(50*time.Minute).Format("20060102T150405Z"), i+1, 100+i%20)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.String()
}

// outcomeCount is calendar_requests_total for one outcome.
func (c *calendarEnv) outcomeCount(t *testing.T, outcome string) string {
	return c.metricValue(t, `calendar_requests_total{outcome="`+outcome+`"}`)
}
