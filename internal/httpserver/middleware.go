package httpserver

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/i18n"
)

type ctxKey struct{}

// requestInfo is what requestContext learns about a request; one context value, one allocation.
type requestInfo struct {
	id       string
	clientIP string
	route    string // set by handlers outside the route table (the gateway), for the log and metrics
}

// RequestID returns the id of the request that ctx belongs to ("" outside a request).
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// ClientIP returns the client address of the request, as resolved by requestContext.
func ClientIP(ctx context.Context) string {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.clientIP
	}
	return ""
}

// requestContext gives every request an id (echoed in X-Request-Id, for support) and its client
// IP (from X-Forwarded-For only behind TRUSTED_PROXIES).
func (s *Server) requestContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An upstream id is kept only from a trusted proxy: anyone else could choose the id that
		// error pages quote and the logs are searched by.
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) || !gateway.FromTrustedProxy(r, s.trusted) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ri := &requestInfo{id: id, clientIP: gateway.ClientIP(r, s.trusted)}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri)))
	})
}

// observe logs one line per request and feeds the request metrics. The line has the route
// pattern, never the path's query string (it may hold an authorization code or state) and never a
// header value (cookies, Authorization).
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		// Deferred, so a request whose handler aborts (a panic after the response started,
		// re-raised as http.ErrAbortHandler) is still logged and counted; the panic goes on.
		defer func() {
			aborted := false
			if rec := recover(); rec != nil {
				aborted = true
				defer panic(rec)
			}
			s.record(r, sw, time.Since(start), aborted)
		}()
		next.ServeHTTP(sw, r)
	})
}

func (s *Server) record(r *http.Request, sw *statusWriter, elapsed time.Duration, aborted bool) {
	route := "unmatched"
	if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
		route = rc.RoutePattern()
	} else if ri, ok := r.Context().Value(ctxKey{}).(*requestInfo); ok && ri.route != "" {
		route = ri.route
	}
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	if aborted && sw.status == 0 {
		status = http.StatusInternalServerError
	}
	code := strconv.Itoa(status)
	method := metricMethod(r.Method)
	s.httpm.requests.With(route, method, code).Inc()
	s.httpm.duration.With(route, method, code).Observe(elapsed.Seconds())

	level := slog.LevelInfo
	switch {
	case status >= 500 || aborted:
		level = slog.LevelError
	case route == "/healthz" || route == "/readyz" || route == "/metrics":
		level = slog.LevelDebug // probes every few seconds would drown the log
	}
	if !s.log.Enabled(r.Context(), level) {
		return // the probes' lines are usually off: skip building them
	}
	attrs := []slog.Attr{
		slog.String("request_id", RequestID(r.Context())),
		slog.String("method", r.Method),
		slog.String("route", route),
		slog.Int("status", status),
		slog.Int64("bytes", sw.bytes),
		slog.Duration("duration", elapsed),
		slog.String("client_ip", ClientIP(r.Context())),
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// metricMethod bounds the method label: net/http accepts any token as a method, and a label per
// invented method would let any client grow the metrics without limit.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// recoverer turns a panic into a 500 page and a log line with the stack, instead of a dropped
// connection. http.ErrAbortHandler is re-raised, as net/http expects.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			if rec == nil {
				return
			}
			if rec == http.ErrAbortHandler {
				panic(rec)
			}
			s.log.ErrorContext(r.Context(), "panic in handler",
				"request_id", RequestID(r.Context()), "panic", rec, "stack", string(debug.Stack()))
			if sw, ok := w.(*statusWriter); ok && sw.status != 0 {
				// Part of a response is out: a second page would garble it. Cut the connection
				// so the client sees a failure, not a truncated page that looks complete.
				panic(http.ErrAbortHandler)
			}
			s.renderError(w, r, http.StatusInternalServerError, i18n.T("error.internal.heading"), i18n.T("error.internal.text"))
		}()
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the headers every application page gets. The Referrer-Policy matters:
// a page reached from /launch?code=... must not leak that URL to anything it links to.
func (s *Server) securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.setPageHeaders(w.Header())
		next.ServeHTTP(w, r)
	})
}

// setPageHeaders sets the security headers of the server's own pages (securityHeaders); the
// gateway sets them on the pages it answers itself, never on the app's.
func (s *Server) setPageHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", s.csp)
	if !s.embedMode {
		h.Set("X-Frame-Options", "DENY")
	}
	if s.https {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// neverFramed keeps a page out of every frame, in embed mode too: the operator console and the
// activation page are never opened from an entry point, and a page that takes credentials must
// not be framed by anyone (clickjacking).
func (s *Server) neverFramed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", s.cspNoFrame)
		w.Header().Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows only our own resources. Outside embed mode nobody may frame the
// app; in embed mode only the platform's origins may (the entry points open it in an iFrame).
// A logo (APP_LOGO_URL) on another origin is allowed as an image, and nothing else of it.
func contentSecurityPolicy(embed bool, platformOrigins []string, logoURL string) string {
	img := "'self' data:"
	if u, err := url.Parse(logoURL); err == nil && u.Scheme == "https" && u.Host != "" {
		img += " https://" + u.Host
	}
	ancestors := "'none'"
	if embed {
		ancestors = "'self'"
		for _, o := range platformOrigins {
			ancestors += " " + o
		}
	}
	return "default-src 'self'; img-src " + img + "; style-src 'self'; script-src 'self'; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors " + ancestors
}

// limitBody caps request bodies: a declared length over the cap is refused with 413 at once,
// and reading past the cap fails, which handlers turn into 413 (http.MaxBytesError).
func limitBody(n int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > n {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, n)
			next.ServeHTTP(w, r)
		})
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
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
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (Flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over (a WebSocket through the gateway); the log then records 101,
// the status the app's answer had.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, brw, err
}

// setRoute names the route of a request that no route pattern matched (the gateway's).
func setRoute(ctx context.Context, route string) {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		ri.route = route
	}
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRequestID accepts an upstream id only when it is short and plain, so a forged header
// cannot inject anything into logs.
func validRequestID(id string) bool {
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
