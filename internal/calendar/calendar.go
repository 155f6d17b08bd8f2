// Package calendar answers the platform's Calendar API (untis-platform-facts.md §6.4): the
// timetable view's signed POST {tenantId, user, startDate, endDate} to the Calendar-Path, which
// is answered with text/calendar VEVENTs.
//
// The order of the checks is the order of trust: the body's size, its signature over the raw
// bytes (the webhooks' scheme and keys), the request's fields and range, the school's state.
// Then the partner's app is asked for the user's events (gateway mode), and whatever it answers
// (iCalendar or JSON, valid or not, fast or slow) becomes a well-formed iCalendar answer: events
// that cannot be taken are dropped one by one, with the reason logged, and an app that fails
// gives the platform an empty calendar and the log the reason, never a 5xx.
//
// Its parts: ParseRequest (the platform's body), ParseICal and ParseJSON (the app's answer),
// Write (the iCalendar answer), and Service (all of it, for the HTTP handler).
package calendar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// Defaults of the settings (internal/config).
const (
	DefaultUpstreamPath = "/untis/calendar"
	DefaultTimeout      = 5 * time.Second
	DefaultMaxBytes     = 5 << 20
	DefaultMaxEvents    = 5000
	DefaultMaxDays      = 62
)

// Store is what the service reads: the school and the user (store.Store).
type Store interface {
	Tenant(ctx context.Context, id string) (store.Tenant, error)
	User(ctx context.Context, tenantID, sub string) (store.User, error)
}

// IdentitySource builds the identity headers the app is asked with (gateway.Identities).
type IdentitySource interface {
	ForUser(ctx context.Context, u store.User, schoolName string) (*gateway.Identity, error)
}

// Config configures a Service.
type Config struct {
	Store    Store
	Verifier *webhook.Verifier
	// Upstream is the partner's app (UPSTREAM_URL; a path in it prefixes UpstreamPath). nil:
	// there is no app to ask, and every calendar is empty.
	Upstream     *url.URL
	UpstreamPath string // CALENDAR_UPSTREAM_PATH
	Identities   IdentitySource
	// PublicURL is PUBLIC_URL: the app sees its host as Host and X-Forwarded-Host, as proxied
	// requests do.
	PublicURL *url.URL
	Timeout   time.Duration // the app's whole answer must arrive within it
	MaxBytes  int64         // the app's answer; 0: no bound
	MaxEvents int           // events kept; 0: no bound
	MaxDays   int           // days one request may cover; 0: no bound
	// Client asks the app (default: one without redirects and without a cookie jar).
	Client  *http.Client
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *metrics.Registry
}

// Service answers calendar requests. Safe for concurrent use.
type Service struct {
	cfg      Config
	target   string // the app's calendar URL without the query
	log      *slog.Logger
	requests *metrics.CounterVec
	dropped  *metrics.CounterVec
	served   *metrics.Counter
}

// New builds a Service. Upstream needs Identities.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Verifier == nil {
		return nil, errors.New("calendar: Store and Verifier are required")
	}
	if cfg.Upstream != nil && cfg.Identities == nil {
		return nil, errors.New("calendar: an upstream needs Identities")
	}
	if cfg.UpstreamPath == "" {
		cfg.UpstreamPath = DefaultUpstreamPath
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // never an HTTP_PROXY from the environment: the app is ours
				DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
			},
			// The app answers or it does not; a redirect is not an answer (and must not take the
			// identity headers anywhere else).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	s := &Service{cfg: cfg, log: cfg.Logger}
	if cfg.Upstream != nil {
		s.target = strings.TrimRight(cfg.Upstream.String(), "/") + cfg.UpstreamPath
	}
	s.requests = cfg.Metrics.NewCounterVec("calendar_requests_total",
		"Calendar API requests of the platform, by outcome (served, no_app, pending_setup, app_timeout, app_unavailable, app_invalid, bad_signature, bad_request, ...).", "outcome")
	s.dropped = cfg.Metrics.NewCounterVec("calendar_events_dropped_total",
		"Events of the partner's app left out of a calendar answer, by reason.", "reason")
	s.served = cfg.Metrics.NewCounter("calendar_events_served_total", "Events written into calendar answers.")
	return s, nil
}

// Incoming is a calendar request as the HTTP handler read it.
type Incoming struct {
	Algorithm, Authorization string // the signature headers
	ContentType              string
	Body                     []byte
	// TooLarge: the body was over MaxRequestBody (Body is then not read).
	TooLarge  bool
	RequestID string
	ClientIP  string // for the log of a refusal
}

// Answer is what the handler sends back.
type Answer struct {
	Status      int
	ContentType string
	Body        []byte
	Outcome     string
}

// Outcomes (the label of calendar_requests_total).
const (
	OutcomeServed         = "served"          // the app answered; its valid events are in the calendar
	OutcomeNoApp          = "no_app"          // no UPSTREAM_URL: an empty calendar
	OutcomePendingSetup   = "pending_setup"   // the school is being set up: an empty calendar
	OutcomeAppTimeout     = "app_timeout"     // an empty calendar
	OutcomeAppUnavailable = "app_unavailable" // no connection, or a status other than 200/204: an empty calendar
	OutcomeAppInvalid     = "app_invalid"     // not iCalendar or JSON, too large: an empty calendar
	OutcomeCanceled       = "canceled"        // the platform went away while the app was asked
	OutcomeBadSignature   = "bad_signature"   // 401
	OutcomeBadRequest     = "bad_request"     // 400
	OutcomeTooLarge       = "too_large"       // 413
	OutcomeNotJSON        = "not_json"        // 415
	OutcomeUnknownSchool  = "unknown_school"  // 404
	OutcomeNotActive      = "school_not_active"
	OutcomeUnavailable    = "unavailable" // 503: the database could not be read
)

// Answer answers one calendar request.
func (s *Service) Answer(ctx context.Context, in Incoming) Answer {
	a := s.answer(ctx, in)
	s.requests.With(a.Outcome).Inc()
	return a
}

func (s *Service) answer(ctx context.Context, in Incoming) Answer {
	log := s.log.With("request_id", in.RequestID)
	if in.TooLarge {
		return problem(http.StatusRequestEntityTooLarge, OutcomeTooLarge, "the body is over 64 KiB")
	}
	if err := s.cfg.Verifier.Verify(in.Algorithm, in.Authorization, in.Body); err != nil {
		// The reason is for our log only; the sender learns nothing but 401.
		log.WarnContext(ctx, "calendar request refused", "reason", err.Error(), "client_ip", in.ClientIP)
		return problem(http.StatusUnauthorized, OutcomeBadSignature, "")
	}
	if !jsonContentType(in.ContentType) {
		return problem(http.StatusUnsupportedMediaType, OutcomeNotJSON, "the body must be application/json")
	}
	req, err := ParseRequest(in.Body, s.cfg.MaxDays)
	var fieldErr *FieldError
	switch {
	case errors.As(err, &fieldErr):
		log.InfoContext(ctx, "calendar request refused", "reason", fieldErr.Error())
		return problem(http.StatusBadRequest, OutcomeBadRequest, fieldErr.Error())
	case err != nil:
		return problem(http.StatusBadRequest, OutcomeBadRequest, "the body is not a JSON object")
	}
	log = log.With("tenant_id", req.TenantID, "user", req.User, "start", req.Start.Format(time.DateOnly), "days", req.Days())
	t, err := s.cfg.Store.Tenant(ctx, req.TenantID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.InfoContext(ctx, "calendar request for an unknown school")
		return problem(http.StatusNotFound, OutcomeUnknownSchool, "this school has not activated the app")
	case err != nil:
		log.ErrorContext(ctx, "calendar: read the school", "err", err)
		return problem(http.StatusServiceUnavailable, OutcomeUnavailable, "please ask again later")
	}
	switch t.State {
	case store.StateActive:
	case store.StatePendingSetup:
		// Its users cannot reach the app yet either (the gateway shows "being set up"), and the
		// app may need the setup answers: nothing to show, which is no error of the platform's.
		log.InfoContext(ctx, "calendar: the school is being set up; empty calendar")
		return s.calendar(nil, OutcomePendingSetup)
	default:
		log.InfoContext(ctx, "calendar request for a school that is not active", "state", t.State)
		return problem(http.StatusForbidden, OutcomeNotActive, "this school's app is not active")
	}
	if s.cfg.Upstream == nil {
		return s.calendar(nil, OutcomeNoApp)
	}
	u, err := s.cfg.Store.User(ctx, req.TenantID, req.User)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Someone who never opened the app: the app is told the school and the user id only.
		u = store.User{TenantID: req.TenantID, Sub: req.User}
	case err != nil:
		log.ErrorContext(ctx, "calendar: read the user", "err", err)
		return problem(http.StatusServiceUnavailable, OutcomeUnavailable, "please ask again later")
	}
	id, err := s.cfg.Identities.ForUser(ctx, u, t.Name)
	if err != nil {
		log.ErrorContext(ctx, "calendar: the identity for the app", "err", err)
		return problem(http.StatusServiceUnavailable, OutcomeUnavailable, "please ask again later")
	}
	start := time.Now()
	events, drops, outcome, reason := s.askApp(ctx, req, id, in.RequestID)
	if outcome != OutcomeServed {
		log.WarnContext(ctx, "calendar: the app gave no usable answer; empty calendar", "outcome", outcome, "reason", reason,
			"duration", time.Since(start))
		return s.calendar(nil, outcome)
	}
	events = finish(events, req.TenantID, req.User, &drops)
	if n := drops.Total(); n > 0 {
		for reason, c := range drops.Count {
			s.dropped.With(reason).Add(float64(c))
		}
		log.WarnContext(ctx, "calendar: events of the app dropped", "dropped", n, "reasons", drops.String(), "first", drops.First,
			"events", len(events))
	}
	log.InfoContext(ctx, "calendar answered", "events", len(events), "duration", time.Since(start))
	return s.calendar(events, OutcomeServed)
}

// calendar is a 200 answer with events (none: the empty calendar).
func (s *Service) calendar(events []Event, outcome string) Answer {
	var buf bytes.Buffer
	Write(&buf, events, s.cfg.Now())
	s.served.Add(float64(len(events)))
	return Answer{Status: http.StatusOK, ContentType: ContentType, Body: buf.Bytes(), Outcome: outcome}
}

// problem is an error answer: JSON with the outcome as its error word, and a message for a
// person reading the platform's log (never a detail of a signature).
func problem(status int, outcome, message string) Answer {
	var b bytes.Buffer
	b.WriteString(`{"error":"` + outcome + `"`)
	if message != "" {
		b.WriteString(`,"message":`)
		b.Write(quoteJSON(message))
	}
	b.WriteString("}\n")
	return Answer{Status: status, ContentType: "application/json", Body: b.Bytes(), Outcome: outcome}
}

// jsonContentType accepts a missing Content-Type (the platform documents JSON) and any JSON
// media type.
func jsonContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func quoteJSON(s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return b
}
