package httpserver

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
)

// handleLaunch is both ends of a sign-in. Without code, state or error it is an entry point's
// launch: start the school's SSO flow and send the browser to the platform. With them it is the
// platform sending the browser back: complete the flow and open a session.
func (s *Server) handleLaunch(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil || s.sessions == nil {
		s.renderError(w, r, http.StatusServiceUnavailable, i18n.T("signin.unavailable.heading"), i18n.T("signin.unavailable.text"))
		return
	}
	q := r.URL.Query()
	// The parameters that reach the store or the log must be text the database can hold (the
	// launch context's others are checked, and dropped when bad, by ParseLaunch).
	if name, bad := badParam(q, launchTextParams...); bad {
		s.log.InfoContext(r.Context(), "launch refused: not storable text", "request_id", RequestID(r.Context()), "param", name)
		s.renderError(w, r, http.StatusBadRequest, i18n.T("signin.damaged.heading"), i18n.T("signin.damaged.text"))
		return
	}
	if q.Has("code") || q.Has("state") || q.Has("error") {
		s.handleCallback(w, r, q)
		return
	}
	l, err := sso.ParseLaunch(q)
	if err != nil {
		s.log.InfoContext(r.Context(), "launch refused", "request_id", RequestID(r.Context()), "reason", err.Error())
		s.renderError(w, r, http.StatusBadRequest, i18n.T("signin.no_school.heading"), i18n.T("signin.no_school.text"))
		return
	}
	if len(l.Dropped) > 0 {
		s.log.InfoContext(r.Context(), "launch context parameters dropped", "request_id", RequestID(r.Context()),
			"tenant_id", l.TenantID, "dropped", l.Dropped)
	}
	if s.launchLimited(w, r, l.TenantID) {
		return
	}
	st, err := s.sso.Begin(r.Context(), l)
	if err != nil {
		s.signInFailed(w, r, err)
		return
	}
	s.sessions.SetFlowCookie(w, sso.FlowCookieTag(st.State), st.FlowID, st.ExpiresAt)
	http.Redirect(w, r, st.AuthorizeURL, http.StatusFound)
}

func (s *Server) handleCallback(w http.ResponseWriter, r *http.Request, q url.Values) {
	ctx := r.Context()
	tag := sso.FlowCookieTag(q.Get("state"))
	flowID, used := s.sessions.FlowCookie(r, tag), s.sessions.FlowUsed(r, tag)
	s.sessions.MarkFlowUsed(w, tag) // one attempt per flow, whatever happens
	if used && q.Get("error") == "" {
		s.flowAlreadyUsed(w, r)
		return
	}
	if flowID == "" && q.Get("error") == "" {
		s.endPreviousSession(w, r)
		s.flowCookieMissing(w, r, q.Get("state"))
		return
	}
	id, err := s.sso.Complete(ctx, flowID, q)
	if err != nil {
		s.endPreviousSession(w, r)
		s.signInFailed(w, r, err)
		return
	}
	state, err := s.sessions.Start(ctx, w, r, id.User, id.Launch)
	if errors.Is(err, store.ErrNotFound) {
		// The school was deactivated between the checks and the session.
		s.signInFailed(w, r, &sso.Error{Kind: sso.KindSchoolInactive, Reason: "school_inactive", TenantID: id.User.TenantID})
		return
	}
	if err != nil {
		s.log.ErrorContext(ctx, "start session", "request_id", RequestID(ctx), "tenant_id", id.User.TenantID, "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, i18n.T("signin.not_saved.heading"), i18n.T("signin.not_saved.text"))
		return
	}
	s.log.InfoContext(ctx, "signed in", "request_id", RequestID(ctx), "tenant_id", id.User.TenantID,
		"sub", id.User.Sub, "role", id.User.Role)
	// The launch's return_to, else the deployment's landing rules (GATEWAY_LANDING_PATHS).
	target := s.landing.Target(id.ReturnTo, id.Launch, id.User.Role)
	if state == store.StatePendingSetup && id.User.Role == platform.RoleAdministrator {
		target = "/setup"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// launchTextParams are the /launch parameters that reach the store or the log as they are
// (return_to is not one: one that is not a safe path is ignored, as contract.md says).
var launchTextParams = []string{"tenant_id", "tenantId", "code", "state", "error", "error_description", "error_uri", "iss", "session_state"}

// endPreviousSession ends the browser's session when a sign-in fails: a new launch means someone
// is signing in now, and if that is another WebUntis user whose sign-in failed, the previous
// user must not stay signed in behind the error page.
func (s *Server) endPreviousSession(w http.ResponseWriter, r *http.Request) {
	if _, err := s.sessions.End(r.Context(), w, r); err != nil {
		s.log.ErrorContext(r.Context(), "end the previous session", "request_id", RequestID(r.Context()), "err", err)
	}
}

// flowAlreadyUsed answers a callback this browser already brought once (Back to it, a reload):
// its sign-in link is spent, which is neither a cookie problem nor a failed sign-in, so a
// session the browser has stays.
func (s *Server) flowAlreadyUsed(w http.ResponseWriter, r *http.Request) {
	s.log.InfoContext(r.Context(), "sign-in refused", "request_id", RequestID(r.Context()), "reason", "flow_reused")
	s.renderError(w, r, http.StatusBadRequest, i18n.T("signin.used.heading"), i18n.T("signin.used.text"))
}

// flowCookieMissing answers a callback without its flow cookie. In an iFrame that is almost
// always the browser blocking third-party cookies: the flow is found by its state so that the
// page can offer to start the same launch again in a new tab, where the cookies are first-party.
// A callback the browser says it opened in a tab of its own (Sec-Fetch-Dest: document) is not
// framed, even in embed mode: it gets the page for a tab (allow cookies, try again here).
func (s *Server) flowCookieMissing(w http.ResponseWriter, r *http.Request, state string) {
	ctx := r.Context()
	l, found, err := s.sso.Abandon(ctx, state)
	if err != nil {
		s.log.WarnContext(ctx, "look up flow by state", "request_id", RequestID(ctx), "err", err)
	}
	framed := s.embedMode && r.Header.Get("Sec-Fetch-Dest") != "document"
	s.log.WarnContext(ctx, "sign-in refused", "request_id", RequestID(ctx), "tenant_id", l.TenantID,
		"reason", "no_flow_cookie", "embed_mode", s.embedMode, "framed", framed)
	p := page{Page: "cookie_blocked", Title: i18n.T("cookies.heading"), RequestID: RequestID(ctx), Embed: framed}
	if framed {
		p.Title = i18n.T("cookies.embed.heading")
	}
	if found {
		p.Relaunch = l.URL()
	}
	s.render(w, r, http.StatusBadRequest, p)
}

// signInFailed logs why a sign-in was refused (a fixed reason word and the error, never a code,
// token, state or cookie) and shows the user a page in plain words.
func (s *Server) signInFailed(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	e := sso.AsError(err)
	if s.invalidTextAnswered(w, r, e.Err, false) {
		return
	}
	level := slog.LevelWarn
	if e.Kind == sso.KindUnavailable || e.Kind == sso.KindMisconfigured {
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("request_id", RequestID(ctx)), slog.String("tenant_id", e.TenantID), slog.String("reason", e.Reason),
	}
	if e.Code != "" {
		attrs = append(attrs, slog.String("platform_error", e.Code))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("err", e.Err.Error()))
	}
	s.log.LogAttrs(ctx, level, "sign-in refused", attrs...)
	status, heading, message := explain(e)
	if e.Kind == sso.KindSchoolInactive {
		heading, message = s.explainEnded(r, e.TenantID, heading, message)
	}
	s.renderError(w, r, status, heading, message)
}

// explainEnded says who switched the app off for a school, so that the user asks the one who can
// switch it on again: the school's WebUntis administrator when the platform ended it (a
// deactivation or deletion webhook), the app's provider when one of its operators did. Without
// a record of the ending it keeps the general words it is given.
func (s *Server) explainEnded(r *http.Request, tenantID string, heading, message i18n.Text) (i18n.Text, i18n.Text) {
	if tenantID == "" || s.store == nil {
		return heading, message
	}
	end, err := s.store.TenantEnding(r.Context(), tenantID)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.WarnContext(r.Context(), "how the school ended", "request_id", RequestID(r.Context()), "tenant_id", tenantID, "err", err)
		}
		return heading, message
	}
	switch {
	case !end.Ended:
		return heading, message
	case end.ByOperator:
		return i18n.T("signin.inactive.heading"), i18n.T("signin.inactive.by_provider")
	case end.Deletion:
		return i18n.T("signin.removed.heading"), i18n.T("signin.removed.text")
	}
	return heading, i18n.T("signin.inactive.by_school")
}

// explain turns a sign-in failure into a status and words for the user. Every status is a 4xx
// (the contract promises a 4xx page when a check fails), except our own store failing (503).
func explain(e *sso.Error) (int, i18n.Text, i18n.Text) {
	switch e.Kind {
	case sso.KindUnknownSchool:
		return http.StatusNotFound, i18n.T("signin.unknown_school.heading"), i18n.T("signin.unknown_school.text")
	case sso.KindSchoolInactive:
		return http.StatusForbidden, i18n.T("signin.inactive.heading"), i18n.T("signin.inactive.text")
	case sso.KindFlowMissing:
		return http.StatusBadRequest, i18n.T("signin.flow_missing.heading"), i18n.T("signin.flow_missing.text")
	case sso.KindFlowExpired:
		return http.StatusBadRequest, i18n.T("signin.flow_expired.heading"), i18n.T("signin.flow_expired.text", "Minutes", 10)
	case sso.KindPlatformError:
		return explainPlatformError(e.Code)
	case sso.KindMisconfigured:
		// Not a security warning: nobody attacked the user, the school's connection is wrong
		// (typically a wrong or outdated OIDC secret), and someone other than the user can fix it.
		return http.StatusFailedDependency, i18n.T("signin.misconfigured.heading"), i18n.T("signin.misconfigured.text")
	case sso.KindRejected:
		return http.StatusForbidden, i18n.T("signin.rejected.heading"), i18n.T("signin.rejected.text")
	}
	if e.Reason == "store" || e.Reason == "internal" {
		return http.StatusServiceUnavailable, i18n.T("error.trouble.heading"), i18n.T("signin.trouble.text")
	}
	// The platform failed or could not be reached: 424, the request depended on one that failed.
	return http.StatusFailedDependency, i18n.T("signin.platform_down.heading"), i18n.T("signin.platform_down.text")
}

// explainPlatformError explains an OAuth error the platform sent back. The code is quoted where
// it helps support (it is one of the fixed words of RFC 6749, or the platform's own).
func explainPlatformError(code string) (int, i18n.Text, i18n.Text) {
	switch code {
	case "access_denied":
		return http.StatusForbidden, i18n.T("signin.access_denied.heading"), i18n.T("signin.access_denied.text")
	case "invalid_ressource", "invalid_resource", "invalid_redirect_uri":
		return http.StatusBadRequest, i18n.T("signin.bad_redirect.heading"), i18n.T("signin.bad_redirect.text", "Code", code)
	case "login_required", "interaction_required":
		return http.StatusUnauthorized, i18n.T("signin.login_required.heading"), i18n.T("signin.login_required.text")
	case "server_error", "temporarily_unavailable":
		return http.StatusFailedDependency, i18n.T("signin.platform_trouble.heading"), i18n.T("signin.platform_trouble.text")
	case "invalid_client", "unauthorized_client":
		return http.StatusBadRequest, i18n.T("signin.not_registered.heading"), i18n.T("signin.not_registered.text", "Code", code)
	}
	if !oauthCode(code) {
		// The page quotes no made-up text from an address someone may have crafted.
		code = "?"
	}
	return http.StatusBadRequest, i18n.T("signin.platform_refused.heading"), i18n.T("signin.platform_refused.text", "Code", code)
}

// oauthCode reports whether code looks like an OAuth error code (RFC 6749 §4.1.2.1: a short
// word of lower-case letters and underscores).
func oauthCode(code string) bool {
	if code == "" || len(code) > 40 {
		return false
	}
	for _, c := range code {
		if (c < 'a' || c > 'z') && c != '_' {
			return false
		}
	}
	return true
}
