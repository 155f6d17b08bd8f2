package platformsim

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// accessToken is a bearer token the simulator issued: an opaque access
// token (in Sim.tokens) or an id_token (in Sim.idTokens, by jti), which
// partners may send as a bearer too. Guarded by Sim.mu.
type accessToken struct {
	tenantID string
	kind     string // TokenKindClientCredentials, TokenKindAccessToken or TokenKindIDToken
	userID   string // set for user-context tokens
	scope    string // granted scopes, space-separated
	expires  time.Time
	epoch    uint64 // the tenant's tokenEpoch when issued
}

type oauthErr struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	IDToken     string `json:"id_token,omitempty"`
	Scope       string `json:"scope,omitempty"`
}

// sweepEvery is how many codes and tokens are issued between sweeps of the
// expired ones, so memory stays bounded under load without a timer.
const sweepEvery = 4096

// noteIssuedLocked counts an issued code or token and sweeps expired ones
// now and then. Used codes are kept a while past expiry so a late replay
// still revokes the tokens issued from them.
func (s *Sim) noteIssuedLocked(now time.Time) {
	s.issued++
	if s.issued < sweepEvery {
		return
	}
	s.issued = 0
	for k, c := range s.codes {
		if now.After(c.expires.Add(10 * time.Minute)) {
			delete(s.codes, k)
		}
	}
	for k, t := range s.tokens {
		if now.After(t.expires) {
			delete(s.tokens, k)
		}
	}
	for k, t := range s.idTokens {
		if now.After(t.expires) {
			delete(s.idTokens, k)
		}
	}
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, oauthErr{code, desc})
}

func writeInvalidClient(w http.ResponseWriter, basic bool, desc string) {
	if basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="WebUntis"`)
	}
	writeOAuthError(w, http.StatusUnauthorized, "invalid_client", desc)
}

// handleToken is the SSO v3 token endpoint for both grants the platform
// supports.
func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	// ParseForm merges the body with the query string: the Untis docs show
	// the parameters in the query of the POST, real clients send a body.
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the request body could not be parsed")
		return
	}
	// The delay starts after the body is read: only then does net/http
	// notice a client that gave up and cancel the request's context.
	if d := time.Duration(s.tokenDelay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	grant := r.Form.Get("grant_type")
	// The platform's docs: the request "must include Content-Type:
	// application/x-www-form-urlencoded", also when the parameters are
	// in the query.
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	formBody := mt == "application/x-www-form-urlencoded"

	s.mu.Lock()
	t := s.tenants[tid]
	s.stats.token[pair{statTenant(t), statGrant(grant)}]++
	if t == nil {
		s.mu.Unlock()
		writeOAuthError(w, http.StatusNotFound, "invalid_request", "unknown tenant")
		return
	}
	if !formBody {
		s.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	fail, failing := takeFailLocked(s.faults.token, tid)
	creds := tenantCreds{t.clientID, t.secret, t.password, t.credentialsUsable(), t.scopes, t.interop.BasicAuthOnly, t.interop.PostAuthOnly}
	s.mu.Unlock()

	if failing {
		if fail.status == http.StatusTooManyRequests || fail.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeOAuthError(w, fail.status, fail.oauthErr, "injected by the simulator")
		return
	}

	switch grant {
	case GrantAuthorizationCode:
		s.exchangeCode(w, r, tid, creds)
	case GrantClientCredentials:
		s.clientCredentials(w, r, tid, creds)
	case "":
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or client_credentials")
	}
}

type tenantCreds struct {
	clientID, secret, password string
	usable                     bool
	scopes                     []string
	basicOnly                  bool // only client_secret_basic is accepted (InteropOptions)
	postOnly                   bool // only client_secret_post is accepted (InteropOptions)
}

// authenticatedTwice refuses a request that authenticates the client with HTTP Basic and with
// client_secret in the body. RFC 6749 §2.3: "The client MUST NOT use more than one
// authentication method in each request." It reports whether it answered.
func authenticatedTwice(w http.ResponseWriter, r *http.Request, basic bool) bool {
	if basic && r.Form.Has("client_secret") {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request",
			"the client authenticated twice (HTTP Basic and client_secret in the body)")
		return true
	}
	return false
}

// wrongAuthMethod refuses a client authentication the school's discovery does not list
// (InteropOptions): such a request carries no client authentication at all for this endpoint.
// It reports whether it answered.
func (c tenantCreds) wrongAuthMethod(w http.ResponseWriter, basic bool) bool {
	switch {
	case c.basicOnly && !basic:
		writeInvalidClient(w, true, "this token endpoint accepts only client_secret_basic")
		return true
	case c.postOnly && basic:
		writeInvalidClient(w, false, "this token endpoint accepts only client_secret_post")
		return true
	}
	return false
}

// clientAuth returns the client's id and secret from HTTP Basic (whose
// parts RFC 6749 §2.3.1 form-encodes) or from the body.
func clientAuth(r *http.Request) (id, secret string, basic bool) {
	if id, secret, ok := r.BasicAuth(); ok {
		return unescapeCred(id), unescapeCred(secret), true
	}
	return r.Form.Get("client_id"), r.Form.Get("client_secret"), false
}

func unescapeCred(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

func (s *Sim) exchangeCode(w http.ResponseWriter, r *http.Request, tid string, creds tenantCreds) {
	id, secret, basic := clientAuth(r)
	if authenticatedTwice(w, r, basic) || creds.wrongAuthMethod(w, basic) {
		return
	}
	if id != creds.clientID || !equalConstantTime(secret, creds.secret) || !creds.usable {
		writeInvalidClient(w, basic, "client authentication failed (authorization_code needs the OIDC secret)")
		return
	}
	code := r.Form.Get("code")
	verifier := r.Form.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	token := randomToken(32)
	now := s.Now()

	s.mu.Lock()
	c := s.codes[code]
	if c == nil || c.tenantID != tid {
		// A code of another tenant is as unknown here as a made-up one,
		// and is not burnt: its own tenant may still redeem it.
		s.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "unknown authorization code")
		return
	}
	if c.used {
		// RFC 6749 §4.1.2: a replayed code revokes what it produced.
		if c.accessToken != "" {
			delete(s.tokens, c.accessToken)
			c.accessToken = ""
		}
		if c.idTokenID != "" {
			delete(s.idTokens, c.idTokenID)
			c.idTokenID = ""
		}
		s.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "authorization code already used")
		return
	}
	// Any presentation by the right client burns the code, so a thief
	// cannot retry verifiers.
	c.used = true
	var desc string
	switch {
	case now.After(c.expires):
		desc = "authorization code expired"
	case c.clientID != id:
		desc = "authorization code was issued to another client"
	case r.Form.Get("redirect_uri") != c.redirectURI:
		desc = "redirect_uri does not match the authorization request"
	case verifier == "":
		desc = "code_verifier is required"
	case !equalConstantTime(challenge, c.challenge):
		desc = "code_verifier does not match code_challenge"
	}
	if desc != "" {
		s.mu.Unlock()
		writeOAuthError(w, http.StatusBadRequest, "invalid_grant", desc)
		return
	}
	fault := s.takeIDTokenFaultLocked(tid)
	epoch := s.tenants[tid].tokenEpoch
	s.tokens[token] = &accessToken{
		tenantID: tid, kind: TokenKindAccessToken, userID: c.userID, scope: c.scope,
		expires: now.Add(s.tokenLifetime), epoch: epoch,
	}
	// The id_token is remembered too, so that as a bearer token it dies
	// with RevokeTokens, deactivation and code replay like the access
	// token, and carries the scopes of its authorization.
	jti := randomToken(16)
	s.idTokens[jti] = &accessToken{
		tenantID: tid, kind: TokenKindIDToken, userID: c.userID, scope: c.scope,
		expires: now.Add(IDTokenLifetime), epoch: epoch,
	}
	c.accessToken, c.idTokenID = token, jti
	s.noteIssuedLocked(now)
	claims := idClaims{
		Iss: s.Issuer(tid), Sub: c.userID, Aud: c.clientID,
		Iat: now.Unix(), Exp: now.Add(IDTokenLifetime).Unix(), AuthTime: c.authTime.Unix(), Nonce: c.nonce,
		Jti: jti,
	}
	scope := c.scope
	s.mu.Unlock()

	idToken, err := s.signIDToken(claims, fault)
	if err != nil {
		s.log.Error("platformsim: sign id_token", "tenant_id", tid, "err", err)
		writeOAuthError(w, http.StatusInternalServerError, "server_error", "could not sign the id_token")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token, TokenType: "Bearer", ExpiresIn: int(s.tokenLifetime / time.Second),
		IDToken: idToken, Scope: scope,
	})
}

// clientCredentials answers the server-to-server grant: HTTP Basic with the
// client id and the platform password, never the OIDC secret, as the platform
// documents it; at a school whose token endpoint accepts only client_secret_post
// (InteropOptions), client_id and the password as client_secret in the body.
func (s *Sim) clientCredentials(w http.ResponseWriter, r *http.Request, tid string, creds tenantCreds) {
	id, password, basic := clientAuth(r)
	if authenticatedTwice(w, r, basic) || creds.wrongAuthMethod(w, basic) {
		return
	}
	if !basic && !creds.postOnly {
		writeInvalidClient(w, true, "client_credentials needs HTTP Basic authentication with clientId:password")
		return
	}
	if id != creds.clientID || !creds.usable {
		writeInvalidClient(w, basic, "client authentication failed")
		return
	}
	if !equalConstantTime(password, creds.password) {
		if equalConstantTime(password, creds.secret) {
			// The most common partner mistake; the real platform answers
			// invalid_grant here.
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant",
				"client_credentials needs the platform password, not the OIDC secret")
			return
		}
		writeInvalidClient(w, basic, "client authentication failed")
		return
	}
	// Server-to-server permissions are the application's configuration
	// in PAM: without a scope parameter the token gets all of them; a
	// scope the application does not have is refused, not dropped.
	var granted []string
	if requested := r.Form.Get("scope"); requested == "" {
		for _, sc := range creds.scopes {
			if sc != ScopeOpenID {
				granted = append(granted, sc)
			}
		}
	} else {
		for _, sc := range strings.Fields(requested) {
			if !slices.Contains(creds.scopes, sc) {
				writeOAuthError(w, http.StatusBadRequest, "invalid_scope",
					"the application is not allowed the scope "+sc+" at this school")
				return
			}
			if !slices.Contains(granted, sc) {
				granted = append(granted, sc)
			}
		}
	}
	scope := strings.Join(granted, " ")

	token := randomToken(32)
	now := s.Now()
	s.mu.Lock()
	s.tokens[token] = &accessToken{
		tenantID: tid, kind: TokenKindClientCredentials, scope: scope,
		expires: now.Add(s.tokenLifetime), epoch: s.tenants[tid].tokenEpoch,
	}
	s.noteIssuedLocked(now)
	s.mu.Unlock()

	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken: token, TokenType: "Bearer", ExpiresIn: int(s.tokenLifetime / time.Second), Scope: scope,
	})
}

// IssueUserToken issues an access token for a user of tenantID as a login
// with scope "openid roster-core.readonly" would, without the browser
// round trip: for tests of API calls in a user's context.
func (s *Sim) IssueUserToken(tenantID, userID string) (string, error) {
	token := randomToken(32)
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return "", ErrUnknownTenant
	}
	if _, ok := t.roster.userIdx[userID]; !ok {
		return "", fmt.Errorf("platformsim: tenant %s has no user %q", tenantID, userID)
	}
	s.tokens[token] = &accessToken{
		tenantID: tenantID, kind: TokenKindAccessToken, userID: userID,
		scope:   ScopeOpenID + " " + ScopeRosterCoreReadonly,
		expires: now.Add(s.tokenLifetime), epoch: t.tokenEpoch,
	}
	s.noteIssuedLocked(now)
	return token, nil
}
