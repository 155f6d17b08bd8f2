package platformsim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
)

// OneRoster paging limits.
const (
	defaultLimit = 100
	maxLimit     = 1000
)

// apiCall is what an API handler knows about the caller: the tenant the
// bearer token belongs to decides whose data is visible.
type apiCall struct {
	tenantID string
	kind     string
	userID   string
	scope    string // the token's granted scopes
	role     string // the OneRoster role of userID, for user-context tokens
	roster   *roster
	base     string // the simulator's base URL, for hrefs
	// mismatch asks users/{id} to answer with a different sourcedId (the
	// OneRosterMismatch fault).
	mismatch bool
	// fingerprint identifies the bearer token that was sent (TokenFingerprint).
	fingerprint string
}

type apiHandler func(w http.ResponseWriter, r *http.Request, c *apiCall) int

func (s *Sim) oneRosterRoutes(r chi.Router) {
	r.Get("/users", s.api(listUsers("")))
	r.Get("/users/{id}", s.selfAPI(getUser("")))
	r.Get("/students", s.api(listUsers(RoleStudent)))
	r.Get("/students/{id}", s.selfAPI(getUser(RoleStudent)))
	r.Get("/teachers", s.api(listUsers(RoleTeacher)))
	r.Get("/teachers/{id}", s.selfAPI(getUser(RoleTeacher)))
	r.Get("/classes", s.api(listClasses))
	r.Get("/classes/{id}", s.api(getClass))
	r.Get("/classes/{id}/students", s.api(classMembers(RoleStudent)))
	r.Get("/classes/{id}/teachers", s.api(classMembers(RoleTeacher)))
	r.Get("/enrollments", s.api(listEnrollments))
	r.Get("/enrollments/{id}", s.api(getEnrollment))
	r.Get("/orgs", s.api(listOrgs))
	r.Get("/orgs/{id}", s.api(getOrg))
	r.Get("/schools", s.api(listOrgs))
	r.Get("/schools/{id}", s.api(getOrg))
	r.Get("/schools/{id}/students", s.api(schoolUsers(RoleStudent)))
	r.Get("/schools/{id}/teachers", s.api(schoolUsers(RoleTeacher)))
	r.Get("/schools/{id}/classes", s.api(schoolClasses))
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no such OneRoster endpoint")
	})
}

// api serves an endpoint that server tokens and staff may call.
func (s *Sim) api(h apiHandler) http.HandlerFunc { return s.apiFor(h, false) }

// selfAPI serves a users/{id} endpoint, which a student or parent may also
// call for their own id.
func (s *Sim) selfAPI(h apiHandler) http.HandlerFunc { return s.apiFor(h, true) }

// apiFor authenticates the bearer token, applies injected failures, checks
// the token's scope and the user's role, runs h and records the call.
func (s *Sim) apiFor(h apiHandler, selfOK bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, fail, errDesc := s.authenticate(r)
		var status int
		switch {
		case c.kind == TokenKindNone:
			status = writeMissingToken(w)
		case errDesc != "":
			status = writeInvalidToken(w, errDesc)
		case fail.status != 0:
			status = writeInjectedAPIFailure(w, fail.status)
		case !hasScope(c.scope, ScopeRosterCoreReadonly):
			status = writeInsufficientScope(w, ScopeRosterCoreReadonly)
		case !c.mayRead(r, selfOK):
			status = writeStatusInfo(w, http.StatusForbidden, "forbidden",
				"with a user's token, a student or parent may only read their own user")
		default:
			status = h(w, r, c)
		}
		s.record(r, c, status)
	}
}

// record counts an API call and adds it to the call log.
func (s *Sim) record(r *http.Request, c *apiCall, status int) {
	call := APICall{
		Time: s.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		TenantID: c.tenantID, TokenKind: c.kind, TokenFingerprint: c.fingerprint, UserID: c.userID, Status: status,
	}
	s.mu.Lock()
	s.stats.api[apiKey{c.tenantID, status}]++
	s.calls.add(call)
	s.mu.Unlock()
}

// authenticate resolves the bearer token. On failure it returns a
// description for the 401; c.kind is always set for the call log.
func (s *Sim) authenticate(r *http.Request) (c *apiCall, fail failN, errDesc string) {
	c = &apiCall{kind: TokenKindNone, base: s.BaseURL()}
	scheme, raw, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return c, fail, "a bearer token is required"
	}
	c.kind = TokenKindUnknown
	c.fingerprint = TokenFingerprint(raw)
	now := s.Now()

	// Some partners send the id_token instead of the access token; the
	// platform accepts it, so verify it like a resource server would.
	var idc *idClaims
	if strings.Count(raw, ".") == 2 {
		claims, err := s.verifyIDToken(raw)
		if err != nil {
			return c, fail, "the token is invalid: " + err.Error()
		}
		prefix := s.BaseURL() + ssoPrefix
		if !strings.HasPrefix(claims.Iss, prefix) {
			return c, fail, "the token was not issued by this platform"
		}
		idc = &claims
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	var at *accessToken
	if idc != nil {
		// The platform knows the id_tokens it issued: one it does not
		// (any more) know is as dead as a revoked access token.
		at = s.idTokens[idc.Jti]
		if at == nil || idc.Jti == "" || s.Issuer(at.tenantID) != idc.Iss {
			return c, fail, "the token is unknown or was revoked"
		}
	} else {
		at = s.tokens[raw]
		if at == nil {
			return c, fail, "the token is unknown or was revoked"
		}
		if !now.Before(at.expires) {
			return c, fail, "the token expired"
		}
	}
	t := s.tenants[at.tenantID]
	if t == nil || at.epoch != t.tokenEpoch || !t.credentialsUsable() {
		return c, fail, "the token was revoked"
	}
	c.kind, c.userID, c.scope = at.kind, at.userID, at.scope
	if c.userID != "" {
		if i, ok := t.roster.userIdx[c.userID]; ok {
			c.role = t.roster.users[i].Role
		}
	}
	c.tenantID, c.roster = t.id, t.roster
	if f, ok := takeFailLocked(s.faults.api, t.id); ok {
		return c, f, ""
	}
	if strings.HasPrefix(r.URL.Path, oneRosterPrefix+"/users/") && s.faults.rosterMismatch[t.id] > 0 {
		if s.faults.rosterMismatch[t.id]--; s.faults.rosterMismatch[t.id] == 0 {
			delete(s.faults.rosterMismatch, t.id)
		}
		c.mismatch = true
	}
	return c, fail, ""
}

// mayRead reports whether the caller may use the endpoint: server tokens
// and staff read everything of their school; students and parents (and a
// user the roster does not know) only their own user, on the selfAPI
// endpoints. The platform's user-context permissions are "app
// configuration AND the user's role and school membership".
func (c *apiCall) mayRead(r *http.Request, selfOK bool) bool {
	if c.kind == TokenKindClientCredentials {
		return true
	}
	switch c.role {
	case RoleTeacher, RoleAdministrator, RoleAide:
		return true
	}
	return selfOK && c.userID != "" && chi.URLParam(r, "id") == c.userID
}

// writeInsufficientScope answers a token whose scopes lack the one the
// endpoint needs (RFC 6750 §3.1), with OneRoster's error body.
func writeInsufficientScope(w http.ResponseWriter, need string) int {
	w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+need+`"`)
	return writeStatusInfo(w, http.StatusForbidden, "forbidden", "the token's scope does not include "+need)
}

// writeMissingToken answers a request without credentials: per RFC 6750
// §3.1 the challenge then carries no error code.
func writeMissingToken(w http.ResponseWriter) int {
	w.Header().Set("WWW-Authenticate", `Bearer realm="OneRoster"`)
	writeJSON(w, http.StatusUnauthorized, oauthErr{"invalid_request", "a bearer token is required"})
	return http.StatusUnauthorized
}

func writeInvalidToken(w http.ResponseWriter, desc string) int {
	w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+strings.ReplaceAll(desc, `"`, `'`)+`"`)
	writeJSON(w, http.StatusUnauthorized, oauthErr{"invalid_token", desc})
	return http.StatusUnauthorized
}

func writeInjectedAPIFailure(w http.ResponseWriter, status int) int {
	switch status {
	case http.StatusUnauthorized:
		return writeInvalidToken(w, "the token is not valid (injected by the simulator)")
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		return writeStatusInfo(w, status, "server_busy", "too many requests (injected by the simulator)")
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		return writeStatusInfo(w, status, "server_busy", "service unavailable (injected by the simulator)")
	case http.StatusForbidden:
		return writeStatusInfo(w, status, "forbidden", "forbidden (injected by the simulator)")
	}
	return writeStatusInfo(w, status, "internal_server_error", "failure injected by the simulator")
}

type statusInfo struct {
	CodeMajor   string `json:"imsx_codeMajor"`
	Severity    string `json:"imsx_severity"`
	CodeMinor   string `json:"imsx_codeMinor"`
	Description string `json:"imsx_description"`
}

// writeStatusInfo writes OneRoster's error body.
func writeStatusInfo(w http.ResponseWriter, status int, codeMinor, desc string) int {
	writeJSON(w, status, struct {
		Set []statusInfo `json:"statusInfoSet"`
	}{[]statusInfo{{"failure", "error", codeMinor, desc}}})
	return status
}

// writeEnvelope writes {"key": v}.
func writeEnvelope(w http.ResponseWriter, key string, v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return writeStatusInfo(w, http.StatusInternalServerError, "internal_server_error", "could not encode the response")
	}
	buf := make([]byte, 0, len(b)+len(key)+6)
	buf = append(buf, `{"`...)
	buf = append(buf, key...)
	buf = append(buf, `":`...)
	buf = append(buf, b...)
	buf = append(buf, '}')
	// No X-Total-Count: the platform is not documented to send one (facts §4.1), so a client
	// must page until a short page, and the simulator must not let it lean on a count.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
	return http.StatusOK
}

// listQuery holds the parsed collection parameters.
type listQuery struct {
	limit, offset int
	filter        *filterExpr
	sort          string
	desc          bool
}

// parseListQuery reads limit, offset, filter, sort and orderBy, checking
// field names with probe (a zero object's field accessor). On error it has
// written the 400 and returns its status.
func parseListQuery(w http.ResponseWriter, r *http.Request, probe func(string) (string, bool)) (listQuery, int) {
	q := r.URL.Query()
	lq := listQuery{limit: defaultLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return lq, writeStatusInfo(w, http.StatusBadRequest, "invalid_selection_field", "limit must be a positive integer")
		}
		lq.limit = min(n, maxLimit)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return lq, writeStatusInfo(w, http.StatusBadRequest, "invalid_selection_field", "offset must be a non-negative integer")
		}
		lq.offset = n
	}
	if v := q.Get("filter"); v != "" {
		f, err := parseFilter(v)
		if err != nil {
			return lq, writeStatusInfo(w, http.StatusBadRequest, "invalid_filter_field", err.Error())
		}
		for _, p := range f.preds {
			if _, ok := probe(p.field); !ok {
				return lq, writeStatusInfo(w, http.StatusBadRequest, "invalid_filter_field", "unknown filter field "+p.field)
			}
		}
		lq.filter = &f
	}
	if v := q.Get("sort"); v != "" {
		if _, ok := probe(v); !ok {
			return lq, writeStatusInfo(w, http.StatusBadRequest, "invalid_sort_field", "unknown sort field "+v)
		}
		lq.sort = v
	}
	switch strings.ToLower(q.Get("orderBy")) {
	case "", "asc":
	case "desc":
		lq.desc = true
	default:
		return lq, writeStatusInfo(w, http.StatusBadRequest, "invalid_sort_field", "orderBy must be asc or desc")
	}
	return lq, 0
}

// fielder is a OneRoster object with named fields.
type fielder interface {
	field(string) (string, bool)
}

// selectPage filters, sorts and pages items and returns the page. items is a fresh slice of pointers into the immutable
// roster, so sorting it in place is safe.
func selectPage[T any, P interface {
	*T
	fielder
}](items []P, lq listQuery) []P {
	sel := items
	if lq.filter != nil {
		sel = make([]P, 0, len(items))
		for _, it := range items {
			if lq.filter.match(it.field) {
				sel = append(sel, it)
			}
		}
	}
	if lq.sort != "" {
		slices.SortStableFunc(sel, func(a, b P) int {
			va, _ := a.field(lq.sort)
			vb, _ := b.field(lq.sort)
			if lq.desc {
				return strings.Compare(vb, va)
			}
			return strings.Compare(va, vb)
		})
	}
	if lq.offset >= len(sel) {
		return nil
	}
	return sel[lq.offset:min(len(sel), lq.offset+lq.limit)]
}

func ptrs[T any](xs []T) []*T {
	out := make([]*T, len(xs))
	for i := range xs {
		out[i] = &xs[i]
	}
	return out
}

// Hrefs depend on the base URL, which may change after seeding, so they
// are filled in on copies at response time.

func href(base string, ref GUIDRef) GUIDRef {
	var coll string
	switch ref.Type {
	case "org":
		coll = "orgs"
	case "user":
		coll = "users"
	case "class":
		coll = "classes"
	default:
		coll = ref.Type + "s"
	}
	ref.Href = base + oneRosterPrefix + "/" + coll + "/" + ref.SourcedID
	return ref
}

func hrefs(base string, refs []GUIDRef) []GUIDRef {
	out := make([]GUIDRef, len(refs))
	for i, r := range refs {
		out[i] = href(base, r)
	}
	return out
}

func (u User) withHrefs(base string) User {
	u.Orgs, u.Agents = hrefs(base, u.Orgs), hrefs(base, u.Agents)
	return u
}

func (c Class) withHrefs(base string) Class {
	c.School, c.Terms = href(base, c.School), hrefs(base, c.Terms)
	return c
}

func (e Enrollment) withHrefs(base string) Enrollment {
	e.User, e.Class, e.School = href(base, e.User), href(base, e.Class), href(base, e.School)
	return e
}

func (o Org) withHrefs(base string) Org {
	o.Children = hrefs(base, o.Children)
	return o
}

// rosterObject is a OneRoster object the list endpoints page over: it has fields to filter and
// sort by, and hrefs to fill in.
type rosterObject[T any] interface {
	*T
	fielder
	withHrefs(base string) T
}

// writeList answers a OneRoster collection request: filter, sort and page items by the request's
// parameters, and write the page in the {"<key>": [...]} envelope.
func writeList[T any, P rosterObject[T]](w http.ResponseWriter, r *http.Request, c *apiCall, key string, items []P) int {
	lq, status := parseListQuery(w, r, P(new(T)).field)
	if status != 0 {
		return status
	}
	page := selectPage(items, lq)
	out := make([]T, len(page))
	for i, it := range page {
		out[i] = it.withHrefs(c.base)
	}
	return writeEnvelope(w, key, out)
}

func writeUsers(w http.ResponseWriter, r *http.Request, c *apiCall, users []*User) int {
	return writeList(w, r, c, "users", users)
}

func listUsers(role string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, c *apiCall) int {
		users := make([]*User, 0, len(c.roster.users))
		for i := range c.roster.users {
			if role == "" || c.roster.users[i].Role == role {
				users = append(users, &c.roster.users[i])
			}
		}
		return writeUsers(w, r, c, users)
	}
}

func getUser(role string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, c *apiCall) int {
		id := chi.URLParam(r, "id")
		i, ok := c.roster.userIdx[id]
		if !ok || (role != "" && c.roster.users[i].Role != role) {
			return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no user with sourcedId "+id)
		}
		u := c.roster.users[i].withHrefs(c.base)
		if c.mismatch {
			other := stableUUID(c.tenantID, "mismatch", id)
			u.SourcedID, u.Identifier = other, other
			u.UserIDs = []UserID{{Type: "uuid", Identifier: other}}
		}
		return writeEnvelope(w, "user", u)
	}
}

func listClasses(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	return writeClasses(w, r, c, ptrs(c.roster.classes))
}

func writeClasses(w http.ResponseWriter, r *http.Request, c *apiCall, classes []*Class) int {
	return writeList(w, r, c, "classes", classes)
}

func getClass(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	id := chi.URLParam(r, "id")
	i, ok := c.roster.classIdx[id]
	if !ok {
		return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no class with sourcedId "+id)
	}
	return writeEnvelope(w, "class", c.roster.classes[i].withHrefs(c.base))
}

func classMembers(role string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, c *apiCall) int {
		id := chi.URLParam(r, "id")
		ci, ok := c.roster.classIdx[id]
		if !ok {
			return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no class with sourcedId "+id)
		}
		var users []*User
		for _, ei := range c.roster.members[ci] {
			e := &c.roster.enrollments[ei]
			if e.Role == role {
				users = append(users, &c.roster.users[c.roster.userIdx[e.User.SourcedID]])
			}
		}
		return writeUsers(w, r, c, users)
	}
}

func listEnrollments(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	return writeList(w, r, c, "enrollments", ptrs(c.roster.enrollments))
}

func getEnrollment(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	id := chi.URLParam(r, "id")
	i, ok := c.roster.enrollIdx[id]
	if !ok {
		return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no enrollment with sourcedId "+id)
	}
	return writeEnvelope(w, "enrollment", c.roster.enrollments[i].withHrefs(c.base))
}

// OneRoster 1.1 answers the schools endpoints with the orgs envelope.
func listOrgs(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	return writeList(w, r, c, "orgs", []*Org{&c.roster.org})
}

func getOrg(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	id := chi.URLParam(r, "id")
	if id != c.roster.org.SourcedID {
		return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no org with sourcedId "+id)
	}
	return writeEnvelope(w, "org", c.roster.org.withHrefs(c.base))
}

func schoolUsers(role string) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, c *apiCall) int {
		if id := chi.URLParam(r, "id"); id != c.roster.org.SourcedID {
			return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no school with sourcedId "+id)
		}
		var users []*User
		for i := range c.roster.users {
			if c.roster.users[i].Role == role {
				users = append(users, &c.roster.users[i])
			}
		}
		return writeUsers(w, r, c, users)
	}
}

func schoolClasses(w http.ResponseWriter, r *http.Request, c *apiCall) int {
	if id := chi.URLParam(r, "id"); id != c.roster.org.SourcedID {
		return writeStatusInfo(w, http.StatusNotFound, "unknown_object", "no school with sourcedId "+id)
	}
	return writeClasses(w, r, c, ptrs(c.roster.classes))
}
