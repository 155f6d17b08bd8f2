package platformsim

import (
	"fmt"
	"net/http"
	"time"
)

// IDTokenFault breaks the next id_token of a tenant in one way a relying
// party must detect (the OpenID RP conformance negative cases).
type IDTokenFault string

// The id_token faults.
const (
	// WrongNonce: the nonce differs from the one in the authorize request.
	WrongNonce IDTokenFault = "wrong_nonce"
	// WrongIssuer: iss names another tenant's issuer.
	WrongIssuer IDTokenFault = "wrong_issuer"
	// WrongAudience: aud is another client id.
	WrongAudience IDTokenFault = "wrong_audience"
	// MissingAudience: no aud claim.
	MissingAudience IDTokenFault = "missing_audience"
	// Expired: exp lies in the past.
	Expired IDTokenFault = "expired"
	// AlgNone: unsigned, header alg "none".
	AlgNone IDTokenFault = "alg_none"
	// HS256WithPublicKey: HMAC-SHA256 keyed with the public key's PEM, the
	// classic key-confusion attack.
	HS256WithPublicKey IDTokenFault = "hs256_public_key"
	// ForeignKey: signed by a key that is not in the JWKS (unknown kid).
	ForeignKey IDTokenFault = "foreign_key"
	// MissingSub: no sub claim.
	MissingSub IDTokenFault = "missing_sub"
	// OneRosterMismatch does not touch the id_token: the next users/{id}
	// call of the tenant answers with a user whose sourcedId differs from
	// the one asked for (and so from sub).
	OneRosterMismatch IDTokenFault = "oneroster_mismatch"
)

// IDTokenFaults lists every id_token fault, for tables in tests.
var IDTokenFaults = []IDTokenFault{
	WrongNonce, WrongIssuer, WrongAudience, MissingAudience, Expired,
	AlgNone, HS256WithPublicKey, ForeignKey, MissingSub, OneRosterMismatch,
}

func (f IDTokenFault) valid() bool {
	for _, g := range IDTokenFaults {
		if f == g {
			return true
		}
	}
	return false
}

// failN makes the next n requests fail with status (and, for the token
// endpoint, an OAuth error code).
type failN struct {
	n        int
	status   int
	oauthErr string
}

// faultState holds pending one-shot faults; guarded by Sim.mu.
type faultState struct {
	idToken        map[string][]IDTokenFault
	rosterMismatch map[string]int
	api            map[string]*failN
	token          map[string]*failN
	authorize      map[string][]string
}

func (f *faultState) init() {
	f.idToken = make(map[string][]IDTokenFault)
	f.rosterMismatch = make(map[string]int)
	f.api = make(map[string]*failN)
	f.token = make(map[string]*failN)
	f.authorize = make(map[string][]string)
}

// InjectIDTokenFault queues fault f for the next id_token issued for
// tenantID. Faults queue up: two injections break the next two tokens.
func (s *Sim) InjectIDTokenFault(tenantID string, f IDTokenFault) error {
	if !f.valid() {
		return fmt.Errorf("platformsim: unknown id_token fault %q", f)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tenants[tenantID] == nil {
		return ErrUnknownTenant
	}
	if f == OneRosterMismatch {
		s.faults.rosterMismatch[tenantID]++
		return nil
	}
	s.faults.idToken[tenantID] = append(s.faults.idToken[tenantID], f)
	return nil
}

// takeIDTokenFaultLocked pops the next id_token fault of a tenant.
func (s *Sim) takeIDTokenFaultLocked(tenantID string) IDTokenFault {
	q := s.faults.idToken[tenantID]
	if len(q) == 0 {
		return ""
	}
	f := q[0]
	if len(q) == 1 {
		delete(s.faults.idToken, tenantID)
	} else {
		s.faults.idToken[tenantID] = q[1:]
	}
	return f
}

// FailNextAPICalls makes the next n OneRoster calls made with a valid token
// of tenantID fail with status: 401 with the OAuth invalid_token body, 429
// with Retry-After, 5xx with a OneRoster statusInfoSet body.
func (s *Sim) FailNextAPICalls(tenantID string, n, status int) error {
	if n < 0 || status < 400 || status > 599 {
		return fmt.Errorf("platformsim: FailNextAPICalls(%d, %d): want n >= 0 and a 4xx/5xx status", n, status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tenants[tenantID] == nil {
		return ErrUnknownTenant
	}
	s.faults.api[tenantID] = &failN{n: n, status: status}
	return nil
}

// FailNextTokenRequests makes the next n token requests of tenantID fail
// with status and the OAuth error code oauthErr (default: server_error for
// 5xx, temporarily_unavailable for 429, invalid_request otherwise).
func (s *Sim) FailNextTokenRequests(tenantID string, n, status int, oauthErr string) error {
	if n < 0 || status < 400 || status > 599 {
		return fmt.Errorf("platformsim: FailNextTokenRequests(%d, %d): want n >= 0 and a 4xx/5xx status", n, status)
	}
	if oauthErr == "" {
		switch {
		case status == http.StatusTooManyRequests:
			oauthErr = "temporarily_unavailable"
		case status >= 500:
			oauthErr = "server_error"
		default:
			oauthErr = "invalid_request"
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tenants[tenantID] == nil {
		return ErrUnknownTenant
	}
	s.faults.token[tenantID] = &failN{n: n, status: status, oauthErr: oauthErr}
	return nil
}

// takeFailLocked consumes one failure from m[tenantID], if any is pending.
func takeFailLocked(m map[string]*failN, tenantID string) (failN, bool) {
	f := m[tenantID]
	if f == nil || f.n <= 0 {
		return failN{}, false
	}
	f.n--
	if f.n == 0 {
		delete(m, tenantID)
	}
	return *f, true
}

// InjectAuthorizeError makes the next authorize request of tenantID
// redirect back with the given OAuth error (e.g. "access_denied").
func (s *Sim) InjectAuthorizeError(tenantID, oauthErr string) error {
	if oauthErr == "" {
		oauthErr = "access_denied"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tenants[tenantID] == nil {
		return ErrUnknownTenant
	}
	s.faults.authorize[tenantID] = append(s.faults.authorize[tenantID], oauthErr)
	return nil
}

// SetTokenDelay makes every token request wait d before it is answered
// (a slow platform); 0 turns it off.
func (s *Sim) SetTokenDelay(d time.Duration) { s.tokenDelay.Store(int64(max(d, 0))) }

// RevokeTokens makes every access token and id_token issued so far for
// tenantID invalid as a bearer token: API calls with them get 401.
func (s *Sim) RevokeTokens(tenantID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return ErrUnknownTenant
	}
	t.tokenEpoch++
	return nil
}

// ClearFaults drops every pending fault and the token delay.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	s.faults.init()
	s.mu.Unlock()
	s.SetTokenDelay(0)
}
