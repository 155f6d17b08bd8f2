package httpserver

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/store"
)

// loadSession returns the request's live session, or session.ErrNoSession (also when the server
// was built without sign-in, as some tests build it).
func (s *Server) loadSession(r *http.Request) (*store.Session, error) {
	if s.sessions == nil {
		return nil, session.ErrNoSession
	}
	return s.sessions.Load(r.Context(), r)
}

// storeTrouble answers a request whose session could not be checked because the store failed.
func (s *Server) storeTrouble(w http.ResponseWriter, r *http.Request, err error, asJSON bool) {
	if s.invalidTextAnswered(w, r, err, asJSON) {
		return
	}
	s.log.ErrorContext(r.Context(), "load session", "request_id", RequestID(r.Context()), "err", err)
	if asJSON {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"unavailable", "The app cannot check your sign-in just now; try again in a moment."})
		return
	}
	s.renderError(w, r, http.StatusServiceUnavailable, i18n.T("error.trouble.heading"), i18n.T("error.trouble.session"))
}

type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// me is the JSON of GET /api/me (contract.md).
type me struct {
	TenantID   string            `json:"tenantId"`
	Sub        string            `json:"sub"`
	Role       string            `json:"role"`
	GivenName  string            `json:"givenName"`
	FamilyName string            `json:"familyName"`
	Email      string            `json:"email"`
	Launch     map[string]string `json:"launch"`
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	sess, err := s.loadSession(r)
	if errors.Is(err, session.ErrNoSession) {
		writeJSON(w, http.StatusUnauthorized, apiError{"not_signed_in", "Open the app from Untis to sign in."})
		return
	}
	if err != nil {
		s.storeTrouble(w, r, err, true)
		return
	}
	launch := sess.Launch
	if launch == nil {
		launch = map[string]string{}
	}
	writeJSON(w, http.StatusOK, me{
		TenantID: sess.TenantID, Sub: sess.Sub, Role: sess.User.Role,
		GivenName: sess.User.GivenName, FamilyName: sess.User.FamilyName, Email: sess.User.Email,
		Launch: launch,
	})
}

// handleHome is the app: who is signed in, their school, and what they launched from, by name.
// Without a session it says to open the app from Untis.
func (s *Server) handleHome(w http.ResponseWriter, r *http.Request) {
	sess, err := s.loadSession(r)
	if errors.Is(err, session.ErrNoSession) {
		s.render(w, r, http.StatusOK, page{Page: "anonymous", Title: i18n.T("anonymous.heading")})
		return
	}
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	p := page{Page: "home", Session: sess, CSRF: session.CSRFToken(sess), IsAdmin: sess.User.Role == platform.RoleAdministrator}
	if sess.TenantState == store.StatePendingSetup {
		p.Page, p.Title = "pending_setup", i18n.T("pending.heading")
		s.render(w, r, http.StatusOK, p)
		return
	}
	p.School = s.schoolName(r.Context(), sess)
	p.EntryPoint, p.Context = s.launchContext(r.Context(), sess)
	s.render(w, r, http.StatusOK, p)
}

// schoolName is the school's name from the platform's OneRoster, fetched once and kept on the
// tenant. A platform failure only leaves the name out.
func (s *Server) schoolName(ctx context.Context, sess *store.Session) string {
	if sess.TenantName != "" || s.platform == nil {
		return sess.TenantName
	}
	for _, o := range sess.User.Orgs {
		// OneRoster 1.1 references a user's orgs with type "org" (GUIDRef); some send "school".
		if o.Type != "" && o.Type != "org" && o.Type != "school" {
			continue
		}
		lookup, cancel := context.WithTimeout(ctx, 3*time.Second)
		org, err := s.platform.For(sess.TenantID).School(lookup, o.SourcedID)
		cancel()
		if err != nil {
			s.log.InfoContext(ctx, "school name not available", "tenant_id", sess.TenantID, "err", err)
			return ""
		}
		if org.Name != "" {
			if err := s.store.SetTenantName(ctx, sess.TenantID, org.Name); err != nil {
				s.log.WarnContext(ctx, "record school name", "tenant_id", sess.TenantID, "err", err)
			}
		}
		return org.Name
	}
	return ""
}

// lesson looks up the lesson the user launched from (a OneRoster class), with the school's
// token, so the page can name it and its classes and subjects. The lesson id is only a hint: the
// platform answers for this school's lessons only. Answers are kept a while per school (the
// page is opened again and again from the same lesson); a failure names nothing.
func (s *Server) lesson(ctx context.Context, sess *store.Session) (platform.Class, bool) {
	id := sess.Launch["lesson_id"]
	if id == "" || s.platform == nil {
		return platform.Class{}, false
	}
	if cl, ok := s.names.lesson(sess.TenantID, id); ok {
		return cl, cl.SourcedID != ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := s.platform.For(sess.TenantID).Class(ctx, id)
	if err != nil {
		s.log.InfoContext(ctx, "lesson not available", "tenant_id", sess.TenantID, "err", err)
		if errors.Is(err, platform.ErrNotFound) {
			s.names.keepLesson(sess.TenantID, id, platform.Class{})
		}
		return platform.Class{}, false
	}
	s.names.keepLesson(sess.TenantID, id, cl)
	return cl, true
}

// handleLogout ends the session. WebUntis calls it (its Logout-Path) from its own pages,
// cross-origin with credentials, when the user logs out there: the platform's origins get CORS
// answers. There is deliberately no CSRF check: a forged logout can only sign someone out, and
// the platform's call cannot carry our token.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if s.platformCORS(w, r, "GET, POST") {
		return
	}
	if s.sessions == nil {
		s.render(w, r, http.StatusOK, page{Page: "signed_out", Title: i18n.T("signed_out.heading")})
		return
	}
	ended, err := s.sessions.End(r.Context(), w, r)
	if err != nil {
		s.log.ErrorContext(r.Context(), "end session", "request_id", RequestID(r.Context()), "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, i18n.T("error.signout.heading"), i18n.T("error.signout.text"))
		return
	}
	navigation := s.isNavigation(r)
	if ended {
		s.log.InfoContext(r.Context(), "signed out", "request_id", RequestID(r.Context()), "by_script", !navigation)
	}
	// A script's call (the platform's, or our front end's) gets no page; a person gets one.
	if !navigation {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.render(w, r, http.StatusOK, page{Page: "signed_out", Title: i18n.T("signed_out.heading")})
}

// isNavigation tells a person's request (a button, a link, a typed address: the browser shows the
// answer) from a script's (fetch or XMLHttpRequest, whose answer no one sees). Every current
// browser says which in Sec-Fetch-Mode. The Origin header cannot tell: our pages send
// Referrer-Policy no-referrer, under which Chromium posts our own Sign out form with
// "Origin: null". Without Sec-Fetch-Mode (older browsers, curl), a request from another site's
// origin counts as a script's.
func (s *Server) isNavigation(r *http.Request) bool {
	switch mode := r.Header.Get("Sec-Fetch-Mode"); mode {
	case "navigate", "nested-navigate": // the second: Chromium before 80, for frames
		return true
	case "":
		origin := r.Header.Get("Origin")
		return origin == "" || origin == "null" || origin == s.origin
	}
	return false
}
