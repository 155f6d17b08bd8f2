package httpserver

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/untis-partner/server/internal/i18n"
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
	Problem i18n.Text
}

// credField is one field of a credentials form (manual activation, the console's entry): the
// input's id and name, its label (a message id), and what the page shows in it. Secrets are
// never shown again: only the tenant id and the client id keep their value.
type credField struct {
	ID, Name, Label, Type string
	Value                 string
	Numeric               bool
	Problem               i18n.Text
}

// credFields are a credentials form's fields; prefix makes the inputs' ids ("a" for /activate,
// "c" for the console, which has no tenant field).
func credFields(prefix string, withTenant bool, values map[string]string, problems map[string]i18n.Text) []credField {
	var out []credField
	if withTenant {
		out = append(out, credField{ID: prefix + "-tenant", Name: onboard.FieldTenantID, Label: "form.tenant_id", Numeric: true,
			Value: values[onboard.FieldTenantID], Problem: problems[onboard.FieldTenantID]})
	}
	return append(out,
		credField{ID: prefix + "-client", Name: onboard.FieldClientID, Label: "form.client_id",
			Value: values[onboard.FieldClientID], Problem: problems[onboard.FieldClientID]},
		credField{ID: prefix + "-secret", Name: onboard.FieldSecret, Label: "form.secret", Type: "password",
			Problem: problems[onboard.FieldSecret]},
		credField{ID: prefix + "-password", Name: onboard.FieldPassword, Label: "form.password", Type: "password",
			Problem: problems[onboard.FieldPassword]},
	)
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
	p := s.setupPage(r, sess, answers, nil)
	if r.URL.Query().Get("saved") == "1" {
		p.Flash = i18n.T("setup.flash.saved") // a fixed word chosen by the query, nothing more
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
		s.renderError(w, r, http.StatusBadRequest, i18n.T("error.form_unreadable.heading"), i18n.T("error.form.again"))
		return
	}
	if !session.ValidCSRF(sess, r.PostForm.Get("csrf")) {
		s.log.WarnContext(ctx, "setup form refused: CSRF token", "request_id", RequestID(ctx), "tenant_id", sess.TenantID)
		s.renderError(w, r, http.StatusForbidden, i18n.T("error.form_expired.heading"), i18n.T("error.form_expired.setup"))
		return
	}
	state, problems, err := s.onboard.SaveSetup(ctx, sess.TenantID, r.PostForm, "school admin "+sess.Sub)
	if errors.Is(err, store.ErrNotFound) {
		s.renderError(w, r, http.StatusForbidden, i18n.T("setup.inactive.heading"), i18n.T("setup.inactive.text"))
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
		s.render(w, r, http.StatusBadRequest, s.setupPage(r, sess, sent, problems))
		return
	}
	s.log.InfoContext(ctx, "setup saved", "request_id", RequestID(ctx), "tenant_id", sess.TenantID, "state", state)
	if sess.TenantState == store.StatePendingSetup && state == store.StateActive {
		s.setFlash(w, "setup_done")
		http.Redirect(w, r, "/", http.StatusSeeOther) // the school is ready: show the app
		return
	}
	http.Redirect(w, r, "/setup?saved=1", http.StatusSeeOther)
}

// setupSession returns the session of a school admin, or answers the request itself.
func (s *Server) setupSession(w http.ResponseWriter, r *http.Request) (*store.Session, bool) {
	sess, err := s.loadSession(r)
	if errors.Is(err, session.ErrNoSession) {
		s.renderError(w, r, http.StatusUnauthorized, i18n.T("anonymous.heading"), i18n.T("setup.signed_out.text"))
		return nil, false
	}
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return nil, false
	}
	if sess.User.Role != platform.RoleAdministrator {
		s.renderError(w, r, http.StatusForbidden, i18n.T("setup.not_admin.heading"), i18n.T("setup.not_admin.text"))
		return nil, false
	}
	return sess, true
}

func (s *Server) setupPage(r *http.Request, sess *store.Session, values map[string]string, problems map[string]i18n.Text) page {
	p := page{Page: "setup", Title: i18n.T("setup.heading"), Session: sess, CSRF: session.CSRFToken(sess),
		Pending: sess.TenantState == store.StatePendingSetup, Problems: problems}
	// The deployment's own words for its fields, in the page's language where it gave them.
	lang := s.chooseLanguage(r, sess.TenantLanguage).String()
	for _, f := range s.onboard.Fields() {
		f = f.In(lang)
		ff := formField{Field: f, Value: values[f.Name], Problem: problems[f.Name]}
		if ff.Problem.ID == "problem.pattern_help" {
			ff.Problem = i18n.T("problem.pattern_help", "Help", f.PatternHelp)
		}
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
	s.render(w, r, http.StatusOK, page{Page: "activate", Title: i18n.T("activate.heading"), CSRF: s.sessions.FormToken(w, r),
		CredFields: credFields("a", true, map[string]string{onboard.FieldTenantID: tid}, nil)})
}

func (s *Server) handleActivatePost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	reqID := RequestID(ctx)
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, i18n.T("error.form_unreadable.heading"), i18n.T("error.form.again"))
		return
	}
	form := r.PostForm
	c := onboard.Credentials{TenantID: form.Get(onboard.FieldTenantID), ClientID: form.Get(onboard.FieldClientID),
		Secret: form.Get(onboard.FieldSecret), Password: form.Get(onboard.FieldPassword)}
	// The page is shown again with what can be shown: never the secret or the password.
	again := func(status int, problems map[string]i18n.Text, message i18n.Text) {
		s.render(w, r, status, page{Page: "activate", Title: i18n.T("activate.heading"),
			CSRF: s.sessions.FormToken(w, r), Problems: problems, Message: message,
			CredFields: credFields("a", true, map[string]string{onboard.FieldTenantID: c.TenantID, onboard.FieldClientID: c.ClientID}, problems)})
	}
	if !s.sessions.ValidFormToken(r, form.Get("csrf")) {
		s.log.WarnContext(ctx, "activation form refused: CSRF token", "request_id", reqID)
		again(http.StatusForbidden, nil, i18n.T("activate.expired"))
		return
	}
	c, err := onboard.Check(c)
	var inputErr *onboard.InputError
	if errors.As(err, &inputErr) {
		again(http.StatusBadRequest, inputErr.Problems, i18n.T("activate.input_problems"))
		return
	}
	if wait, err := s.activateLimited(r, c.TenantID); err != nil {
		s.storeTrouble(w, r, err, false)
		return
	} else if wait > 0 {
		s.log.WarnContext(ctx, "activation rate-limited", "request_id", reqID, "tenant_id", c.TenantID, "client_ip", ClientIP(ctx))
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())))
		again(http.StatusTooManyRequests, nil, i18n.T("activate.limited", "Wait", waitWords(wait)))
		return
	}
	res, err := s.onboard.Activate(ctx, c, store.SourceManual, "activation page")
	var proofErr *onboard.ProofError
	switch {
	case errors.As(err, &proofErr):
		s.log.InfoContext(ctx, "activation refused by the platform", "request_id", reqID, "tenant_id", c.TenantID, "field", proofErr.Field, "err", proofErr.Err)
		status, problems := proofAnswer(proofErr)
		again(status, problems, i18n.T("activate.refused", "Reason", proofErr.Message))
		return
	case errors.Is(err, store.ErrEndedByOperator):
		s.log.WarnContext(ctx, "activation refused: the school was deactivated by an operator", "request_id", reqID, "tenant_id", c.TenantID)
		again(http.StatusForbidden, nil, i18n.T("activate.ended_by_operator"))
		return
	case s.invalidTextAnswered(w, r, err, false):
		return
	case err != nil:
		s.log.ErrorContext(ctx, "activation not stored", "request_id", reqID, "tenant_id", c.TenantID, "err", err)
		s.renderError(w, r, http.StatusServiceUnavailable, i18n.T("error.trouble.heading"), i18n.T("activate.not_stored"))
		return
	}
	s.log.InfoContext(ctx, "school activated by hand", "request_id", reqID, "tenant_id", c.TenantID, "state", res.State, "credentials_version", res.Version)
	s.render(w, r, http.StatusOK, page{Page: "activated", Title: i18n.T("activated.heading"), State: res.State, TenantID: c.TenantID})
}

// proofAnswer is the status and the per-field problems of a form whose credentials the platform
// refused: 400 with the refused field marked where the platform's answer tells, 424 when the
// platform could not check them at all.
func proofAnswer(e *onboard.ProofError) (int, map[string]i18n.Text) {
	if e.Field == "" {
		return http.StatusFailedDependency, map[string]i18n.Text{}
	}
	if len(e.Problems) > 0 {
		return http.StatusBadRequest, e.Problems
	}
	return http.StatusBadRequest, map[string]i18n.Text{e.Field: i18n.T("problem.refused")}
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
