package httpserver

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
)

// maxFormBody bounds every form post: the largest, the setup form, has at most a few dozen
// fields of at most 2,000 characters.
const maxFormBody = 256 << 10

// formField is one setup field with what the page shows for it.
type formField struct {
	setup.Field
	Value   string
	Checked bool
	Problem string
}

// handleSetup is where a school admin answers the deployment's setup fields (onboarding scenario
// 2): while the school is pending setup, and later to review and change the answers. The school
// comes from the session only; nothing in the form can name another.
func (s *Server) handleSetup(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.setupSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	answers, err := s.store.SetupAnswers(ctx, sess.TenantID)
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	p := s.setupPage(sess, answers, nil)
	if r.URL.Query().Get("saved") == "1" {
		p.Notice = "Saved."
	}
	s.render(w, r, http.StatusOK, p)
}

func (s *Server) handleSetupPost(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.setupSession(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The form could not be read", "Please open the setup page again and send the form from there.")
		return
	}
	if !session.ValidCSRF(sess, r.PostForm.Get("csrf")) {
		s.log.WarnContext(ctx, "setup form refused: CSRF token", "request_id", RequestID(ctx), "tenant_id", sess.TenantID)
		s.renderError(w, r, http.StatusForbidden, "The form has expired",
			"For your safety the form only works from the page it came from. Open the setup page again and send it from there.")
		return
	}
	state, problems, err := s.onboard.SaveSetup(ctx, sess.TenantID, r.PostForm, "school admin "+sess.Sub)
	if errors.Is(err, store.ErrNotFound) {
		s.renderError(w, r, http.StatusForbidden, "Your school is not active",
			"The app is not active for your school any more, so its setup cannot be changed.")
		return
	}
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	if len(problems) > 0 {
		// Show what was sent, with a message next to each wrong field; nothing was stored.
		sent := map[string]string{}
		for _, f := range s.onboard.Fields() {
			sent[f.Name] = r.PostForm.Get(f.Name)
		}
		s.render(w, r, http.StatusBadRequest, s.setupPage(sess, sent, problems))
		return
	}
	s.log.InfoContext(ctx, "setup saved", "request_id", RequestID(ctx), "tenant_id", sess.TenantID, "state", state)
	if sess.TenantState == store.StatePendingSetup && state == store.StateActive {
		http.Redirect(w, r, "/", http.StatusSeeOther) // the school is ready: show the app
		return
	}
	http.Redirect(w, r, "/setup?saved=1", http.StatusSeeOther)
}

// setupSession returns the session of a school admin, or answers the request itself.
func (s *Server) setupSession(w http.ResponseWriter, r *http.Request) (*store.Session, bool) {
	sess, err := s.loadSession(r)
	if errors.Is(err, session.ErrNoSession) {
		s.renderError(w, r, http.StatusUnauthorized, "Open this app from Untis",
			"Setting up the app needs you to be signed in: open it from the WebUntis menu as your school's administrator.")
		return nil, false
	}
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return nil, false
	}
	if sess.User.Role != platform.RoleAdministrator {
		s.renderError(w, r, http.StatusForbidden, "Only your school's administrator can do this",
			"Setting up the app for your school is done by a WebUntis administrator of your school. If your school is still being set up, please ask them.")
		return nil, false
	}
	return sess, true
}

func (s *Server) setupPage(sess *store.Session, values, problems map[string]string) page {
	p := page{Page: "setup", Title: "Set up the app", Session: sess, CSRF: session.CSRFToken(sess),
		Pending: sess.TenantState == store.StatePendingSetup, Problems: problems}
	for _, f := range s.onboard.Fields() {
		ff := formField{Field: f, Value: values[f.Name], Problem: problems[f.Name]}
		if f.Type == setup.TypeCheckbox {
			ff.Checked = ff.Value == "true" || ff.Value == "on"
		}
		p.Fields = append(p.Fields, ff)
	}
	return p
}

// Rate limits of /activate, both per client network (an IPv4 address or an IPv6 /64) and
// decaying, so the page cannot be used to try credentials at scale, nor to make the platform
// refuse our calls for a school, and no client can use up anyone else's attempts: a limit per
// school alone would let one client block every school's activation.
var (
	// activateNetworkLimit: 10 attempts from one network at once, then one a minute.
	activateNetworkLimit = store.Limit{Scope: "activate-network", Burst: 10, Every: time.Minute}
	// activateSchoolLimit: per school and network, 5 attempts at once, then one every 2 minutes.
	activateSchoolLimit = store.Limit{Scope: "activate-school", Burst: 5, Every: 2 * time.Minute}
)

// handleActivate shows the manual activation form (onboarding scenario 3): a school admin who
// got no webhook pastes the credentials WebUntis showed them.
func (s *Server) handleActivate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tid := q.Get("tenant_id")
	if tid == "" {
		tid = q.Get("tenantId")
	}
	if !store.ValidTenantID(tid) {
		tid = ""
	}
	s.render(w, r, http.StatusOK, page{Page: "activate", Title: "Activate the app for your school",
		CSRF: s.sessions.FormToken(w, r), Values: map[string]string{onboard.FieldTenantID: tid}})
}

func (s *Server) handleActivatePost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	reqID := RequestID(ctx)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, "The form could not be read", "Please open the activation page again and send the form from there.")
		return
	}
	form := r.PostForm
	c := onboard.Credentials{TenantID: form.Get(onboard.FieldTenantID), ClientID: form.Get(onboard.FieldClientID),
		Secret: form.Get(onboard.FieldSecret), Password: form.Get(onboard.FieldPassword)}
	// The page is shown again with what can be shown: never the secret or the password.
	again := func(status int, problems map[string]string, message string) {
		s.render(w, r, status, page{Page: "activate", Title: "Activate the app for your school",
			CSRF: s.sessions.FormToken(w, r), Problems: problems, Message: message,
			Values: map[string]string{onboard.FieldTenantID: c.TenantID, onboard.FieldClientID: c.ClientID}})
	}
	if !s.sessions.ValidFormToken(r, form.Get("csrf")) {
		s.log.WarnContext(ctx, "activation form refused: CSRF token", "request_id", reqID)
		again(http.StatusForbidden, nil, "The form had expired. Nothing was stored; please send it again.")
		return
	}
	c, err := onboard.Check(c)
	var inputErr *onboard.InputError
	if errors.As(err, &inputErr) {
		again(http.StatusBadRequest, inputErr.Problems, "Some values are missing or not in the expected form. Nothing was stored.")
		return
	}
	if wait, err := s.activateLimited(r, c.TenantID); err != nil {
		s.storeTrouble(w, r, err, false)
		return
	} else if wait > 0 {
		s.log.WarnContext(ctx, "activation rate-limited", "request_id", reqID, "tenant_id", c.TenantID, "client_ip", ClientIP(ctx))
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
		again(http.StatusTooManyRequests, nil, "Too many attempts from your network. Nothing was stored; please wait "+waitWords(wait)+" and try again.")
		return
	}
	res, err := s.onboard.Activate(ctx, c, store.SourceManual, "activation page")
	var proofErr *onboard.ProofError
	switch {
	case errors.As(err, &proofErr):
		s.log.InfoContext(ctx, "activation refused by the platform", "request_id", reqID, "tenant_id", c.TenantID, "field", proofErr.Field, "err", proofErr.Err)
		status, problems := proofAnswer(proofErr)
		again(status, problems, "Nothing was stored: "+proofErr.Message+".")
		return
	case errors.Is(err, store.ErrEndedByOperator):
		s.log.WarnContext(ctx, "activation refused: the school was deactivated by an operator", "request_id", reqID, "tenant_id", c.TenantID)
		again(http.StatusForbidden, nil, "Nothing was stored: the app's operator deactivated the app for this school. Please contact them.")
		return
	case s.invalidTextAnswered(w, r, err, false):
		return
	case err != nil:
		s.log.ErrorContext(ctx, "activation not stored", "request_id", reqID, "tenant_id", c.TenantID, "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, "The app is having trouble",
			"The credentials were accepted by the platform but could not be stored just now. Nothing was stored; please try again in a moment.")
		return
	}
	s.log.InfoContext(ctx, "school activated by hand", "request_id", reqID, "tenant_id", c.TenantID, "state", res.State, "credentials_version", res.Version)
	s.render(w, r, http.StatusOK, page{Page: "activated", Title: "The app is activated", State: res.State, Values: map[string]string{onboard.FieldTenantID: c.TenantID}})
}

// proofAnswer is the status and the per-field problems of a form whose credentials the platform
// refused: 400 with the refused field marked where the platform's answer tells, 424 when the
// platform could not check them at all.
func proofAnswer(e *onboard.ProofError) (int, map[string]string) {
	if e.Field == "" {
		return http.StatusFailedDependency, map[string]string{}
	}
	if len(e.Problems) > 0 {
		return http.StatusBadRequest, e.Problems
	}
	return http.StatusBadRequest, map[string]string{e.Field: "was refused by the platform"}
}

// activateLimited counts the attempt against both limits and returns how long to wait when one
// is exceeded (0 when the attempt may go ahead).
func (s *Server) activateLimited(r *http.Request, tenantID string) (time.Duration, error) {
	ctx := r.Context()
	now, network := s.now(), limitKey(ClientIP(ctx))
	wait, err := s.store.Attempt(ctx, activateNetworkLimit, "", network, now)
	// A network over its limit does not count against the school.
	if err != nil || wait > 0 {
		return wait, err
	}
	return s.store.Attempt(ctx, activateSchoolLimit, tenantID, network, now)
}
