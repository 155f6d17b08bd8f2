// Package sso runs a school's OpenID Connect sign-in (SSO v3) for a launch from Untis: it starts
// the authorization-code flow with state, nonce and PKCE, and completes it by exchanging the
// code, verifying the id_token against the school's issuer and keys, and fetching the user's
// OneRoster profile. It knows nothing of cookies or pages: the HTTP layer holds the browser's
// side (internal/httpserver) and the session (internal/session).
package sso

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/untis-partner/server/internal/discovery"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// Scopes are the scopes every sign-in asks for.
const Scopes = "openid roster-core.readonly"

// Defaults of Config.
const (
	DefaultFlowTTL         = 10 * time.Minute
	DefaultJWKSMinInterval = 30 * time.Second
	// DefaultJWKSRefreshCheck is how often the background refresh looks for key sets whose
	// max-age is about to end.
	DefaultJWKSRefreshCheck = 30 * time.Second
	// jwksIdleAfter: a key set not used for this long is not refreshed in the background (its
	// next use fetches it first), and is forgotten once no school's discovery names it.
	jwksIdleAfter = time.Hour
	// jwksRefreshParallel bounds the background fetches running at once.
	jwksRefreshParallel = 4
)

// Config is what the service needs.
type Config struct {
	// APIURL is UNTIS_API_URL: every SSO request, discovery and key fetch goes there and only there.
	APIURL *url.URL
	// RedirectURL is PUBLIC_URL + /launch, the redirect_uri registered with the platform.
	RedirectURL string
	Store       *store.Store
	// Platform is the server-to-server client; its discovery cache (one per process) is the
	// sign-in's too, so a school's discovery is fetched once for both.
	Platform *platform.Clients
	// HTTPClient makes the token and JWKS requests; nil means platform.NewHTTPClient().
	HTTPClient *http.Client
	Logger     *slog.Logger
	Metrics    *metrics.Registry
	Now        func() time.Time
	// FlowTTL is how long a started sign-in may take (DefaultFlowTTL).
	FlowTTL time.Duration
	// JWKSMinInterval is the least time between two fetches of one JWKS URL
	// (DefaultJWKSMinInterval).
	JWKSMinInterval time.Duration
	// JWKSRefreshCheck is how often RefreshKeys looks for key sets to refresh
	// (DefaultJWKSRefreshCheck).
	JWKSRefreshCheck time.Duration
}

// Service starts and completes sign-ins. It is safe for concurrent use; one per process.
type Service struct {
	cfg    Config
	client *http.Client
	disc   *discovery.Cache // shared with the platform client
	log    *slog.Logger
	now    func() time.Time
	m      ssoMetrics

	mu      sync.Mutex
	issuers map[string]*issuerEntry // by tenant id: what the current shared document gave
	keysets map[string]*keySet      // by JWKS URL; kept across invalidations so the fetch limit holds
}

// New builds the service.
func New(cfg Config) (*Service, error) {
	if cfg.APIURL == nil || cfg.Store == nil || cfg.Platform == nil || cfg.RedirectURL == "" {
		return nil, errors.New("sso: APIURL, RedirectURL, Store and Platform are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = platform.NewHTTPClient()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.FlowTTL <= 0 {
		cfg.FlowTTL = DefaultFlowTTL
	}
	if cfg.JWKSMinInterval <= 0 {
		cfg.JWKSMinInterval = DefaultJWKSMinInterval
	}
	if cfg.JWKSRefreshCheck <= 0 {
		cfg.JWKSRefreshCheck = DefaultJWKSRefreshCheck
	}
	return &Service{
		cfg:     cfg,
		client:  cfg.HTTPClient,
		disc:    cfg.Platform.Discovery(),
		log:     cfg.Logger,
		now:     cfg.Now,
		m:       newMetrics(cfg.Metrics),
		issuers: map[string]*issuerEntry{},
		keysets: map[string]*keySet{},
	}, nil
}

// Issuer is the school's issuer: {UNTIS_API_URL}/WebUntis/api/sso/v3/{tenantId}. The platform
// documents its authorize and token endpoints below it; its discovery may name others.
func (s *Service) Issuer(tenantID string) string { return s.disc.Issuer(tenantID) }

// oauthConfig is the school's OAuth client at the endpoints its discovery names (e), with the
// client authentication it supports.
func (s *Service) oauthConfig(e *issuerEntry, clientID, secret string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: secret,
		Endpoint:     oauth2.Endpoint{AuthURL: e.doc.AuthorizationEndpoint, TokenURL: e.doc.TokenEndpoint, AuthStyle: e.authStyle},
		RedirectURL:  s.cfg.RedirectURL,
		Scopes:       strings.Fields(Scopes),
	}
}

// documentedEndpoints are the school's endpoints as the platform's documentation builds them,
// for a sign-in that starts while its discovery cannot be fetched.
func (s *Service) documentedEndpoints(tenantID string) *issuerEntry {
	d := s.disc.Documented(tenantID)
	return &issuerEntry{doc: d, authStyle: authStyleFor(d)}
}

// discoveryFailure is the sign-in failure for a school whose discovery cannot be used.
func discoveryFailure(tid string, err error) *Error {
	switch {
	case errors.Is(err, discovery.ErrUntrusted):
		return failure(KindMisconfigured, "discovery_untrusted", tid, err)
	case errors.Is(err, discovery.ErrAuthMethodUnsupported):
		return failure(KindMisconfigured, "token_auth_unsupported", tid, err)
	}
	return failure(KindUnavailable, "discovery_failed", tid, err)
}

// Start is a begun sign-in: the browser keeps FlowID (in a cookie) and goes to AuthorizeURL.
type Start struct {
	FlowID       string
	State        string
	AuthorizeURL string
	ExpiresAt    time.Time
}

// Begin starts a sign-in for the school the launch names. Unknown, deactivated and deleted
// schools, and schools without credentials, get an *Error and no flow.
func (s *Service) Begin(ctx context.Context, l Launch) (Start, error) {
	t, clientID, err := s.cfg.Store.TenantWithClientID(ctx, l.TenantID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Start{}, failure(KindUnknownSchool, "unknown_school", l.TenantID, nil)
	case err != nil:
		return Start{}, failure(KindUnavailable, "store", l.TenantID, err)
	case t.State != store.StateActive && t.State != store.StatePendingSetup:
		return Start{}, failuref(KindSchoolInactive, "school_inactive", l.TenantID, "school is %s", t.State)
	case clientID == "":
		return Start{}, failuref(KindSchoolInactive, "no_credentials", l.TenantID, "school has no credentials")
	}
	// The authorize endpoint is the one the school's discovery names. While the discovery
	// cannot be fetched, the documented one: the user can sign in at the platform meanwhile,
	// and the callback needs the discovery anyway (to verify the id_token).
	iss, err := s.issuerFor(ctx, t.ID)
	switch {
	case errors.Is(err, discovery.ErrUnreachable):
		iss = s.documentedEndpoints(t.ID)
	case err != nil:
		return Start{}, discoveryFailure(t.ID, err)
	}
	now := s.now()
	st := Start{FlowID: randomString(), State: randomString(), ExpiresAt: now.Add(s.cfg.FlowTTL)}
	nonce, verifier := randomString(), oauth2.GenerateVerifier()
	err = s.cfg.Store.CreateFlow(ctx, store.Flow{
		IDHash: store.HashID(st.FlowID), TenantID: t.ID, State: st.State, Nonce: nonce, PKCEVerifier: verifier,
		ReturnTo: l.ReturnTo, Launch: l.Context, CreatedAt: now, ExpiresAt: st.ExpiresAt,
	})
	if err != nil {
		return Start{}, failure(KindUnavailable, "store", t.ID, err)
	}
	st.AuthorizeURL = s.oauthConfig(iss, clientID, "").AuthCodeURL(st.State,
		oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce))
	s.m.started.Inc()
	return st, nil
}

// Identity is a completed sign-in: who the user is (by tenant and sub only), their profile, and
// what they launched from.
type Identity struct {
	User     store.User
	Launch   map[string]string
	ReturnTo string
}

// Complete finishes the sign-in that the flow with id flowID (from the browser's cookie) began,
// with the callback's query q. The flow is consumed whatever happens. The school is the flow's,
// never the callback's. Failures are *Error values.
func (s *Service) Complete(ctx context.Context, flowID string, q url.Values) (Identity, error) {
	start := s.now()
	id, err := s.complete(ctx, flowID, q)
	outcome := "ok"
	if err != nil {
		outcome = AsError(err).Reason
	}
	s.m.logins.With(outcome).Inc()
	s.m.duration.Observe(s.now().Sub(start).Seconds())
	return id, err
}

func (s *Service) complete(ctx context.Context, flowID string, q url.Values) (Identity, error) {
	if platformErr := q.Get("error"); platformErr != "" {
		// The platform refused before any code was issued. Clean up the flow if the browser
		// still has it; the page explains the platform's error either way.
		tenantID := ""
		if flowID != "" {
			if f, err := s.cfg.Store.ConsumeFlow(ctx, store.HashID(flowID), s.now()); err == nil || errors.Is(err, store.ErrFlowExpired) {
				tenantID = f.TenantID
			}
		}
		return Identity{}, &Error{Kind: KindPlatformError, Reason: "platform_error", Code: discovery.Word(platformErr), TenantID: tenantID}
	}
	if flowID == "" {
		return Identity{}, failure(KindFlowMissing, "no_flow_cookie", "", nil)
	}
	f, err := s.cfg.Store.ConsumeFlow(ctx, store.HashID(flowID), s.now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Identity{}, failure(KindFlowMissing, "unknown_flow", "", nil)
	case errors.Is(err, store.ErrFlowExpired):
		return Identity{}, failure(KindFlowExpired, "flow_expired", f.TenantID, nil)
	case err != nil:
		return Identity{}, failure(KindUnavailable, "store", "", err)
	}
	tid := f.TenantID
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.State)) != 1 {
		return Identity{}, failure(KindFlowMissing, "state_mismatch", tid, nil)
	}
	// RFC 9207: a platform that names itself in the callback must name this school's issuer;
	// anything else is a mix-up (a code from another issuer).
	if iss, ok := q["iss"]; ok && (len(iss) != 1 || iss[0] != s.Issuer(tid)) {
		return Identity{}, failuref(KindRejected, "iss_param_mismatch", tid, "callback iss parameter is not the school's issuer")
	}
	code := q.Get("code")
	if code == "" {
		return Identity{}, failure(KindRejected, "no_code", tid, nil)
	}
	creds, err := s.cfg.Store.ActiveCredentials(ctx, tid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Identity{}, failuref(KindSchoolInactive, "school_inactive", tid, "school not active or without credentials")
	case err != nil:
		return Identity{}, failure(KindUnavailable, "store", tid, err)
	}
	iss, err := s.issuerFor(ctx, tid)
	if err != nil {
		return Identity{}, discoveryFailure(tid, err)
	}
	tok, err := s.exchange(ctx, iss, tid, creds, code, f.PKCEVerifier)
	if err != nil {
		return Identity{}, err
	}
	rawIDToken, _ := tok.Extra("id_token").(string)
	if rawIDToken == "" {
		return Identity{}, failure(KindRejected, "no_id_token", tid, nil)
	}
	idt, err := s.verifyIDToken(ctx, iss, tid, creds.ClientID, rawIDToken)
	if err != nil {
		return Identity{}, err
	}
	// go-oidc leaves the nonce to the caller.
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return Identity{}, failure(KindRejected, "nonce_mismatch", tid, nil)
	}
	if !validSub(idt.Subject) {
		return Identity{}, failure(KindRejected, "missing_sub", tid, nil)
	}
	u, err := s.profile(ctx, tid, idt.Subject, tok.AccessToken)
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: u, Launch: f.Launch, ReturnTo: f.ReturnTo}, nil
}

// exchange redeems the code at the school's token endpoint with the PKCE verifier and the
// school's OIDC secret. A refused client (the OIDC secret, or the client id, is wrong) marks
// the school's credentials failing for operators; an accepted one clears that mark.
func (s *Service) exchange(ctx context.Context, iss *issuerEntry, tid string, creds store.Credentials, code, verifier string) (*oauth2.Token, error) {
	xctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	xctx = context.WithValue(xctx, oauth2.HTTPClient, s.client)
	tok, err := s.oauthConfig(iss, creds.ClientID, creds.Secret).Exchange(xctx, code, oauth2.VerifierOption(verifier))
	if err == nil {
		s.secretAccepted(ctx, tid, creds.Version)
		return tok, nil
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		// Only the status and the OAuth error code: the body is the platform's and is not
		// repeated into our logs.
		status, code := re.Response.StatusCode, discovery.Word(re.ErrorCode)
		detail := fmt.Errorf("token endpoint answered %d %s", status, code)
		switch {
		case status >= 500 || status == http.StatusTooManyRequests:
			return nil, failure(KindUnavailable, "token_endpoint_failed", tid, detail)
		case clientRefused(status, re.ErrorCode):
			// Not the user's doing and not an attack on them: the school's connection is
			// misconfigured (a wrong or outdated OIDC secret), and an operator must know.
			s.secretRefused(ctx, tid, creds.Version, detail)
			return nil, failure(KindMisconfigured, "client_rejected", tid, detail)
		}
		return nil, failure(KindRejected, "code_rejected", tid, detail)
	}
	if xctx.Err() != nil || isNetErr(err) {
		return nil, failure(KindUnavailable, "token_endpoint_unreachable", tid, err)
	}
	// Anything else is an answer oauth2 could not use (no access_token, not JSON, ...).
	return nil, failure(KindRejected, "bad_token_response", tid, err)
}

// clientRefused reports whether the token endpoint refused the client itself rather than the
// code: invalid_client or unauthorized_client (RFC 6749 §5.2), or a bare 401.
func clientRefused(status int, code string) bool {
	switch code {
	case "invalid_client", "unauthorized_client":
		return true
	case "":
		return status == http.StatusUnauthorized
	}
	return false
}

// storeWriteTimeout bounds the failing-mark writes, which must not hold up a sign-in for long.
const storeWriteTimeout = 5 * time.Second

// secretRefused marks the school's credentials (version credVersion) failing because the token
// endpoint refused the OIDC secret. The store writes nothing when newer credentials were stored
// meanwhile or the school is no longer active or pending setup.
func (s *Service) secretRefused(ctx context.Context, tid string, credVersion int, detail error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWriteTimeout)
	defer cancel()
	reason := store.OIDCSecretRefused + ": the token endpoint answered a sign-in's code exchange with " +
		strings.TrimPrefix(detail.Error(), "token endpoint answered ")
	marked, err := s.cfg.Store.MarkCredentialsFailing(ctx, tid, credVersion, reason, s.now())
	if err != nil {
		s.log.ErrorContext(ctx, "sso: mark credentials failing", "tenant_id", tid, "err", err)
		return
	}
	if marked {
		s.log.WarnContext(ctx, "the platform refused the school's OIDC secret; its credentials are marked failing",
			"tenant_id", tid, "credentials_version", credVersion)
	}
}

// secretAccepted clears a mark that the OIDC secret was refused, now that the token endpoint
// accepted it. Marks of the platform password are left: a code exchange does not prove it.
func (s *Service) secretAccepted(ctx context.Context, tid string, credVersion int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeWriteTimeout)
	defer cancel()
	cleared, err := s.cfg.Store.ClearOIDCSecretRefused(ctx, tid, credVersion)
	if err != nil {
		s.log.ErrorContext(ctx, "sso: clear the failing mark", "tenant_id", tid, "err", err)
		return
	}
	if cleared {
		s.log.InfoContext(ctx, "the platform accepts the school's OIDC secret again", "tenant_id", tid)
	}
}

// profile fetches the user's OneRoster record with the user's own access token, falling back to
// the school's token when the platform does not let the user read it. Its sourcedId must be sub.
func (s *Service) profile(ctx context.Context, tid, sub, accessToken string) (store.User, error) {
	u, err := s.cfg.Platform.ForUser(tid, accessToken).User(ctx, sub)
	if errors.Is(err, platform.ErrUnauthorized) || errors.Is(err, platform.ErrForbidden) {
		u, err = s.cfg.Platform.For(tid).User(ctx, sub)
	}
	switch {
	case errors.Is(err, platform.ErrNotFound):
		return store.User{}, failure(KindRejected, "user_not_found", tid, err)
	case err != nil:
		return store.User{}, failure(KindUnavailable, "profile_unavailable", tid, err)
	case u.SourcedID != sub:
		return store.User{}, failuref(KindRejected, "profile_mismatch", tid, "OneRoster answered users/{sub} with another user")
	}
	out := store.User{
		TenantID: tid, Sub: sub, Role: u.Role, GivenName: u.GivenName, FamilyName: u.FamilyName,
		Email: u.Email, Username: u.Username,
	}
	for _, o := range u.Orgs {
		out.Orgs = append(out.Orgs, store.OrgRef{SourcedID: o.SourcedID, Type: o.Type})
	}
	return out, nil
}

// Invalidate forgets the school's discovery (in the cache shared with the platform client too),
// so the next sign-in fetches it again and rebuilds its verifier. Call it when the school's
// credentials or state change.
func (s *Service) Invalidate(tenantID string) {
	s.disc.Invalidate(tenantID)
	s.mu.Lock()
	delete(s.issuers, tenantID)
	s.mu.Unlock()
}

// InvalidateAll forgets every school's discovery.
func (s *Service) InvalidateAll() {
	s.disc.InvalidateAll()
	s.mu.Lock()
	clear(s.issuers)
	s.mu.Unlock()
}

// ChangeHandler keeps the service in step with credential and state changes made by any
// replica (store.ListenTenantChanges).
func (s *Service) ChangeHandler() store.TenantChangeHandler {
	return store.TenantChangeHandler{Changed: s.Invalidate, Resync: s.InvalidateAll}
}

// FlowCookieTag names a flow's cookie after its state, so several tabs signing in at once each
// keep their own cookie, and the callback (which carries state) finds the right one.
func FlowCookieTag(state string) string {
	h := sha256.Sum256([]byte("flow-cookie:" + state))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

// randomString is 256 bits from the system's CSPRNG, base64url-encoded.
func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validSub accepts a subject identifier as OIDC bounds it (1 to 255 characters), printable, and
// without path separators (it names a OneRoster path segment).
func validSub(sub string) bool {
	if sub == "" || len(sub) > 255 {
		return false
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if c < 0x21 || c == 0x7f || c == '/' || c == '\\' || c == '?' || c == '#' || c == '%' {
			return false
		}
	}
	return true
}

func isNetErr(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// verifyIDToken checks the id_token with go-oidc against the school's issuer and keys: signature
// (allow-listed algorithms), iss, aud = client id, exp.
func (s *Service) verifyIDToken(ctx context.Context, iss *issuerEntry, tid, clientID, raw string) (*oidc.IDToken, error) {
	v := oidc.NewVerifier(iss.doc.Issuer, iss.keys, &oidc.Config{
		ClientID: clientID, SupportedSigningAlgs: signingAlgs, Now: s.now,
	})
	holder := &errHolder{}
	idt, err := v.Verify(context.WithValue(ctx, errHolderKey{}, holder), raw)
	if err == nil {
		return idt, nil
	}
	var expired *oidc.TokenExpiredError
	switch msg := err.Error(); {
	case errors.Is(holder.err, errUnknownKey):
		return nil, failure(KindRejected, "unknown_key", tid, holder.err)
	case errors.Is(holder.err, errJWKSFetch):
		return nil, failure(KindUnavailable, "jwks_unavailable", tid, holder.err)
	case errors.Is(holder.err, errBadSignature):
		return nil, failure(KindRejected, "bad_signature", tid, holder.err)
	case errors.As(err, &expired):
		return nil, failure(KindRejected, "id_token_expired", tid, err)
	case strings.Contains(msg, "unexpected signature algorithm") || strings.Contains(msg, "malformed jwt"):
		return nil, failure(KindRejected, "malformed_or_unsigned", tid, err)
	case strings.Contains(msg, "different provider"):
		return nil, failure(KindRejected, "wrong_issuer", tid, err)
	case strings.Contains(msg, "audience"):
		return nil, failure(KindRejected, "wrong_audience", tid, err)
	}
	return nil, failure(KindRejected, "invalid_id_token", tid, err)
}

// Abandon ends the flow that carries state, for a callback that arrived without the browser's
// flow cookie (typically third-party cookies blocked in an iFrame). The flow cannot complete,
// since nothing proves this browser started it, but its launch is returned so that the user can
// start the same launch again where cookies work (a new tab). found is false when no flow
// carries state.
func (s *Service) Abandon(ctx context.Context, state string) (l Launch, found bool, err error) {
	s.m.logins.With("no_flow_cookie").Inc()
	if state == "" || len(state) > 128 {
		return Launch{}, false, nil
	}
	f, err := s.cfg.Store.ConsumeFlowByState(ctx, state)
	if errors.Is(err, store.ErrNotFound) {
		return Launch{}, false, nil
	}
	if err != nil {
		return Launch{}, false, err
	}
	return Launch{TenantID: f.TenantID, ReturnTo: f.ReturnTo, Context: f.Launch}, true, nil
}

// URL is the launch address that starts l again.
func (l Launch) URL() string {
	q := url.Values{"tenant_id": {l.TenantID}}
	for k, v := range l.Context {
		q.Set(k, v)
	}
	if l.ReturnTo != "" && l.ReturnTo != "/" {
		q.Set("return_to", l.ReturnTo)
	}
	return "/launch?" + q.Encode()
}
