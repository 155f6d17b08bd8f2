package httpserver

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/gateway"
	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
)

// handleGateway answers every path the server does not reserve, in gateway mode: the app's. A
// public path goes to the app without identity; any other needs a live session of an active
// school, and goes with the user's identity headers. Everyone else gets the server's own answer
// and the app never sees the request.
func (s *Server) handleGateway(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if gateway.Reserved(r.URL.Path) {
		// A path under one of the server's own trees that no route serves (/admin/x, /_untis/x).
		s.setPageHeaders(w.Header())
		s.handleNotFound(w, r)
		return
	}
	if s.proxy.Public(r) {
		setRoute(ctx, "gateway:public")
		s.proxy.Serve(w, r, nil)
		return
	}
	setRoute(ctx, "gateway")
	sess, err := s.loadSession(r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		s.signInNeeded(w, r)
		return
	case err != nil:
		s.setPageHeaders(w.Header())
		s.storeTrouble(w, r, err, apiRequest(r))
		return
	case sess.TenantState != store.StateActive:
		s.schoolNotReady(w, r, sess)
		return
	case crossSiteWrite(r.Method, r.Header):
		s.log.InfoContext(ctx, "proxied request refused: a state-changing request from another site",
			"request_id", RequestID(ctx), "tenant_id", sess.TenantID, "method", r.Method)
		writeJSON(w, http.StatusForbidden, apiError{"cross_site", "This request came from another site; it was not passed to the app."})
		return
	}
	sess = s.learnSchoolName(ctx, sess)
	id, err := s.identities.For(ctx, sess)
	if err != nil {
		s.setPageHeaders(w.Header())
		s.storeTrouble(w, r, err, apiRequest(r))
		return
	}
	s.proxy.Serve(w, r, id)
}

// crossSiteWrite reports whether a browser sent r, a state-changing request, from another site
// (Sec-Fetch-Site: cross-site): a form another site posts to the app. In embed mode the session
// cookie is SameSite=None, so the browser sends it along, and the app would act for the user
// (cross-site request forgery); outside embed mode SameSite=Lax already withholds it. Only
// cross-site is refused: the app's own pages (same-origin), sibling sites of one company
// (same-site), the user typing an address (none) and clients that are no browser (no header)
// pass, and reads from anywhere. A WebSocket another site's page opens counts as a write (it
// would talk to the app as the user: cross-site WebSocket hijacking).
func crossSiteWrite(method string, h http.Header) bool {
	if h.Get("Sec-Fetch-Site") != "cross-site" {
		return false
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return h.Get("Sec-Fetch-Mode") == "websocket"
	}
	return true
}

// learnSchoolName looks the school's name up in the platform's OneRoster when it is not known
// yet (the built-in app learns it on its home page, which the gateway never shows), and returns
// the session to build the identity from: with the name when the lookup answers within
// nameWait, so that the first page of a school's first user already names the school. A slower
// lookup goes on in the background for the requests after it; until it answers,
// X-Untis-School-Name is empty. A school whose name the platform does not give is asked at most
// every 10 minutes, and only by one request: the others go on without waiting.
func (s *Server) learnSchoolName(ctx context.Context, sess *store.Session) *store.Session {
	if sess.TenantName != "" || s.platform == nil {
		return sess
	}
	now := time.Now()
	s.nameMu.Lock()
	if s.nameAsked == nil {
		s.nameAsked = map[string]time.Time{}
	}
	if last, ok := s.nameAsked[sess.TenantID]; ok && now.Sub(last) < 10*time.Minute {
		s.nameMu.Unlock()
		return sess
	}
	s.nameAsked[sess.TenantID] = now
	s.nameMu.Unlock()
	found := make(chan string, 1)
	go func() { found <- s.schoolName(context.WithoutCancel(ctx), sess) }()
	wait := time.NewTimer(nameWait)
	defer wait.Stop()
	select {
	case name := <-found:
		if name == "" {
			return sess
		}
		// A copy: the session may be the one the session cache hands every request of it.
		named := *sess
		named.TenantName = name
		return &named
	case <-wait.C:
		return sess
	case <-ctx.Done():
		return sess
	}
}

// nameWait bounds how long the first request of a school waits for its name (a OneRoster call,
// a few milliseconds to a platform that answers).
const nameWait = time.Second

// apiRequest tells a script's request from a page the browser navigates to: a script's gets
// JSON, a person gets a page.
func apiRequest(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return true
	}
	if r.Header.Get("X-Requested-With") != "" || strings.Contains(r.Header.Get("Accept"), "application/json") {
		return true
	}
	// fetch() and XMLHttpRequest say cors or same-origin; a navigation says navigate.
	mode := r.Header.Get("Sec-Fetch-Mode")
	return mode == "cors" || mode == "same-origin"
}

// signInNeeded answers a request for the app that carries no live session: 401, as JSON like
// /api/me's for a script, or the "open this app from Untis" page in the reader's language. The
// JSON's message stays English, as every JSON answer's: a script reads its error code.
func (s *Server) signInNeeded(w http.ResponseWriter, r *http.Request) {
	if apiRequest(r) {
		writeJSON(w, http.StatusUnauthorized, apiError{"not_signed_in", "Open the app from Untis to sign in."})
		return
	}
	s.setPageHeaders(w.Header())
	s.render(w, r, http.StatusUnauthorized, page{Page: "anonymous", Title: i18n.T("anonymous.heading")})
}

// schoolNotReady answers a signed-in user whose school is not active yet (pending setup): the
// "being set up" page (with the way to /setup for an administrator) in the reader's (or the
// school's) language, or 403 JSON (English message, as signInNeeded's).
func (s *Server) schoolNotReady(w http.ResponseWriter, r *http.Request, sess *store.Session) {
	if apiRequest(r) {
		writeJSON(w, http.StatusForbidden, apiError{"school_not_ready", "Your school is still being set up; open the app again once it is."})
		return
	}
	s.setPageHeaders(w.Header())
	s.render(w, r, http.StatusForbidden, page{
		Page: "pending_setup", Title: i18n.T("pending.heading"), Session: sess,
		IsAdmin: sess.User.Role == platform.RoleAdministrator,
	})
}

// upstreamFailed answers a proxied request that the app did not answer, in plain words: a page
// in the reader's language, or JSON with a stable code (and an English message, as every JSON
// answer's) for a script.
func (s *Server) upstreamFailed(w http.ResponseWriter, r *http.Request, f gateway.Failure) {
	status := f.Status()
	var code, message string
	var heading, text i18n.Text
	switch f {
	case gateway.FailTimeout:
		code, message = "upstream_timeout", "The app did not answer in time. Please try again in a moment."
		heading, text = i18n.T("error.upstream_timeout.heading"), i18n.T("error.upstream_timeout.text")
	case gateway.FailTooLarge:
		code, message = "too_large", "What you tried to send is larger than this app accepts."
		heading, text = i18n.T("error.too_large.heading"), i18n.T("error.too_large.text")
	default:
		code, message = "upstream_unavailable", "The app could not be reached just now. Please try again in a moment."
		heading, text = i18n.T("error.upstream_unavailable.heading"), i18n.T("error.upstream_unavailable.text")
	}
	if apiRequest(r) {
		writeJSON(w, status, apiError{code, message})
		return
	}
	s.setPageHeaders(w.Header())
	s.renderError(w, r, status, heading, text)
}

// handleForwardAuth answers an ingress's authorization subrequest (nginx auth_request, Traefik
// ForwardAuth, Caddy forward_auth), whatever its method: 200 with the identity headers for a
// request that carries a live session of an active school, 401 otherwise. The ingress copies
// the headers onto the request it sends to the app.
//
// The shipped ingress configurations hand the 401 to the client, so a person may read it: a
// browser's navigation (it accepts text/html) gets the "open this app from Untis" or "being set
// up" page in the reader's language, whose language switch returns to the page the person asked
// the ingress for (X-Forwarded-Uri, or nginx's X-Original-URI). Anything else (an ingress's own
// check, a script) gets a short plain-text body, in English on purpose: it is for machines and
// logs, as are the 503 bodies.
func (s *Server) handleForwardAuth(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if s.identities == nil {
		http.Error(w, "forward-auth is not available", http.StatusNotFound)
		return
	}
	person := !apiRequest(r) && strings.Contains(r.Header.Get("Accept"), "text/html")
	sess, err := s.loadSession(r)
	switch {
	case errors.Is(err, session.ErrNoSession):
		if person {
			s.setPageHeaders(h)
			s.render(w, r, http.StatusUnauthorized, page{Page: "anonymous", Title: i18n.T("anonymous.heading"), Back: forwardedPath(r)})
			return
		}
		http.Error(w, "Not signed in: open this app from Untis.", http.StatusUnauthorized)
		return
	case err != nil:
		s.log.ErrorContext(r.Context(), "forward-auth: load session", "request_id", RequestID(r.Context()), "err", err)
		http.Error(w, "sign-in cannot be checked just now", http.StatusServiceUnavailable)
		return
	case sess.TenantState != store.StateActive:
		if person {
			s.setPageHeaders(h)
			s.render(w, r, http.StatusUnauthorized, page{Page: "pending_setup", Title: i18n.T("pending.heading"), Session: sess,
				IsAdmin: sess.User.Role == platform.RoleAdministrator, Back: forwardedPath(r)})
			return
		}
		http.Error(w, "Your school is still being set up: open this app from Untis once it is.", http.StatusUnauthorized)
		return
	case crossSiteWrite(forwardedMethod(r), r.Header):
		// As in gateway mode: another site's form or WebSocket never reaches the app as the
		// user. The ingress passes the client's headers and names the method.
		s.log.InfoContext(r.Context(), "forward-auth refused: a state-changing request from another site",
			"request_id", RequestID(r.Context()), "tenant_id", sess.TenantID)
		http.Error(w, "This request came from another site; it is not passed to the app.", http.StatusForbidden)
		return
	}
	sess = s.learnSchoolName(r.Context(), sess)
	id, err := s.identities.For(r.Context(), sess)
	if err != nil {
		s.log.ErrorContext(r.Context(), "forward-auth: identity", "request_id", RequestID(r.Context()), "err", err)
		http.Error(w, "sign-in cannot be checked just now", http.StatusServiceUnavailable)
		return
	}
	id.Set(h)
	w.WriteHeader(http.StatusOK)
}

// forwardedMethod is the method of the request the ingress asks about: X-Forwarded-Method
// (Traefik, Caddy; the shipped nginx.conf sets it), else the subrequest's own (nginx's
// auth_request keeps the original method).
func forwardedMethod(r *http.Request) string {
	if m := r.Header.Get("X-Forwarded-Method"); m != "" {
		return m
	}
	return r.Method
}

// forwardedPath is the path (and query) the person asked the ingress for, as the ingress names
// it to forward-auth, when it is a path of this site; "/" otherwise. Only the language switch's
// return uses it, and sso.SafeReturnPath keeps it on this site.
func forwardedPath(r *http.Request) string {
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-URI"} {
		if p, ok := sso.SafeReturnPath(r.Header.Get(name)); ok {
			return p
		}
	}
	return "/"
}

// handleJWKS serves the public keys of the X-Untis-Identity assertion.
func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if s.jwks == nil {
		s.setPageHeaders(w.Header())
		s.handleNotFound(w, r)
		return
	}
	s.jwks.ServeHTTP(w, r)
}
