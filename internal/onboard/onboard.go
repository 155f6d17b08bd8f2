// Package onboard runs the school lifecycle: verified webhooks (CREATED, REACTIVATED, RESET,
// DEACTIVATION, DELETION), manual activation with credentials proved by the platform first, the
// setup answers of onboarding scenario 2, and an operator's deactivation. Every change is one
// durable transaction in the store (ledger, change, audit); this package decides what the change
// is and drops this replica's caches at once (other replicas hear it from the store).
package onboard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/discovery"
	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// Service applies lifecycle changes.
type Service struct {
	store    *store.Store
	platform *platform.Clients
	fields   setup.Fields
	log      *slog.Logger
	// drop forgets what this replica caches of a school besides its token (the sign-in's
	// discovery and keys: sso.Service.Invalidate).
	drop []func(tenantID string)
}

// New builds a Service. fields are the deployment's setup fields (nil: none); drop are called
// with a school's id after every change of it, to forget this replica's caches at once.
func New(st *store.Store, clients *platform.Clients, fields setup.Fields, log *slog.Logger, drop ...func(tenantID string)) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: st, platform: clients, fields: fields, log: log, drop: drop}
}

// Fields are the deployment's setup fields (empty when it asks none).
func (s *Service) Fields() setup.Fields { return s.fields }

// setupCheck is the store's test of a complete setup; nil when no field is asked.
func (s *Service) setupCheck() store.SetupCheck {
	if len(s.fields) == 0 {
		return nil
	}
	return s.fields.Complete
}

// Receive applies a verified, parsed webhook whose raw body was body. An exact duplicate of a
// body already received changes nothing (Outcome.Duplicate).
func (s *Service) Receive(ctx context.Context, ev webhook.Event, body []byte) (store.Outcome, error) {
	sum := sha256.Sum256(body)
	rc := store.Receipt{TenantID: ev.TenantID, BodySHA256: sum[:], EventType: ev.Type}
	var (
		out store.Outcome
		err error
	)
	if ev.IsCredentials() {
		in := ev.Info
		out, err = s.store.ReceiveCredentials(ctx, rc,
			store.Credentials{ClientID: ev.ClientID, Secret: ev.Secret, Password: ev.Password},
			store.TenantInfo{Name: in.SchoolName, Host: in.Host, Country: in.Country, Region: in.Region, Language: in.Language,
				ActivatorEmail: in.ActivatorEmail, ActivatorUsername: in.ActivatorUsername,
				SchoolEmail: in.SchoolEmail, SchoolPhone: in.SchoolPhone},
			s.setupCheck())
	} else {
		out, err = s.store.ReceiveDeactivation(ctx, rc, ev.Type == webhook.Deletion, ev.ReasonType, ev.ReasonText)
	}
	if err != nil {
		return store.Outcome{}, err
	}
	if !out.Duplicate && out.Ignored == "" {
		s.dropCaches(ev.TenantID)
	}
	return out, nil
}

// dropCaches forgets this replica's cached token and sign-in verifier of the school at once; the
// store's notification does the same on every replica a moment later.
func (s *Service) dropCaches(tenantID string) {
	if s.platform != nil {
		s.platform.Invalidate(tenantID)
	}
	for _, drop := range s.drop {
		drop(tenantID)
	}
}

// Credentials are what a school admin or an operator pastes.
type Credentials struct {
	TenantID, ClientID, Secret, Password string
}

// Input problems of manual activation, by form field.
const (
	FieldTenantID = "tenantId"
	FieldClientID = "clientId"
	FieldSecret   = "secret"
	FieldPassword = "password"
)

// InputError is manual input that is wrong before the platform is asked: a message per field
// (catalog messages, shown in the reader's language).
type InputError struct{ Problems map[string]i18n.Text }

func (e *InputError) Error() string {
	return fmt.Sprintf("invalid credentials input (%d fields)", len(e.Problems))
}

// ProofError is credentials the platform refused. Message (a catalog message) is safe to show
// to the person who pasted them; Field names the value that is wrong where the platform's answer
// tells, and Problems says what to write next to each field the form should mark.
type ProofError struct {
	Field    string // FieldPassword, FieldSecret, FieldTenantID, FieldClientID, or "" when unknown
	Message  i18n.Text
	Problems map[string]i18n.Text
	Err      error
}

func (e *ProofError) Error() string {
	return "credentials not proved (" + e.Message.ID + "): " + e.Err.Error()
}
func (e *ProofError) Unwrap() error { return e.Err }

// Check validates pasted credentials before anything is asked of the platform.
func Check(c Credentials) (Credentials, error) {
	problems := map[string]i18n.Text{}
	// Pasted values often bring a space or a line break along.
	c.TenantID = strings.TrimSpace(c.TenantID)
	c.ClientID, c.Secret, c.Password = strings.TrimSpace(c.ClientID), strings.TrimSpace(c.Secret), strings.TrimSpace(c.Password)
	switch {
	case c.TenantID == "":
		problems[FieldTenantID] = i18n.T("problem.required")
	case !store.ValidTenantID(c.TenantID):
		problems[FieldTenantID] = i18n.T("problem.tenant_id")
	}
	for field, v := range map[string]string{FieldClientID: c.ClientID, FieldSecret: c.Secret, FieldPassword: c.Password} {
		switch {
		case v == "":
			problems[field] = i18n.T("problem.required")
		case len(v) > 1024:
			problems[field] = i18n.T("problem.credential_too_long")
		case !utf8.ValidString(v) || containsControl(v):
			problems[field] = i18n.T("problem.bad_characters")
		}
	}
	if len(problems) > 0 {
		return c, &InputError{Problems: problems}
	}
	return c, nil
}

// Result is a completed activation.
type Result struct {
	Version int
	State   string
}

// Activate proves pasted credentials with the platform (a client-credentials token for that
// tenant proves the client id and the password; the OIDC secret is proved at the first sign-in)
// and only then stores them as the school's new credentials. source is store.SourceManual or
// store.SourceOperator; actor goes to the audit trail. Wrong input is *InputError, refused
// credentials *ProofError; nothing is stored then.
func (s *Service) Activate(ctx context.Context, c Credentials, source, actor string) (Result, error) {
	c, err := Check(c)
	if err != nil {
		return Result{}, err
	}
	if err := s.platform.ProveCredentials(ctx, c.TenantID, c.ClientID, c.Secret, c.Password); err != nil {
		return Result{}, s.proofError(ctx, c, err)
	}
	version, state, err := s.store.ActivateWithCredentials(ctx, c.TenantID,
		store.Credentials{ClientID: c.ClientID, Secret: c.Secret, Password: c.Password, Source: source}, actor, s.setupCheck())
	if err != nil {
		return Result{}, err
	}
	s.dropCaches(c.TenantID)
	return Result{Version: version, State: state}, nil
}

// proofError turns the platform's refusal into words for the person who pasted the values: which
// value is wrong where the platform's answer tells, and who can fix it.
func (s *Service) proofError(ctx context.Context, c Credentials, err error) error {
	var (
		swapped *platform.SwappedError
		te      *platform.TokenError
	)
	refused := map[string]i18n.Text{FieldPassword: i18n.T("problem.refused")}
	switch {
	case errors.As(err, &swapped):
		return &ProofError{Field: FieldSecret, Err: err, Message: i18n.T("proof.swapped"),
			Problems: map[string]i18n.Text{FieldSecret: i18n.T("problem.secret_is_password"), FieldPassword: i18n.T("problem.password_is_secret")}}
	case errors.As(err, &te) && errors.Is(te, platform.ErrCredentialsRejected):
		switch {
		case te.Code == "invalid_grant":
			// Who can fix it: the platform shows the password once, when a school's WebUntis
			// administrator saves the app, and gives new credentials when they reset them.
			return &ProofError{Field: FieldPassword, Err: err, Message: i18n.T("proof.password_refused"), Problems: refused}
		case te.Status == 404:
			return &ProofError{Field: FieldTenantID, Err: err, Message: i18n.T("proof.unknown_tenant"),
				Problems: map[string]i18n.Text{FieldTenantID: i18n.T("problem.tenant_unknown")}}
		}
		// invalid_client does not say which of the two was wrong. One platform application
		// usually has one client id for every school: when another school's stored credentials
		// use this one, the client id is right and the password is what was refused.
		known, kerr := s.store.ClientIDInUse(ctx, c.ClientID)
		if kerr != nil {
			s.log.WarnContext(ctx, "look up a client id", "err", kerr)
		}
		if known {
			return &ProofError{Field: FieldPassword, Err: err, Message: i18n.T("proof.password_refused_client_known"), Problems: refused}
		}
		return &ProofError{Field: FieldPassword, Err: err, Message: i18n.T("proof.client_or_password"),
			Problems: map[string]i18n.Text{FieldClientID: i18n.T("problem.check_client_id"), FieldPassword: i18n.T("problem.check_password")}}
	case errors.Is(err, discovery.ErrUntrusted) || errors.Is(err, discovery.ErrAuthMethodUnsupported):
		// Not the pasted values, and not an outage: the school's OpenID configuration at the
		// platform names a token endpoint off UNTIS_API_URL, or no client authentication the
		// app can do, so the credentials were not sent anywhere.
		return &ProofError{Err: err, Message: i18n.T("proof.signin_configuration")}
	case errors.As(err, &te) && errors.Is(te, platform.ErrRateLimited):
		return &ProofError{Err: err, Message: i18n.T("proof.rate_limited")}
	case errors.As(err, &te) && errors.Is(te, platform.ErrBadRequest):
		switch te.Code {
		case "unauthorized_client":
			return &ProofError{Err: err, Message: i18n.T("proof.unauthorized_client")}
		case "invalid_scope":
			return &ProofError{Err: err, Message: i18n.T("proof.invalid_scope")}
		}
		return &ProofError{Err: err, Message: i18n.T("proof.bad_request")}
	}
	return &ProofError{Err: err, Message: i18n.T("proof.unreachable")}
}

// SaveSetup validates a school admin's setup answers and stores them; the school becomes active
// when they complete its setup. problems (by field) is non-empty when something is wrong, and
// then nothing is stored.
func (s *Service) SaveSetup(ctx context.Context, tenantID string, values url.Values, actor string) (state string, problems map[string]i18n.Text, err error) {
	answers, problems := s.fields.Validate(values)
	if len(problems) > 0 {
		return "", problems, nil
	}
	state, err = s.store.SaveSetup(ctx, tenantID, answers, actor, s.setupCheck())
	if err == nil {
		// Sessions carry the school's state: the admin's next page, on this replica, must not
		// see a cached "pending setup" after the answers made the school active.
		s.dropCaches(tenantID)
	}
	return state, nil, err
}

// Deactivate ends a school on an operator's decision, as a DEACTIVATION webhook would.
func (s *Service) Deactivate(ctx context.Context, tenantID, actor, reason string) (store.Outcome, error) {
	out, err := s.store.EndTenant(ctx, tenantID, false, actor, map[string]any{"reason_text": reason})
	if err != nil {
		return store.Outcome{}, err
	}
	s.dropCaches(tenantID)
	return out, nil
}

func containsControl(v string) bool {
	return strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
