package httpserver

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sort"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
)

// handleLaunch is both ends of a sign-in. Without code, state or error it is an entry point's
// launch: start the school's SSO flow and send the browser to the platform. With them it is the
// platform sending the browser back: complete the flow and open a session.
func (s *Server) handleLaunch(w http.ResponseWriter, r *http.Request) {
	if s.sso == nil || s.sessions == nil {
		s.renderError(w, r, http.StatusServiceUnavailable, "Sign-in is not available",
			"This server was started without sign-in.")
		return
	}
	q := r.URL.Query()
	// The parameters that reach the store or the log must be text the database can hold (the
	// launch context's others are checked, and dropped when bad, by ParseLaunch).
	if name, bad := badParam(q, launchTextParams...); bad {
		s.log.InfoContext(r.Context(), "launch refused: not storable text", "request_id", RequestID(r.Context()), "param", name)
		s.renderError(w, r, http.StatusBadRequest, "This link is damaged",
			"The address that opened this page contains characters that no sign-in link has. Open the app again from WebUntis.")
		return
	}
	if q.Has("code") || q.Has("state") || q.Has("error") {
		s.handleCallback(w, r, q)
		return
	}
	l, err := sso.ParseLaunch(q)
	if err != nil {
		s.log.InfoContext(r.Context(), "launch refused", "request_id", RequestID(r.Context()), "reason", err.Error())
		s.renderError(w, r, http.StatusBadRequest, "This link does not name a school",
			"The address that opened this app does not say which school you are from. Open the app from the menu in WebUntis, not from a saved link.")
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
		s.renderError(w, r, http.StatusServiceUnavailable, "Sign-in could not be saved",
			"You were recognised, but the app could not save your sign-in just now. Please open it again from WebUntis in a moment.")
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
	s.renderError(w, r, http.StatusBadRequest, "This sign-in link was already used",
		"Each sign-in link from WebUntis works once, and this one was used already (for example by going Back to it or reloading the page). Nothing is wrong with your account or your browser: open the app again from WebUntis.")
}

// flowCookieMissing answers a callback without its flow cookie. In an iFrame that is almost
// always the browser blocking third-party cookies: the flow is found by its state so that the
// page can offer to start the same launch again in a new tab, where the cookies are first-party.
func (s *Server) flowCookieMissing(w http.ResponseWriter, r *http.Request, state string) {
	ctx := r.Context()
	l, found, err := s.sso.Abandon(ctx, state)
	if err != nil {
		s.log.WarnContext(ctx, "look up flow by state", "request_id", RequestID(ctx), "err", err)
	}
	s.log.WarnContext(ctx, "sign-in refused", "request_id", RequestID(ctx), "tenant_id", l.TenantID,
		"reason", "no_flow_cookie", "embed_mode", s.embedMode)
	p := page{Page: "cookie_blocked", Title: "Sign-in needs cookies", RequestID: RequestID(ctx), Embed: s.embedMode}
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
func (s *Server) explainEnded(r *http.Request, tenantID, heading, message string) (string, string) {
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
		return "This app is switched off for your school",
			"The provider of this app has switched it off for your school; nobody at your school did. Your school's WebUntis administrator can ask the app's support why, and to switch it on again (quote the reference below). Then open the app from WebUntis."
	case end.Deletion:
		return "This app was removed from your school",
			"Your school's WebUntis administrator has removed this app from your school in the Untis Platform. If you need it, ask them to add it again; then open it from WebUntis."
	}
	return heading, "Your school's WebUntis administrator has deactivated this app in the Untis Platform. If you need it, ask them to activate it again; then open it from WebUntis."
}

// explain turns a sign-in failure into a status and words for the user. Every status is a 4xx
// (the contract promises a 4xx page when a check fails), except our own store failing (503).
func explain(e *sso.Error) (int, string, string) {
	switch e.Kind {
	case sso.KindUnknownSchool:
		return http.StatusNotFound, "Your school has not set up this app",
			"Your school has not activated this app yet, or its activation has not reached us. Ask your school's WebUntis administrator to activate the app in the Untis Platform, then open it again from WebUntis."
	case sso.KindSchoolInactive:
		return http.StatusForbidden, "This app is switched off for your school",
			"This app is not switched on for your school at the moment. Ask your school's WebUntis administrator: they can activate it in the Untis Platform, or ask the app's support."
	case sso.KindFlowMissing:
		return http.StatusBadRequest, "Sign-in could not be completed",
			"This sign-in was already used, or it was started in another browser or tab. Open the app again from WebUntis."
	case sso.KindFlowExpired:
		return http.StatusBadRequest, "Sign-in took too long",
			"The sign-in was started more than 10 minutes ago. Open the app again from WebUntis."
	case sso.KindPlatformError:
		return explainPlatformError(e.Code)
	case sso.KindMisconfigured:
		// Not a security warning: nobody attacked the user, the school's connection is wrong
		// (typically a wrong or outdated OIDC secret), and someone other than the user can fix it.
		return http.StatusFailedDependency, "This app's connection to your school needs attention",
			"The connection between your school's WebUntis and this app is not set up correctly at the moment, so you could not be signed in. Nothing is wrong with your account and you did nothing wrong. Your school's WebUntis administrator or the provider of this app can fix it (for example by resetting the app's credentials in the Untis Platform); please tell one of them, quoting the reference below."
	case sso.KindRejected:
		return http.StatusForbidden, "Sign-in could not be verified",
			"The answer from WebUntis did not pass our security checks, so you were not signed in. Open the app again from WebUntis; if this keeps happening, contact support and quote the reference below."
	}
	if e.Reason == "store" || e.Reason == "internal" {
		return http.StatusServiceUnavailable, "The app is having trouble",
			"The app could not sign you in because of a problem on our side. Please try again in a moment."
	}
	// The platform failed or could not be reached: 424, the request depended on one that failed.
	return http.StatusFailedDependency, "WebUntis is not answering",
		"We could not reach WebUntis to sign you in. Please try again in a moment."
}

func explainPlatformError(code string) (int, string, string) {
	switch code {
	case "access_denied":
		return http.StatusForbidden, "WebUntis did not allow the sign-in",
			"WebUntis refused to sign you in to this app (access denied). The app may not be switched on for your school or your role; ask your school's WebUntis administrator."
	case "invalid_ressource", "invalid_resource", "invalid_redirect_uri":
		return http.StatusBadRequest, "This app's sign-in address is not set up correctly",
			"WebUntis refused the sign-in because this app's address does not match the one registered for it (" + code + "). This is a configuration problem of the app's provider, not of your account: please tell the app's support, quoting the reference below."
	case "login_required", "interaction_required":
		return http.StatusUnauthorized, "You are not signed in to WebUntis",
			"Sign in to WebUntis first, then open the app from the menu there."
	case "server_error", "temporarily_unavailable":
		return http.StatusFailedDependency, "WebUntis could not sign you in just now",
			"WebUntis reported a temporary problem. Please try again in a moment."
	case "invalid_client", "unauthorized_client":
		return http.StatusBadRequest, "This app is not registered correctly for your school",
			"WebUntis does not recognise this app for your school (" + code + "). Ask your school's WebUntis administrator to check the app's activation, or contact the app's support quoting the reference below."
	}
	return http.StatusBadRequest, "WebUntis could not sign you in",
		"WebUntis refused the sign-in (" + code + "). Open the app again from WebUntis; if this keeps happening, contact support and quote the reference below."
}

// launchItem is one line of the launch context shown on the home page.
type launchItem struct{ Label, Value string }

var launchLabels = map[string]string{
	"school": "School (as WebUntis named it)", "lesson_id": "Lesson", "period_id": "Period",
	"class_ids": "Classes", "subject_ids": "Subjects", "exam_id": "Examination",
	"date": "Date", "start": "Start", "end": "End",
}

var launchOrder = []string{"school", "lesson_id", "period_id", "date", "start", "end", "class_ids", "subject_ids", "exam_id"}

// launchItems lists the launch context for display: the known parameters in a fixed order with
// labels, then the others by name.
func launchItems(ctx map[string]string) []launchItem {
	var out []launchItem
	for _, k := range launchOrder {
		if v, ok := ctx[k]; ok {
			out = append(out, launchItem{launchLabels[k], v})
		}
	}
	var rest []string
	for k := range ctx {
		if _, known := launchLabels[k]; !known {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, launchItem{k, ctx[k]})
	}
	return out
}

// entryPoint names where in WebUntis the launch came from.
func entryPoint(ctx map[string]string) string {
	switch {
	case ctx["lesson_id"] != "":
		return "the details of a lesson"
	case ctx["exam_id"] != "":
		return "an examination"
	}
	return "the WebUntis menu"
}
