package platformsim

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
)

// The REST "extern" API (untis-platform-facts.md §4.2): WebUntis-specific resources below
// /WebUntis/api/rest/extern/v{n}/, called with the school's client-credentials token. The
// simulator serves a small, realistic part of it, the v1 student management: list, read, create
// and update students. Its errors are the platform's common error object {code, message}; a
// user's token gets 403 (the extern API is for the application, with its permissions in PAM).

const externPrefix = "/WebUntis/api/rest/extern"

// ExternStudent is a student as the extern student management API serves it.
type ExternStudent struct {
	ID               int    `json:"id"`
	DateLastModified string `json:"dateLastModified"`
	// ExternKey is the school's own key for the student (unique, at most 100 characters).
	ExternKey string `json:"externKey"`
	// ShortName is WebUntis' unique short name.
	ShortName string `json:"shortName"`
	Forename  string `json:"forename"`
	LastName  string `json:"lastName"`
	// ClassName is the WebUntis Klasse the student is in ("" for none).
	ClassName string `json:"className"`
}

// externData is one school's extern students: seeded from the roster on first use, then changed
// by the API's writes. Guarded by Sim.mu.
type externData struct {
	students []ExternStudent
	byID     map[int]int // id -> index
	nextID   int
}

// maxExternBody bounds a write's body.
const maxExternBody = 64 << 10

func (s *Sim) externRoutes(r chi.Router) {
	r.Get("/v1/students", s.externAPI(listExternStudents))
	r.Post("/v1/students", s.externAPI(createExternStudent))
	r.Get("/v1/students/{id}", s.externAPI(getExternStudent))
	r.Put("/v1/students/{id}", s.externAPI(updateExternStudent))
	r.NotFound(s.externAPI(func(w http.ResponseWriter, _ *http.Request, _ *externCall) int {
		return writeErrorObject(w, http.StatusNotFound, "no such extern API resource")
	}))
	r.MethodNotAllowed(s.externAPI(func(w http.ResponseWriter, _ *http.Request, _ *externCall) int {
		return writeErrorObject(w, http.StatusMethodNotAllowed, "the resource does not support this method")
	}))
}

// externCall is an authenticated extern call: the school the token belongs to.
type externCall struct {
	*apiCall
	sim *Sim
}

type externHandler func(w http.ResponseWriter, r *http.Request, c *externCall) int

// externAPI authenticates the bearer token like OneRoster does (with the same injected
// failures), lets only the application's own tokens through, runs h and records the call.
func (s *Sim) externAPI(h externHandler) http.HandlerFunc {
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
		case c.kind != TokenKindClientCredentials:
			status = writeErrorObject(w, http.StatusForbidden, "the extern API takes the application's client-credentials token, not a user's")
		default:
			status = h(w, r, &externCall{apiCall: c, sim: s})
		}
		s.record(r, c, status)
	}
}

// data returns the school's extern students, seeding them on first use. s.mu is held.
func (c *externCall) dataLocked() *externData {
	t := c.sim.tenants[c.tenantID]
	if t.extern == nil {
		t.extern = seedExtern(t.roster)
	}
	return t.extern
}

// seedExtern makes the extern view of the roster's students: numeric ids like WebUntis', the
// Klasse from the student's lessons.
func seedExtern(r *roster) *externData {
	d := &externData{byID: map[int]int{}, nextID: 1000}
	klasse := map[string]string{} // user sourcedId -> Klasse name
	for ci, cl := range r.classes {
		for _, ei := range r.members[ci] {
			e := r.enrollments[ei]
			if e.Role != RoleStudent {
				continue
			}
			if ks, _ := cl.Metadata["klassen"].([]map[string]string); len(ks) > 0 && klasse[e.User.SourcedID] == "" {
				klasse[e.User.SourcedID] = ks[0]["name"]
			}
		}
	}
	for _, u := range r.users {
		if u.Role != RoleStudent {
			continue
		}
		d.add(ExternStudent{
			DateLastModified: seedTimestamp,
			ExternKey:        "S-" + strconv.FormatUint(uint64(stableNumber(u.SourcedID, "externKey")%1_000_000), 10),
			ShortName:        u.Username,
			Forename:         u.GivenName, LastName: u.FamilyName,
			ClassName: klasse[u.SourcedID],
		})
	}
	return d
}

func (d *externData) add(st ExternStudent) ExternStudent {
	st.ID = d.nextID
	d.nextID++
	d.byID[st.ID] = len(d.students)
	d.students = append(d.students, st)
	return st
}

// ExternStudents returns a copy of a school's extern students (seeded on first use), in id
// order, for tests.
func (s *Sim) ExternStudents(tenantID string) []ExternStudent {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantID]
	if t == nil {
		return nil
	}
	if t.extern == nil {
		t.extern = seedExtern(t.roster)
	}
	return slices.Clone(t.extern.students)
}

func listExternStudents(w http.ResponseWriter, r *http.Request, c *externCall) int {
	q := r.URL.Query()
	limit, offset := defaultLimit, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return writeErrorObject(w, http.StatusBadRequest, "limit must be a positive integer")
		}
		limit = min(n, maxLimit)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return writeErrorObject(w, http.StatusBadRequest, "offset must be a non-negative integer")
		}
		offset = n
	}
	className := q.Get("className")
	c.sim.mu.Lock()
	all := c.dataLocked().students
	var page []ExternStudent
	for _, st := range all {
		if className != "" && st.ClassName != className {
			continue
		}
		if offset > 0 {
			offset--
			continue
		}
		if len(page) == limit {
			break
		}
		page = append(page, st)
	}
	c.sim.mu.Unlock()
	if page == nil {
		page = []ExternStudent{}
	}
	return writeEnvelope(w, "students", page)
}

func getExternStudent(w http.ResponseWriter, r *http.Request, c *externCall) int {
	id, err := strconv.Atoi(chi.URLParam(r, "id"))
	c.sim.mu.Lock()
	d := c.dataLocked()
	i, ok := d.byID[id]
	var st ExternStudent
	if ok {
		st = d.students[i]
	}
	c.sim.mu.Unlock()
	if err != nil || !ok {
		return writeErrorObject(w, http.StatusNotFound, "no student with id "+chi.URLParam(r, "id"))
	}
	writeJSON(w, http.StatusOK, st)
	return http.StatusOK
}

// readExternStudent reads a write's body: a JSON student with the required fields. On failure it
// has answered and returns the status.
func readExternStudent(w http.ResponseWriter, r *http.Request) (ExternStudent, int) {
	var st ExternStudent
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return st, writeErrorObject(w, http.StatusUnsupportedMediaType, "the body must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxExternBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return st, writeErrorObject(w, http.StatusRequestEntityTooLarge, "the body is too large")
	case err != nil:
		return st, writeErrorObject(w, http.StatusBadRequest, "the body could not be read")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil || dec.More() {
		return st, writeErrorObject(w, http.StatusBadRequest, "the body is not a student object")
	}
	for _, f := range []struct{ name, v string }{
		{"externKey", st.ExternKey}, {"shortName", st.ShortName}, {"forename", st.Forename}, {"lastName", st.LastName},
	} {
		if strings.TrimSpace(f.v) == "" {
			return st, writeErrorObject(w, http.StatusBadRequest, f.name+" is required")
		}
		if len(f.v) > 100 || !utf8.ValidString(f.v) {
			return st, writeErrorObject(w, http.StatusBadRequest, f.name+" must be at most 100 characters of text")
		}
	}
	return st, 0
}

// conflictLocked reports the unique field another student (not id) already has.
func (d *externData) conflictLocked(st ExternStudent, id int) string {
	for _, o := range d.students {
		switch {
		case o.ID == id:
		case o.ExternKey == st.ExternKey:
			return "externKey"
		case o.ShortName == st.ShortName:
			return "shortName"
		}
	}
	return ""
}

func createExternStudent(w http.ResponseWriter, r *http.Request, c *externCall) int {
	st, status := readExternStudent(w, r)
	if status != 0 {
		return status
	}
	c.sim.mu.Lock()
	d := c.dataLocked()
	if f := d.conflictLocked(st, -1); f != "" {
		c.sim.mu.Unlock()
		return writeErrorObject(w, http.StatusConflict, "a student with this "+f+" exists")
	}
	st.DateLastModified = c.sim.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	st = d.add(st)
	c.sim.mu.Unlock()
	w.Header().Set("Location", externPrefix+"/v1/students/"+strconv.Itoa(st.ID))
	writeJSON(w, http.StatusCreated, st)
	return http.StatusCreated
}

func updateExternStudent(w http.ResponseWriter, r *http.Request, c *externCall) int {
	id, err := strconv.Atoi(chi.URLParam(r, "id"))
	if err != nil {
		return writeErrorObject(w, http.StatusNotFound, "no student with id "+chi.URLParam(r, "id"))
	}
	st, status := readExternStudent(w, r)
	if status != 0 {
		return status
	}
	c.sim.mu.Lock()
	d := c.dataLocked()
	i, ok := d.byID[id]
	if !ok {
		c.sim.mu.Unlock()
		return writeErrorObject(w, http.StatusNotFound, "no student with id "+strconv.Itoa(id))
	}
	if f := d.conflictLocked(st, id); f != "" {
		c.sim.mu.Unlock()
		return writeErrorObject(w, http.StatusConflict, "a student with this "+f+" exists")
	}
	st.ID = id
	st.DateLastModified = c.sim.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	d.students[i] = st
	c.sim.mu.Unlock()
	writeJSON(w, http.StatusOK, st)
	return http.StatusOK
}

// writeErrorObject writes the platform's common error object; code repeats the status.
func writeErrorObject(w http.ResponseWriter, status int, message string) int {
	writeJSON(w, status, struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{status, message})
	return status
}
