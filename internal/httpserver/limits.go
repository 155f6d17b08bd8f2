package httpserver

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/ratelimit"
	"github.com/untis-partner/server/internal/store"
)

// LaunchLimits bound the sign-ins /launch starts, in launches per minute (a burst of that many,
// refilled evenly over a minute), on each replica. Every launch stores a flow row before the
// browser goes to the platform, and /launch needs no sign-in, so without a bound anyone could
// make the server store rows as fast as they can send requests. 0 turns a limit off.
type LaunchLimits struct {
	// PerClient counts per client network: an IPv4 address or an IPv6 /64 (the client address
	// is X-Forwarded-For's only behind TRUSTED_PROXIES).
	PerClient int
	// PerSchool counts per school (the launch's tenant id), whatever the address.
	PerSchool int
}

// launchLimiters are the in-memory token buckets of LaunchLimits: the launch is the login path,
// which must not wait for a database write per request.
type launchLimiters struct {
	client, school *ratelimit.Limiter
	refused        *metrics.CounterVec
}

func newLaunchLimiters(l LaunchLimits, now func() time.Time, reg *metrics.Registry) launchLimiters {
	return launchLimiters{
		client: ratelimit.New(l.PerClient, now),
		school: ratelimit.New(l.PerSchool, now),
		refused: reg.NewCounterVec("launch_rate_limited_total",
			"Launches refused with 429 by LAUNCH_LIMIT_PER_CLIENT (limit=client) or LAUNCH_LIMIT_PER_SCHOOL (limit=school).", "limit"),
	}
}

// launchLimited answers a launch over one of the limits with 429, Retry-After and a page in plain
// words, and reports whether it did. A client over its own limit does not count against its
// school, so one client cannot use up a school's launches by itself.
func (s *Server) launchLimited(w http.ResponseWriter, r *http.Request, tenantID string) bool {
	ctx := r.Context()
	limit, d := "client", s.launchLimits.client.Allow(limitKey(ClientIP(ctx)))
	if d.Allowed {
		limit, d = "school", s.launchLimits.school.Allow(tenantID)
	}
	if d.Allowed {
		return false
	}
	s.launchLimits.refused.With(limit).Inc()
	// One line per burst of refusals: a flood must not become a flood of log lines.
	if d.FirstRefusal {
		s.log.WarnContext(ctx, "launch rate-limited", "request_id", RequestID(ctx), "limit", limit,
			"tenant_id", tenantID, "client_ip", ClientIP(ctx), "retry_after_seconds", int(d.RetryAfter.Seconds()))
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(d.RetryAfter.Seconds())))
	msg := "limit.launch.network"
	if limit == "school" {
		msg = "limit.launch.school"
	}
	s.renderError(w, r, http.StatusTooManyRequests, i18n.T("limit.launch.heading"), i18n.T(msg, "Wait", waitWords(d.RetryAfter)))
	return true
}

// waitWords says a wait in words: "a few seconds", "30 seconds", "a minute", "12 minutes".
func waitWords(d time.Duration) i18n.Text {
	switch {
	case d < 10*time.Second:
		return i18n.T("wait.few_seconds")
	case d <= 50*time.Second:
		return i18n.T("wait.seconds", "Count", int(d.Round(10*time.Second).Seconds()))
	case d <= 90*time.Second:
		return i18n.T("wait.minute")
	}
	return i18n.T("wait.minutes", "Count", int((d+time.Minute-1)/time.Minute))
}

// badText reports whether s is text the database cannot store: bytes that are not UTF-8, or a
// NUL (PostgreSQL refuses both in text, SQLSTATE 22021). Browsers never send either in a form.
func badText(s string) bool {
	return !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0
}

// badParam names the first parameter of vs (among only, when given) whose name or a value is bad
// text. The name is made safe to log.
func badParam(vs url.Values, only ...string) (string, bool) {
	check := func(k string) (string, bool) {
		if badText(k) {
			return strconv.QuoteToASCII(truncate(k, 64)), true
		}
		for _, v := range vs[k] {
			if badText(v) {
				return k, true
			}
		}
		return "", false
	}
	if len(only) > 0 {
		for _, k := range only {
			if name, bad := check(k); bad {
				return name, true
			}
		}
		return "", false
	}
	for k := range vs {
		if name, bad := check(k); bad {
			return name, true
		}
	}
	return "", false
}

// sqlState is the SQLSTATE of a database error ("" for none).
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// refuseBadText answers 400 before any handler runs when a query or form parameter (name or
// value) is not text the database can store: every form route reads parameters that reach a
// query (e-mail addresses, tenant ids, credentials, setup answers, reasons).
func (s *Server) refuseBadText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ParseForm reads the query and an url-encoded body (within limitBody's bound); the
		// handlers' own calls then return what it parsed.
		if err := r.ParseForm(); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				s.renderError(w, r, http.StatusRequestEntityTooLarge, i18n.T("error.form_too_large.heading"), i18n.T("error.form.again"))
				return
			}
			s.renderError(w, r, http.StatusBadRequest, i18n.T("error.form_unreadable.heading"), i18n.T("error.form.again"))
			return
		}
		if name, bad := badParam(r.Form); bad {
			s.textRefused(w, r, name)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// textRefused answers a request with text the database cannot store: 400, never an outage.
func (s *Server) textRefused(w http.ResponseWriter, r *http.Request, param string) {
	ctx := r.Context()
	s.log.InfoContext(ctx, "request refused: not storable text", "request_id", RequestID(ctx), "param", param)
	s.renderError(w, r, http.StatusBadRequest, i18n.T("error.bad_text.heading"), i18n.T("error.bad_text.form"))
}

// invalidTextAnswered is the safety net behind the input checks: the database refused text for
// its encoding (store.IsInvalidText), which is bad input, answered 400 and logged as such, never
// as an outage. It reports whether it answered.
func (s *Server) invalidTextAnswered(w http.ResponseWriter, r *http.Request, err error, asJSON bool) bool {
	if !store.IsInvalidText(err) {
		return false
	}
	ctx := r.Context()
	// The database's message quotes the offending bytes; the code says enough.
	s.log.LogAttrs(ctx, slog.LevelInfo, "request refused: the database cannot store its text",
		slog.String("request_id", RequestID(ctx)), slog.String("sqlstate", sqlState(err)))
	if asJSON {
		writeJSON(w, http.StatusBadRequest, apiError{"invalid_input", "The request contains characters that cannot be stored."})
		return true
	}
	s.renderError(w, r, http.StatusBadRequest, i18n.T("error.bad_text.heading"), i18n.T("error.bad_text.stored"))
	return true
}
