// Package internalapi is the platform API for the partner's own app, on a listener of its own
// (INTERNAL_LISTEN_ADDR), never on the public one: the app lists the schools and their state,
// reads one school (its informational fields and setup answers), and calls the platform's
// OneRoster 1.1 and REST "extern" APIs for a school through this server, which adds the school's
// client-credentials token and applies the token cache's rules (401: one new token, one more
// attempt; failing credentials: fail fast with backoff). The app never holds a school's secret.
//
// Every request needs a bearer token (INTERNAL_API_TOKEN), compared in constant time. Only
// schools that are active or pending setup are reached on the platform; errors are RFC 9457
// problem details with a stable type per kind (problem.go).
package internalapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// Config configures the API. Store, Platform, APIURL and at least one token are required.
type Config struct {
	Store    *store.Store
	Platform *platform.Clients
	// APIURL is UNTIS_API_URL: Link and Location headers of the platform that point below it are
	// rewritten to this API's paths.
	APIURL *url.URL
	// Tokens are the accepted bearer tokens (INTERNAL_API_TOKEN, comma-separated for rotation).
	Tokens []string
	// WritePaths are the extern API paths and methods the app may write to
	// (INTERNAL_API_WRITE_PATHS); none by default.
	WritePaths WriteRules
	// MaxBody bounds a write's body (INTERNAL_API_MAX_BODY); 0 means no limit.
	MaxBody int64
	// IdleTimeout cuts a streamed answer whose client stops reading for this long; default 60 s.
	IdleTimeout time.Duration
	Logger      *slog.Logger
	Metrics     *metrics.Registry
}

// DefaultMaxBody is INTERNAL_API_MAX_BODY's default.
const DefaultMaxBody = 1 << 20

// API serves the internal API.
type API struct {
	store      *store.Store
	platform   *platform.Clients
	apiBase    string // UNTIS_API_URL without a trailing slash
	tokens     [][sha256.Size]byte
	writePaths WriteRules
	maxBody    int64
	idle       time.Duration
	log        *slog.Logger
	requests   *metrics.CounterVec
	duration   *metrics.HistogramVec
	handler    http.Handler
}

// New builds the API.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Platform == nil || cfg.APIURL == nil {
		return nil, errors.New("internalapi: Store, Platform and APIURL are required")
	}
	if len(cfg.Tokens) == 0 {
		return nil, errors.New("internalapi: no token: the API would be open to anyone who reaches its listener")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	a := &API{
		store:      cfg.Store,
		platform:   cfg.Platform,
		apiBase:    strings.TrimRight(cfg.APIURL.String(), "/"),
		writePaths: cfg.WritePaths,
		maxBody:    cfg.MaxBody,
		idle:       cfg.IdleTimeout,
		log:        cfg.Logger,
	}
	if a.idle <= 0 {
		a.idle = 60 * time.Second
	}
	for _, t := range cfg.Tokens {
		if t == "" {
			return nil, errors.New("internalapi: an empty token")
		}
		// Tokens are compared as SHA-256 digests: equal length, so the comparison's time says
		// nothing about the token's length or its first differing byte.
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	a.requests = cfg.Metrics.NewCounterVec("internal_api_requests_total",
		"Requests to the internal API by route and outcome (ok, a problem type, aborted, client_gone). No school label.", "route", "outcome")
	a.duration = cfg.Metrics.NewHistogramVec("internal_api_request_duration_seconds",
		"Internal API request duration by route, until the answer (a streamed one included) is complete.",
		[]float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}, "route")
	a.handler = a.routes()
	return a, nil
}

// Handler is the API's whole HTTP surface.
func (a *API) Handler() http.Handler { return a.handler }

// NewHTTPServer is the internal listener's server. Every timeout is set: a request's headers must
// come within 5 s and its body within 30 s; an answer must be written within 60 s, except that a
// streamed passthrough answer moves its deadlines forward while bytes move (Config.IdleTimeout).
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// Route names, the route label of the metrics.
const (
	routeSchools   = "schools"
	routeSchool    = "school"
	routeOneRoster = "oneroster"
	routeExtern    = "extern"
	routeProblems  = "problems"
	routeOther     = "other"
)

func (a *API) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(a.observe, a.authenticate)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem{kind: kindNotFound, detail: "This API has no such route; see README.md, \"Your app and the platform\"."})
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem{kind: kindMethodNotAllowed, allow: http.MethodGet, detail: "This route takes GET only."})
	})
	r.With(route(routeProblems)).Get(problemsPrefix+"{slug}", serveProblemDoc)
	r.With(route(routeSchools)).Get("/v1/schools", a.listSchools)
	r.With(route(routeSchool)).Get("/v1/schools/{tenantId}", a.getSchool)
	r.With(route(routeOneRoster)).HandleFunc("/v1/schools/{tenantId}"+oneRosterRoot+"*", a.oneRoster)
	r.With(route(routeExtern)).HandleFunc("/v1/schools/{tenantId}"+externRoot+"*", a.extern)
	return r
}

// problemsPrefix is where the problem types are described; only there no token is needed.
const problemsPrefix = "/problems/"

// reqState is what the request's handlers tell the observing middleware.
type reqState struct {
	route    string
	outcome  string
	tenantID string
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	if st == nil {
		return &reqState{}
	}
	return st
}

// setOutcome records the request's outcome: "ok", a problem type, "aborted" or "client_gone".
func setOutcome(r *http.Request, outcome string) { stateOf(r).outcome = outcome }

// route names the request's route for metrics and the log.
func route(name string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			stateOf(r).route = name
			next.ServeHTTP(w, r)
		})
	}
}

// observe gives each request an id (the caller's X-Request-Id when it is a sane one), counts it
// by route and outcome, and logs one line: method, route, status, outcome, school and duration;
// never the query, a header value or a body.
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !saneRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		st := &reqState{route: routeOther}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if st.outcome == "" {
				st.outcome = "ok"
			}
			elapsed := time.Since(start)
			a.requests.With(st.route, st.outcome).Inc()
			a.duration.With(st.route).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if sw.status >= 500 || st.outcome == "aborted" {
				level = slog.LevelWarn
			}
			a.log.Log(r.Context(), level, "internal api request", "method", r.Method, "route", st.route,
				"status", sw.status, "outcome", st.outcome, "tenant_id", st.tenantID,
				"duration", elapsed.Round(time.Microsecond), "request_id", id)
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status for the log line; Unwrap keeps http.ResponseController
// (flushes, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func saneRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// detailWrongToken is the detail of a request whose token is not one of ours (its challenge then
// says invalid_token, RFC 6750 §3.1).
const detailWrongToken = "The bearer token is not one of INTERNAL_API_TOKEN."

// authenticate lets a request through only with a bearer token of INTERNAL_API_TOKEN. The
// token's digest is compared with every configured one, in constant time, without stopping at
// a match.
//
// Everything but the problem types' descriptions needs the token, unknown routes too: no one
// without it learns which routes exist.
func (a *API) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, problemsPrefix) && r.Method == http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		values := r.Header.Values("Authorization")
		var token string
		if len(values) == 1 {
			scheme, rest, ok := strings.Cut(values[0], " ")
			if ok && strings.EqualFold(scheme, "Bearer") {
				token = strings.TrimLeft(rest, " ")
			}
		}
		if token == "" {
			writeProblem(w, r, problem{kind: kindUnauthorized,
				detail: "Send the header Authorization: Bearer <token>, with a token of INTERNAL_API_TOKEN."})
			return
		}
		sum := sha256.Sum256([]byte(token))
		match := 0
		for i := range a.tokens {
			match |= subtle.ConstantTimeCompare(sum[:], a.tokens[i][:])
		}
		if match != 1 {
			a.log.Warn("internal api: a request with a wrong token", "remote", r.RemoteAddr)
			writeProblem(w, r, problem{kind: kindUnauthorized, detail: detailWrongToken})
			return
		}
		next.ServeHTTP(w, r)
	})
}
