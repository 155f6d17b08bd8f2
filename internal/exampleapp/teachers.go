package exampleapp

import (
	"net/http"
	"strconv"
)

// teachersPerPage is the page size the app asks the platform for.
const teachersPerPage = 50

// maxOffset bounds ?offset= (no school has a million teachers).
const maxOffset = 1_000_000

// verifiedSchool is the school a request may act for: the tenant_id of its verified
// X-Untis-Identity token, and nothing else. An app must never take the school from a request
// parameter or a form field, and not from the X-Untis-Tenant-Id header alone either: whoever
// reaches the app without the gateway can send any header, and only the gateway's signature
// says the user belongs to that school. ok is false when the token did not verify; v says why.
func (a *app) verifiedSchool(r *http.Request) (id identity, v verified, ok bool) {
	id = fromHeaders(r)
	if !id.Present {
		return id, verified{Reason: "no X-Untis-Identity header came with the request"}, false
	}
	v = a.verifier.Verify(r.Context(), id.Token)
	return id, v, v.OK && v.Claims != nil && v.Claims.TenantID != ""
}

// teachersPage is what the teachers page shows.
type teachersPage struct {
	ID        identity
	Token     verified
	Verified  bool
	Connected bool   // the app has the platform API's address and token
	School    string // the verified tenant id asked for
	Teachers  []teacher
	Err       *apiError
	Offset    int
	Limit     int
	Prev      int
	HasPrev   bool
	HasNext   bool
}

// handleTeachers lists the teachers of the signed-in user's school through the server's platform
// API (OneRoster getAllTeachers), a page at a time.
func (a *app) handleTeachers(w http.ResponseWriter, r *http.Request) {
	offset := 0
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxOffset {
			http.Error(w, "offset must be a whole number from 0 to 1000000", http.StatusBadRequest)
			return
		}
		offset = n
	}
	id, v, ok := a.verifiedSchool(r)
	p := teachersPage{ID: id, Token: v, Verified: ok, Connected: a.api != nil, Offset: offset, Limit: teachersPerPage}
	if ok && a.api != nil {
		p.School = v.Claims.TenantID // the verified school: see verifiedSchool
		p.Teachers, p.Err = a.api.teachers(r.Context(), p.School, offset, teachersPerPage)
		if p.Err != nil {
			a.log.Warn("teachers: the platform API gave none", "tenant", p.School, "status", p.Err.Status, "type", p.Err.Type, "request_id", p.Err.RequestID)
		}
		p.HasPrev, p.Prev = offset > 0, max(offset-teachersPerPage, 0)
		p.HasNext = p.Err == nil && len(p.Teachers) == teachersPerPage
	}
	a.render(w, "teachers.html", p)
}
