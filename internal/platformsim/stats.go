package platformsim

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Grant types as counted in Stats.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
)

// Token kinds recorded for API calls.
const (
	TokenKindClientCredentials = "client_credentials"
	TokenKindAccessToken       = "access_token" // user-context token from the code flow
	TokenKindIDToken           = "id_token"
	TokenKindNone              = "none"    // no bearer token sent
	TokenKindUnknown           = "unknown" // invalid, expired or revoked
)

// Stats counts what the simulator was asked, so tests can assert how a
// partner used the platform ("exactly one token request").
type Stats struct {
	// TokenRequests counts token endpoint requests: tenant → grant_type →
	// count, including failed ones. An empty grant is counted as "",
	// grant types other than authorization_code, client_credentials,
	// refresh_token and password as GrantOther, and unknown tenants as
	// UnknownTenant.
	TokenRequests map[string]map[string]int `json:"tokenRequests"`
	// AuthorizeRequests counts authorize requests per tenant (unknown
	// tenants as UnknownTenant).
	AuthorizeRequests map[string]int `json:"authorizeRequests"`
	// DiscoveryFetches counts discovery requests per tenant (unknown
	// tenants as UnknownTenant).
	DiscoveryFetches map[string]int `json:"discoveryFetches"`
	// JWKSFetches counts JWKS fetches per URL path
	// ("/WebUntis/api/sso/v3/{tenantId}/jwks", also when asked with a
	// trailing slash); fetches for unknown tenants are not counted.
	JWKSFetches map[string]int `json:"jwksFetches"`
	// APICalls counts API calls (OneRoster and extern): tenant the token belongs to ("" when
	// the token was not valid) → HTTP status → count.
	APICalls map[string]map[int]int `json:"apiCalls"`
	// WebhooksSent counts webhook deliveries attempted, replays included.
	WebhooksSent int `json:"webhooksSent"`
	// CalendarRequests counts Calendar API requests sent (the timetable view).
	CalendarRequests int `json:"calendarRequests"`
}

// UnknownTenant is the key under which Stats counts requests for tenant
// ids the simulator does not know, so a client making up ids cannot grow
// the counters without limit. It is no valid tenant id.
const UnknownTenant = ""

// statTenant is the Stats key of a tenant (nil: unknown).
func statTenant(t *tenant) string {
	if t == nil {
		return UnknownTenant
	}
	return t.id
}

// GrantOther is the grant_type under which Stats counts token requests
// with a grant type the simulator does not know.
const GrantOther = "other"

// statGrant bounds the grant types Stats keeps apart.
func statGrant(g string) string {
	switch g {
	case GrantAuthorizationCode, GrantClientCredentials, "refresh_token", "password", "":
		return g
	}
	return GrantOther
}

// TokenRequestCount returns the number of token requests of one tenant and
// grant type.
func (st Stats) TokenRequestCount(tenantID, grant string) int {
	return st.TokenRequests[tenantID][grant]
}

// APICallCount returns the number of API calls of a tenant, all statuses.
func (st Stats) APICallCount(tenantID string) int {
	n := 0
	for _, c := range st.APICalls[tenantID] {
		n += c
	}
	return n
}

type pair struct{ a, b string }

type apiKey struct {
	tenant string
	status int
}

// statCounters are flat maps with struct keys so counting costs no
// allocation once a key exists; guarded by Sim.mu.
type statCounters struct {
	token            map[pair]int
	authorize        map[string]int
	discovery        map[string]int
	jwks             map[string]int
	api              map[apiKey]int
	webhooks         int
	calendarRequests int
}

func (c *statCounters) init() {
	*c = statCounters{
		token:     make(map[pair]int),
		authorize: make(map[string]int),
		discovery: make(map[string]int),
		jwks:      make(map[string]int),
		api:       make(map[apiKey]int),
	}
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		TokenRequests:     make(map[string]map[string]int),
		AuthorizeRequests: make(map[string]int, len(s.stats.authorize)),
		DiscoveryFetches:  make(map[string]int, len(s.stats.discovery)),
		JWKSFetches:       make(map[string]int, len(s.stats.jwks)),
		APICalls:          make(map[string]map[int]int),
		WebhooksSent:      s.stats.webhooks,
		CalendarRequests:  s.stats.calendarRequests,
	}
	for k, n := range s.stats.token {
		if st.TokenRequests[k.a] == nil {
			st.TokenRequests[k.a] = make(map[string]int)
		}
		st.TokenRequests[k.a][k.b] = n
	}
	for k, n := range s.stats.api {
		if st.APICalls[k.tenant] == nil {
			st.APICalls[k.tenant] = make(map[int]int)
		}
		st.APICalls[k.tenant][k.status] = n
	}
	for k, n := range s.stats.authorize {
		st.AuthorizeRequests[k] = n
	}
	for k, n := range s.stats.discovery {
		st.DiscoveryFetches[k] = n
	}
	for k, n := range s.stats.jwks {
		st.JWKSFetches[k] = n
	}
	return st
}

// ResetStats zeroes the counters and forgets the API call log.
func (s *Sim) ResetStats() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.init()
	s.calls = callLog{}
}

// TokenFingerprint is the first 12 hex digits of the SHA-256 of a bearer token: enough to tell
// tokens apart in a test, useless to call the API with.
func TokenFingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// APICall is one API call (OneRoster or extern) as the simulator saw it.
type APICall struct {
	Time      time.Time `json:"time"`
	Method    string    `json:"method"`
	Path      string    `json:"path"`
	Query     string    `json:"query,omitempty"`
	TenantID  string    `json:"tenantId"`  // tenant the token belongs to; "" if invalid
	TokenKind string    `json:"tokenKind"` // one of the TokenKind constants
	// TokenFingerprint identifies the bearer token sent, without being it: TokenFingerprint(token).
	// Tests compare it to tell which token a call used; "" when none was sent.
	TokenFingerprint string `json:"tokenFingerprint,omitempty"`
	UserID           string `json:"userId,omitempty"`
	Status           int    `json:"status"`
}

const callLogSize = 256

// callLog is a ring buffer of the last callLogSize API calls.
type callLog struct {
	buf  [callLogSize]APICall
	next int
	n    int
}

func (l *callLog) add(c APICall) {
	l.buf[l.next] = c
	l.next = (l.next + 1) % callLogSize
	if l.n < callLogSize {
		l.n++
	}
}

// APICalls returns the last API calls (at most 256), oldest first.
func (s *Sim) APICalls() []APICall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]APICall, 0, s.calls.n)
	start := (s.calls.next - s.calls.n + callLogSize) % callLogSize
	for i := range s.calls.n {
		out = append(out, s.calls.buf[(start+i)%callLogSize])
	}
	return out
}

// LastAPICall returns the most recent API call.
func (s *Sim) LastAPICall() (APICall, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls.n == 0 {
		return APICall{}, false
	}
	return s.calls.buf[(s.calls.next-1+callLogSize)%callLogSize], true
}
