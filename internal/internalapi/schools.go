package internalapi

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/untis-partner/server/internal/store"
)

// School is a school as the API shows it. The informational fields come from the platform's
// credentials webhook (or are empty); they inform and never decide anything.
type School struct {
	TenantID string `json:"tenantId"`
	// State is active, pending_setup, deactivated or deleted.
	State string `json:"state"`
	// Reachable says whether the platform API routes reach the school's data (active or
	// pending setup).
	Reachable bool   `json:"reachable"`
	Name      string `json:"name"`
	Country   string `json:"country"`
	Region    string `json:"region"`
	Language  string `json:"language"`
	Host      string `json:"host"`
	Contacts  struct {
		ActivatorEmail    string `json:"activatorEmail"`
		ActivatorUsername string `json:"activatorUsername"`
		SchoolEmail       string `json:"schoolEmail"`
		SchoolPhone       string `json:"schoolPhone"`
	} `json:"contacts"`
	// CredentialsFailingSince is set while the platform refuses the school's credentials.
	CredentialsFailingSince *time.Time `json:"credentialsFailingSince"`
	StateChangedAt          time.Time  `json:"stateChangedAt"`
	CreatedAt               time.Time  `json:"createdAt"`
	// Setup holds the school's answers to SETUP_FIELDS_FILE's fields, by field name (only in
	// GET /v1/schools/{tenantId}, where it is always present, {} without answers).
	Setup *map[string]string `json:"setup,omitempty"`
}

func schoolOf(t store.Tenant) School {
	s := School{
		TenantID: t.ID, State: t.State, Reachable: reachable(t.State), Name: t.Name,
		Country: t.Country, Region: t.Region, Language: t.Language, Host: t.Host,
		CredentialsFailingSince: t.CredentialsFailingSince, StateChangedAt: t.StateChangedAt.UTC(), CreatedAt: t.CreatedAt.UTC(),
	}
	if s.CredentialsFailingSince != nil {
		at := s.CredentialsFailingSince.UTC()
		s.CredentialsFailingSince = &at
	}
	s.Contacts.ActivatorEmail, s.Contacts.ActivatorUsername = t.ActivatorEmail, t.ActivatorUsername
	s.Contacts.SchoolEmail, s.Contacts.SchoolPhone = t.SchoolEmail, t.SchoolPhone
	return s
}

// reachable: the states whose school the platform API routes call for.
func reachable(state string) bool {
	return state == store.StateActive || state == store.StatePendingSetup
}

// Listing limits.
const (
	defaultListLimit = 100
	maxListLimit     = 1000
)

var knownStates = []string{store.StateActive, store.StatePendingSetup, store.StateDeactivated, store.StateDeleted}

// listSchools answers GET /v1/schools?limit=&after=&state=: schools in tenant id order, a page
// at a time; next is the URL of the next page while the page is full.
func (a *API) listSchools(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			writeProblem(w, r, problem{kind: kindBadRequest, detail: "limit must be a whole number from 1 to 1000."})
			return
		}
		limit = n
	}
	after := q.Get("after")
	if after != "" && !store.ValidTenantID(after) {
		writeProblem(w, r, problem{kind: kindBadRequest, detail: "after must be a tenant id (the last one of the previous page)."})
		return
	}
	var states []string
	if v := q.Get("state"); v != "" {
		for s := range strings.SplitSeq(v, ",") {
			if !slices.Contains(knownStates, s) {
				writeProblem(w, r, problem{kind: kindBadRequest,
					detail: "state must be a comma-separated list of active, pending_setup, deactivated, deleted."})
				return
			}
			states = append(states, s)
		}
	}
	tenants, err := a.store.ListSchools(r.Context(), after, limit, states)
	if err != nil {
		a.internalError(w, r, "list schools", err)
		return
	}
	out := struct {
		Schools []School `json:"schools"`
		Next    *string  `json:"next"`
	}{Schools: make([]School, 0, len(tenants))}
	for _, t := range tenants {
		out.Schools = append(out.Schools, schoolOf(t))
	}
	if len(tenants) == limit {
		next := url.Values{"after": {tenants[len(tenants)-1].ID}, "limit": {strconv.Itoa(limit)}}
		if len(states) > 0 {
			next.Set("state", strings.Join(states, ","))
		}
		u := "/v1/schools?" + next.Encode()
		out.Next = &u
	}
	writeJSON(w, r, out)
}

// getSchool answers GET /v1/schools/{tenantId}: the school with its setup answers.
func (a *API) getSchool(w http.ResponseWriter, r *http.Request) {
	tenantID, ok := tenantParam(w, r)
	if !ok {
		return
	}
	t, err := a.store.Tenant(r.Context(), tenantID)
	if errors.Is(err, store.ErrNotFound) {
		writeProblem(w, r, problem{kind: kindSchoolNotFound, TenantID: tenantID,
			detail: "No school with this tenant id has activated the app."})
		return
	}
	if err != nil {
		a.internalError(w, r, "read school", err)
		return
	}
	s := schoolOf(t)
	answers, err := a.store.SetupAnswers(r.Context(), tenantID)
	if err != nil {
		a.internalError(w, r, "read setup answers", err)
		return
	}
	if answers == nil {
		answers = map[string]string{}
	}
	s.Setup = &answers
	writeJSON(w, r, s)
}

// tenantParam reads and checks the route's tenant id; a malformed one has been answered.
func tenantParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := chi.URLParam(r, "tenantId")
	if !store.ValidTenantID(id) {
		writeProblem(w, r, problem{kind: kindBadRequest, detail: "The tenant id must be 1-64 letters, digits, '-' or '_'."})
		return "", false
	}
	stateOf(r).tenantID = id
	return id, true
}

func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := marshal(v)
	if err != nil {
		writeProblem(w, r, problem{kind: kindInternal})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	setOutcome(r, "ok")
	_, _ = w.Write(b)
}

// internalError logs a failure of the server itself and answers 500 with the request id.
func (a *API) internalError(w http.ResponseWriter, r *http.Request, what string, err error) {
	a.log.Error("internal api: "+what, "err", err, "tenant_id", stateOf(r).tenantID,
		"request_id", w.Header().Get("X-Request-Id"))
	writeProblem(w, r, problem{kind: kindInternal, detail: "The server could not " + what + "; its log has the reason under this requestId."})
}
