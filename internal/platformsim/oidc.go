package platformsim

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// authCode is an issued authorization code; guarded by Sim.mu.
type authCode struct {
	tenantID    string
	clientID    string
	redirectURI string
	challenge   string
	nonce       string
	scope       string
	userID      string
	authTime    time.Time
	expires     time.Time
	used        bool
	// accessToken and idTokenID (the id_token's jti) issued from this
	// code, revoked if the code is replayed (RFC 6749 §4.1.2).
	accessToken string
	idTokenID   string
}

type discoveryDoc struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
}

func (s *Sim) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	s.mu.Lock()
	t := s.tenants[tid]
	var scopes []string
	var o InteropOptions
	if t != nil {
		scopes, o = t.scopes, t.interop
	}
	s.stats.discovery[statTenant(t)]++
	s.mu.Unlock()
	if t == nil {
		writeJSON(w, http.StatusNotFound, oauthErr{"invalid_request", "unknown tenant"})
		return
	}
	iss := s.Issuer(tid)
	var algs []string
	for _, k := range s.keys.Load().published {
		if !slices.Contains(algs, k.alg) {
			algs = append(algs, k.alg)
		}
	}
	writeJSON(w, http.StatusOK, discoveryDoc{
		Issuer:                            iss,
		AuthorizationEndpoint:             iss + o.authorizePath(),
		TokenEndpoint:                     iss + o.tokenPath(),
		JWKSURI:                           iss + "/jwks",
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  algs,
		ScopesSupported:                   scopes,
		GrantTypesSupported:               []string{GrantAuthorizationCode, GrantClientCredentials},
		TokenEndpointAuthMethodsSupported: o.authMethods(),
		CodeChallengeMethodsSupported:     []string{"S256"},
		ClaimsSupported:                   []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "jti"},
	})
}

func (s *Sim) handleJWKS(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	s.mu.Lock()
	known := s.tenants[tid] != nil
	if known {
		// Keyed by the canonical path of a known tenant, never by what
		// the client sent, so the map stays as small as the tenant list.
		s.stats.jwks[ssoPrefix+tid+"/jwks"]++
	}
	s.mu.Unlock()
	if !known {
		writeJSON(w, http.StatusNotFound, oauthErr{"invalid_request", "unknown tenant"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(JWKSMaxAge/time.Second)))
	_, _ = w.Write(s.keys.Load().jwks)
}

// UserCookieName names the cookie in which the simulator remembers who is
// signed in to WebUntis for a tenant; its value is the user's sourcedId.
// Load tests set it to log in many users at once.
func UserCookieName(tenantID string) string { return "sim_user_" + tenantID }

// handleAuthorize is the SSO v3 authorize endpoint. It checks what the
// platform checks, then finds the "signed-in WebUntis user" and redirects
// back to the partner with a one-time code.
func (s *Sim) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	q := r.URL.Query()

	s.mu.Lock()
	t := s.tenants[tid]
	s.stats.authorize[statTenant(t)]++
	var clientID, status, apiUser string
	var ros *roster
	var allowed []string
	if t != nil {
		clientID, status, apiUser, ros, allowed = t.clientID, t.status, t.signedInUser, t.roster, t.scopes
	}
	s.mu.Unlock()

	if t == nil {
		s.errorPage(w, http.StatusNotFound, "Unknown school", "There is no school (tenant) "+tid+" on this platform.")
		return
	}
	// RFC 6749 §4.1.2.1: with a bad client_id or redirect_uri the user is
	// told, never redirected.
	if q.Get("client_id") != clientID {
		s.errorPage(w, http.StatusBadRequest, "Unknown application",
			"The client_id "+q.Get("client_id")+" is not an application of this school.")
		return
	}
	redirectURI := q.Get("redirect_uri")
	state := q.Get("state")
	if redirectURI != s.RedirectURI() {
		if sameOrigin(redirectURI, s.PartnerURL()) {
			// The platform's own spelling, for a path other than the
			// configured sso-redirect-path.
			s.redirectError(w, r, redirectURI, state, "invalid_ressource",
				"redirect_uri does not match the configured redirect path")
			return
		}
		s.errorPage(w, http.StatusBadRequest, "Invalid redirect_uri",
			"The redirect_uri "+redirectURI+" does not belong to this application.")
		return
	}

	switch {
	case q.Get("response_type") != "code":
		s.redirectError(w, r, redirectURI, state, "unsupported_response_type", "response_type must be code")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), ScopeOpenID):
		s.redirectError(w, r, redirectURI, state, "invalid_scope", "scope must include openid")
		return
	case state == "":
		s.redirectError(w, r, redirectURI, state, "invalid_request", "state is required")
		return
	case q.Get("nonce") == "":
		s.redirectError(w, r, redirectURI, state, "invalid_request", "nonce is required")
		return
	case q.Get("code_challenge") == "":
		s.redirectError(w, r, redirectURI, state, "invalid_request", "code_challenge is required (PKCE)")
		return
	case q.Get("code_challenge_method") != "S256":
		s.redirectError(w, r, redirectURI, state, "invalid_request", "code_challenge_method must be S256")
		return
	case !validChallenge(q.Get("code_challenge")):
		s.redirectError(w, r, redirectURI, state, "invalid_request", "code_challenge must be 43 base64url characters")
		return
	case status == StatusDeactivated || status == StatusDeleted:
		s.redirectError(w, r, redirectURI, state, "access_denied", "the application is not active for this school")
		return
	}

	s.mu.Lock()
	var injected string
	if errs := s.faults.authorize[tid]; len(errs) > 0 {
		injected = errs[0]
		if len(errs) == 1 {
			delete(s.faults.authorize, tid)
		} else {
			s.faults.authorize[tid] = errs[1:]
		}
	}
	s.mu.Unlock()
	if injected != "" {
		s.redirectError(w, r, redirectURI, state, injected, "injected by the simulator")
		return
	}

	// The code carries what was granted: what was asked for and the
	// application is allowed (its PAM permissions); the rest is dropped.
	scope := strings.Join(intersectScopes(q.Get("scope"), allowed), " ")

	userID := s.signedInUser(r, tid, ros, apiUser)
	if userID == "" {
		s.pickerPage(w, r, tid, ros)
		return
	}

	code := randomToken(32)
	now := s.Now()
	s.mu.Lock()
	s.codes[code] = &authCode{
		tenantID: tid, clientID: clientID, redirectURI: redirectURI,
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), scope: scope,
		userID: userID, authTime: now, expires: now.Add(CodeLifetime),
	}
	s.noteIssuedLocked(now)
	s.mu.Unlock()

	params := url.Values{"code": {code}, "state": {state}}
	if s.includeIss {
		params.Set("iss", s.Issuer(tid))
	}
	http.Redirect(w, r, withQuery(redirectURI, params), http.StatusFound)
}

// signedInUser finds the pretend WebUntis session: the simulator's cookie
// first (set by its own pages), then SetSignedInUser, then login_hint.
func (s *Sim) signedInUser(r *http.Request, tid string, ros *roster, apiUser string) string {
	if c, err := r.Cookie(UserCookieName(tid)); err == nil {
		if _, ok := ros.userIdx[c.Value]; ok {
			return c.Value
		}
	}
	if apiUser != "" {
		return apiUser
	}
	if hint := r.URL.Query().Get("login_hint"); hint != "" {
		if _, ok := ros.userIdx[hint]; ok {
			return hint
		}
		for _, u := range ros.users {
			if u.Username == hint {
				return u.SourcedID
			}
		}
	}
	return ""
}

// handlePickUser is the user picker's form post: remember the choice in
// the simulator's cookie and continue the authorize request.
func (s *Sim) handlePickUser(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		s.errorPage(w, http.StatusBadRequest, "Bad form", "The sign-in form could not be read.")
		return
	}
	uid := r.PostForm.Get("user")
	if _, ok := s.User(tid, uid); !ok {
		s.errorPage(w, http.StatusBadRequest, "Unknown user", "Pick a user of this school.")
		return
	}
	setSimUserCookie(w, tid, uid)
	http.Redirect(w, r, r.URL.RequestURI(), http.StatusSeeOther)
}

func setSimUserCookie(w http.ResponseWriter, tid, uid string) {
	http.SetCookie(w, &http.Cookie{
		Name: UserCookieName(tid), Value: uid, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// redirectError sends the user back to the (already validated) redirect
// URI with an OAuth error.
func (s *Sim) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	params := url.Values{"error": {code}, "error_description": {desc}}
	if state != "" {
		params.Set("state", state)
	}
	http.Redirect(w, r, withQuery(redirectURI, params), http.StatusFound)
}

// withQuery adds params to a URL's existing query.
func withQuery(raw string, params url.Values) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func sameOrigin(a, b string) bool {
	ua, err := url.Parse(a)
	if err != nil {
		return false
	}
	ub, err := url.Parse(b)
	if err != nil {
		return false
	}
	return ua.Scheme == ub.Scheme && strings.EqualFold(ua.Host, ub.Host) && ua.Host != ""
}

// validChallenge reports whether c is a possible S256 challenge: 43
// base64url characters (RFC 7636 §4.2).
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	for i := 0; i < len(c); i++ {
		ch := c[i]
		if !(ch >= 'A' && ch <= 'Z' || ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
			return false
		}
	}
	return true
}

func equalConstantTime(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
