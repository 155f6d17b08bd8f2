package httpserver

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/store"
)

// The operator console (/admin): the partner's staff see every school with its state, last
// webhook, credential health and user and session counts; a school's detail with its audit trail;
// they enter credentials by hand and deactivate schools. Secrets are write-only here: a page says
// when and how credentials were set, never what they are.

// adminPageSize is how many schools one page of the list shows.
const adminPageSize = 100

// answer is one setup answer as the console shows it.
type answer struct{ Name, Value string }

// requireOperator is the console's middleware: without a live console session, pages go to the
// sign-in form. The session is in the request's context for the handlers.
func (s *Server) requireOperator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		os, err := s.operators.Load(r.Context(), r)
		if errors.Is(err, operator.ErrNoSession) {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
				return
			}
			s.renderError(w, r, http.StatusUnauthorized, i18n.T("console.ended.heading"), i18n.T("console.ended.text"))
			return
		}
		if err != nil {
			s.storeTrouble(w, r, err, false)
			return
		}
		if r.Method == http.MethodPost {
			if err := r.ParseForm(); err != nil || !operator.ValidCSRF(os, r.PostForm.Get("csrf")) {
				s.log.WarnContext(r.Context(), "console form refused: CSRF token", "request_id", RequestID(r.Context()), "operator", os.Email)
				s.renderError(w, r, http.StatusForbidden, i18n.T("error.form_expired.heading"), i18n.T("error.form.again"))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(withOperator(r.Context(), os)))
	})
}

func (s *Server) handleAdminLogin(w http.ResponseWriter, r *http.Request) {
	if _, err := s.operators.Load(r.Context(), r); err == nil {
		http.Redirect(w, r, "/admin", http.StatusSeeOther)
		return
	}
	s.render(w, r, http.StatusOK, page{Page: "admin_login", Title: i18n.T("console.login.heading"), CSRF: s.sessions.FormToken(w, r), Console: true, Home: "/admin"})
}

func (s *Server) handleAdminLoginPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		s.renderError(w, r, http.StatusBadRequest, i18n.T("error.form_unreadable.heading"), i18n.T("error.form.again"))
		return
	}
	email := r.PostForm.Get("email")
	again := func(status int, msg i18n.Text) {
		s.render(w, r, status, page{Page: "admin_login", Title: i18n.T("console.login.heading"), CSRF: s.sessions.FormToken(w, r),
			Message: msg, Values: map[string]string{"email": email}, Console: true, Home: "/admin"})
	}
	if !s.sessions.ValidFormToken(r, r.PostForm.Get("csrf")) {
		again(http.StatusForbidden, i18n.T("console.login.expired"))
		return
	}
	os, err := s.operators.SignIn(ctx, w, email, r.PostForm.Get("password"), limitKey(ClientIP(ctx)))
	var limited *operator.RateLimitedError
	switch {
	case err == nil:
		s.log.InfoContext(ctx, "operator signed in", "request_id", RequestID(ctx), "operator", os.Email)
		http.Redirect(w, r, "/admin", http.StatusSeeOther)
	case errors.Is(err, operator.ErrBadCredentials):
		// One message for both: the page does not tell which accounts exist.
		s.log.WarnContext(ctx, "operator sign-in refused", "request_id", RequestID(ctx), "client_ip", ClientIP(ctx), "reason", err.Error())
		again(http.StatusUnauthorized, i18n.T("console.login.wrong"))
	case errors.As(err, &limited):
		s.log.WarnContext(ctx, "operator sign-in rate-limited", "request_id", RequestID(ctx), "client_ip", ClientIP(ctx), "reason", err.Error())
		w.Header().Set("Retry-After", strconv.Itoa(int(limited.RetryAfter.Seconds())))
		if limited.Account {
			// Counted for addresses without an account too: this says nothing about which exist.
			again(http.StatusTooManyRequests, i18n.T("console.login.limited_account", "Wait", waitWords(limited.RetryAfter),
				"Command", "server operator unlock "+operator.NormalizeEmail(email)))
			return
		}
		again(http.StatusTooManyRequests, i18n.T("console.login.limited_network", "Wait", waitWords(limited.RetryAfter)))
	default:
		s.storeTrouble(w, r, err, false)
	}
}

func (s *Server) handleAdminLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.operators.SignOut(r.Context(), w, r); err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	s.setFlash(w, "console_out")
	http.Redirect(w, r, "/admin/login", http.StatusSeeOther)
}

// handleAdminTenants lists the schools, a page at a time (?after=ID), or opens the school named
// by ?tenant_id= (the "find a school" form).
func (s *Server) handleAdminTenants(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if tid := r.URL.Query().Get("tenant_id"); tid != "" {
		if !store.ValidTenantID(tid) {
			s.renderError(w, r, http.StatusBadRequest, i18n.T("console.bad_tenant.heading"), i18n.T("console.bad_tenant.text"))
			return
		}
		http.Redirect(w, r, "/admin/tenants/"+url.PathEscape(tid), http.StatusSeeOther)
		return
	}
	after := r.URL.Query().Get("after")
	list, err := s.store.ListTenants(ctx, after, adminPageSize+1, time.Now())
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	p := s.adminPage(r, "admin_tenants", i18n.T("console.schools.heading"))
	if len(list) > adminPageSize {
		list = list[:adminPageSize]
		p.NextAfter = list[len(list)-1].ID
	}
	p.Tenants = list
	if c, err := s.store.CountEvents(ctx); err == nil {
		p.FailedEvents = c.Failed
	}
	s.render(w, r, http.StatusOK, p)
}

// handleAdminTenant shows one school: its state, credentials (when and how set, never what),
// health, setup answers and audit trail, and the forms to enter credentials or deactivate it. A
// school we do not know yet gets the credentials form only (manual activation).
func (s *Server) handleAdminTenant(w http.ResponseWriter, r *http.Request) {
	s.renderAdminTenant(w, r, http.StatusOK, page{})
}

// renderAdminTenant shows a school's page; with answers to a form the page says what was wrong
// (the credentials form's message and fields, or the deactivation's).
func (s *Server) renderAdminTenant(w http.ResponseWriter, r *http.Request, status int, answered page) {
	ctx := r.Context()
	tid := chi.URLParam(r, "tenantID")
	if !store.ValidTenantID(tid) {
		s.renderError(w, r, http.StatusNotFound, i18n.T("console.no_school.heading"), i18n.T("console.no_school.text"))
		return
	}
	p := s.adminPage(r, "admin_tenant", i18n.T("console.school.heading", "Tenant", tid))
	p.TenantID, p.Message, p.Problems, p.DeactivateProblem = tid, answered.Message, answered.Problems, answered.DeactivateProblem
	values := map[string]string{}
	if p.Problems != nil {
		values[onboard.FieldClientID] = r.PostForm.Get(onboard.FieldClientID)
	}
	p.CredFields = credFields("c", false, values, p.Problems)
	ts, err := s.store.TenantSummary(ctx, tid, time.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		if status == http.StatusOK {
			status = http.StatusNotFound
		}
	case err != nil:
		s.storeTrouble(w, r, err, false)
		return
	default:
		p.Tenant = &ts
		answers, err := s.store.SetupAnswers(ctx, tid)
		if err != nil {
			s.storeTrouble(w, r, err, false)
			return
		}
		for _, f := range s.onboard.Fields() {
			if v, ok := answers[f.Name]; ok {
				p.Answers = append(p.Answers, answer{Name: f.Label, Value: v})
			}
		}
	}
	if p.SchoolEvents, err = s.store.ListEvents(ctx, store.EventFilter{TenantID: tid, Limit: 20}); err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	events, err := s.store.AuditTrail(ctx, tid, 100)
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	p.Audit = auditRows(events, s.onboard.Fields())
	s.render(w, r, status, p)
}

// handleAdminCredentials is manual credential entry by an operator: proved with the platform
// first, like /activate, then stored with the operator named in the audit trail. The school is
// the one in the path; a tenantId in the form is ignored.
func (s *Server) handleAdminCredentials(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	os := operatorFrom(ctx)
	tid := chi.URLParam(r, "tenantID")
	f := r.PostForm
	res, err := s.onboard.Activate(ctx, onboard.Credentials{TenantID: tid, ClientID: f.Get(onboard.FieldClientID),
		Secret: f.Get(onboard.FieldSecret), Password: f.Get(onboard.FieldPassword)}, store.SourceOperator, "operator "+os.Email)
	var (
		inputErr *onboard.InputError
		proofErr *onboard.ProofError
	)
	switch {
	case errors.As(err, &inputErr):
		s.renderAdminTenant(w, r, http.StatusBadRequest, page{Message: i18n.T("console.credentials.input_problems"), Problems: inputErr.Problems})
	case errors.As(err, &proofErr):
		s.log.InfoContext(ctx, "operator's credentials refused by the platform", "request_id", RequestID(ctx), "tenant_id", tid, "operator", os.Email, "err", proofErr.Err)
		// The audit trail keeps the reason's message id: the console shows it in its reader's language.
		_ = s.store.AuditOperator(ctx, tid, "operator "+os.Email, "credentials.refused", map[string]any{"reason": proofErr.Message.ID})
		status, problems := proofAnswer(proofErr)
		s.renderAdminTenant(w, r, status, page{Message: i18n.T("activate.refused", "Reason", proofErr.Message), Problems: problems})
	case err != nil:
		s.log.ErrorContext(ctx, "operator's credentials not stored", "request_id", RequestID(ctx), "tenant_id", tid, "err", err)
		s.storeTrouble(w, r, err, false)
	default:
		s.log.InfoContext(ctx, "credentials entered by an operator", "request_id", RequestID(ctx), "tenant_id", tid, "operator", os.Email,
			"credentials_version", res.Version, "state", res.State)
		s.setFlash(w, "credentials", tid, strconv.Itoa(res.Version), res.State)
		http.Redirect(w, r, "/admin/tenants/"+url.PathEscape(tid), http.StatusSeeOther)
	}
}

// handleAdminDeactivate deactivates the school in the path, as a DEACTIVATION webhook would.
func (s *Server) handleAdminDeactivate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	os := operatorFrom(ctx)
	tid := chi.URLParam(r, "tenantID")
	if r.PostForm.Get("confirm") != tid {
		s.renderAdminTenant(w, r, http.StatusBadRequest, page{DeactivateProblem: i18n.T("console.deactivate.not_confirmed")})
		return
	}
	out, err := s.onboard.Deactivate(ctx, tid, "operator "+os.Email, r.PostForm.Get("reason"))
	if errors.Is(err, store.ErrNotFound) {
		s.renderError(w, r, http.StatusNotFound, i18n.T("console.no_school.heading"), i18n.T("console.no_school.text"))
		return
	}
	if err != nil {
		s.storeTrouble(w, r, err, false)
		return
	}
	s.log.InfoContext(ctx, "school deactivated by an operator", "request_id", RequestID(ctx), "tenant_id", tid, "operator", os.Email,
		"sessions_ended", out.SessionsEnded)
	if out.SessionsEnded > 0 {
		s.setFlash(w, "deactivated", tid, strconv.FormatInt(out.SessionsEnded, 10))
	} else {
		s.setFlash(w, "deactivated0", tid)
	}
	http.Redirect(w, r, "/admin/tenants/"+url.PathEscape(tid), http.StatusSeeOther)
}

func (s *Server) adminPage(r *http.Request, name string, title i18n.Text) page {
	os := operatorFrom(r.Context())
	return page{Page: name, Title: title, Operator: os.Email, CSRF: string(os.CSRFToken), Console: true, Home: "/admin", Wide: true}
}

type operatorKey struct{}

func withOperator(ctx context.Context, os *store.OperatorSession) context.Context {
	return context.WithValue(ctx, operatorKey{}, os)
}

// operatorFrom is the console session requireOperator put in the context.
func operatorFrom(ctx context.Context) *store.OperatorSession {
	os, _ := ctx.Value(operatorKey{}).(*store.OperatorSession)
	if os == nil {
		return &store.OperatorSession{}
	}
	return os
}
