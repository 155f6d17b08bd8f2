package platformsim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
)

// controlRoutes is the JSON control API for scripts and external tests,
// mounted at /sim/api.
func (s *Sim) controlRoutes(r chi.Router) {
	r.Get("/tenants", s.apiListTenants)
	r.Post("/tenants", s.apiAddTenant)
	r.Get("/tenants/{tenantID}", s.apiGetTenant)
	r.Get("/tenants/{tenantID}/users", s.apiUsers)
	r.Post("/tenants/{tenantID}/signed-in-user", s.apiSignedInUser)
	r.Post("/tenants/{tenantID}/revoke-tokens", s.apiRevokeTokens)
	r.Get("/tenants/{tenantID}/interop", s.apiGetInterop)
	r.Post("/tenants/{tenantID}/interop", s.apiSetInterop)
	r.Post("/tenants/{tenantID}/timetable", s.apiTimetable)
	r.Get("/signing-keys", s.apiSigningKeys)
	r.Post("/signing-keys/rotate", s.apiRotateSigningKey)
	r.Post("/signing-keys/remove-old", s.apiRemoveOldSigningKeys)
	r.Post("/tenants/{tenantID}/{action}", s.apiAction)
	r.Post("/faults", s.apiFault)
	r.Delete("/faults", s.apiClearFaults)
	r.Get("/stats", s.apiStats)
	r.Delete("/stats", s.apiResetStats)
	r.Get("/calls", s.apiCalls)
	r.Post("/clock", s.apiClock)
	r.Get("/webhook-public-key", s.apiWebhookKey)
	r.Post("/sign-webhook", s.apiSignWebhook)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, http.StatusNotFound, "no such control endpoint")
	})
}

func writeAPIError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// decodeBody reads a small JSON body into v; an empty body leaves v as is.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	err := json.NewDecoder(r.Body).Decode(v)
	if err != nil && !errors.Is(err, io.EOF) {
		writeAPIError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
		return false
	}
	return true
}

func (s *Sim) apiListTenants(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Tenants())
}

func (s *Sim) apiAddTenant(w http.ResponseWriter, r *http.Request) {
	var spec TenantSpec
	if !decodeBody(w, r, &spec) {
		return
	}
	ti, err := s.AddTenant(spec)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, ti)
}

func (s *Sim) apiGetTenant(w http.ResponseWriter, r *http.Request) {
	ti, ok := s.Tenant(chi.URLParam(r, "tenantID"))
	if !ok {
		writeAPIError(w, http.StatusNotFound, ErrUnknownTenant.Error())
		return
	}
	writeJSON(w, http.StatusOK, ti)
}

// apiUsers lists a tenant's users, optionally of one role (?role=teacher).
func (s *Sim) apiUsers(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	if _, ok := s.Tenant(tid); !ok {
		writeAPIError(w, http.StatusNotFound, ErrUnknownTenant.Error())
		return
	}
	role := r.URL.Query().Get("role")
	users := s.Users(tid)
	out := users[:0]
	for _, u := range users {
		if role == "" || u.Role == role {
			out = append(out, u.withHrefs(s.BaseURL()))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) apiSignedInUser(w http.ResponseWriter, r *http.Request) {
	var body struct {
		SourcedID string `json:"sourcedId"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if err := s.SetSignedInUser(chi.URLParam(r, "tenantID"), body.SourcedID); err != nil {
		writeControlErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) apiRevokeTokens(w http.ResponseWriter, r *http.Request) {
	if err := s.RevokeTokens(chi.URLParam(r, "tenantID")); err != nil {
		writeControlErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func writeControlErr(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrUnknownTenant) || errors.Is(err, errUnknownAction) {
		writeAPIError(w, http.StatusNotFound, err.Error())
		return
	}
	writeAPIError(w, http.StatusBadRequest, err.Error())
}

// apiAction runs activate, reactivate, reset, deactivate, delete or replay
// and answers with the partner's response to the webhook. deactivate and
// delete take an optional body {reasonType, reasonText, legacyTypeField}.
func (s *Sim) apiAction(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ReasonType      string `json:"reasonType"`
		ReasonText      string `json:"reasonText"`
		LegacyTypeField bool   `json:"legacyTypeField"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	opt := &DeactivationOptions{ReasonType: body.ReasonType, ReasonText: body.ReasonText, LegacyTypeField: body.LegacyTypeField}
	res, err := s.runAction(r.Context(), chi.URLParam(r, "tenantID"), chi.URLParam(r, "action"), opt)
	switch {
	case errors.Is(err, ErrUnknownTenant) || errors.Is(err, errUnknownAction):
		writeControlErr(w, err)
	case err != nil:
		// The platform side changed; only the delivery failed.
		writeAPIError(w, http.StatusBadGateway, err.Error())
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// faultRequest names a fault for POST /sim/api/faults.
type faultRequest struct {
	// Fault is one of: id_token (with Kind), api, token, token_delay,
	// authorize, revoke_tokens, rotate_signing_key, remove_old_signing_keys, clear; or an id_token
	// fault name directly (e.g. "wrong_nonce").
	Fault    string `json:"fault"`
	TenantID string `json:"tenantId"`
	Kind     string `json:"kind"`
	N        int    `json:"n"`
	Status   int    `json:"status"`
	Error    string `json:"error"`
	DelayMS  int    `json:"delayMs"`
	KeepOld  bool   `json:"keepOld"`
}

func (s *Sim) apiFault(w http.ResponseWriter, r *http.Request) {
	var f faultRequest
	if !decodeBody(w, r, &f) {
		return
	}
	n := f.N
	if n == 0 {
		n = 1
	}
	var err error
	switch f.Fault {
	case "id_token":
		err = s.InjectIDTokenFault(f.TenantID, IDTokenFault(f.Kind))
	case "api":
		err = s.FailNextAPICalls(f.TenantID, n, f.Status)
	case "token":
		err = s.FailNextTokenRequests(f.TenantID, n, f.Status, f.Error)
	case "token_delay":
		s.SetTokenDelay(time.Duration(f.DelayMS) * time.Millisecond)
	case "authorize":
		err = s.InjectAuthorizeError(f.TenantID, f.Error)
	case "revoke_tokens":
		err = s.RevokeTokens(f.TenantID)
	case "rotate_signing_key":
		var kid string
		if kid, err = s.RotateSigningKey(f.KeepOld); err == nil {
			writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
			return
		}
	case "remove_old_signing_keys":
		s.RemoveOldSigningKeys()
	case "clear":
		s.ClearFaults()
	default:
		if IDTokenFault(f.Fault).valid() {
			err = s.InjectIDTokenFault(f.TenantID, IDTokenFault(f.Fault))
		} else {
			writeAPIError(w, http.StatusBadRequest, "unknown fault "+f.Fault)
			return
		}
	}
	if err != nil {
		writeControlErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) apiClearFaults(w http.ResponseWriter, r *http.Request) {
	s.ClearFaults()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) apiStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Sim) apiResetStats(w http.ResponseWriter, r *http.Request) {
	s.ResetStats()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) apiCalls(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.APICalls())
}

// apiClock moves the simulator's clock: {"advanceSeconds": 200}.
func (s *Sim) apiClock(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AdvanceSeconds float64 `json:"advanceSeconds"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	if body.AdvanceSeconds < 0 {
		writeAPIError(w, http.StatusBadRequest, "the clock only moves forward")
		return
	}
	s.Advance(time.Duration(body.AdvanceSeconds * float64(time.Second)))
	writeJSON(w, http.StatusOK, map[string]time.Time{"now": s.Now()})
}

func (s *Sim) apiWebhookKey(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, s.WebhookPublicKey()+"\n")
}

// apiSignWebhook signs the raw request body, for tests that build their
// own webhook bodies: {"authorization": ..., "algorithm": ...}.
func (s *Sim) apiSignWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "could not read the body")
		return
	}
	auth, alg := s.SignWebhook(body)
	writeJSON(w, http.StatusOK, map[string]string{"authorization": auth, "algorithm": alg})
}

func (s *Sim) apiGetInterop(w http.ResponseWriter, r *http.Request) {
	o, ok := s.Interop(chi.URLParam(r, "tenantID"))
	if !ok {
		writeAPIError(w, http.StatusNotFound, ErrUnknownTenant.Error())
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// apiSetInterop changes the switches the body names and keeps the others:
// {"alternativeEndpoints": true}, {"basicAuthOnly": false} or {"postAuthOnly": true}
// (basicAuthOnly and postAuthOnly cannot both be on: 400). It answers with all of them.
func (s *Sim) apiSetInterop(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	var body struct {
		AlternativeEndpoints *bool `json:"alternativeEndpoints"`
		BasicAuthOnly        *bool `json:"basicAuthOnly"`
		PostAuthOnly         *bool `json:"postAuthOnly"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	o, ok := s.Interop(tid)
	if !ok {
		writeAPIError(w, http.StatusNotFound, ErrUnknownTenant.Error())
		return
	}
	if body.AlternativeEndpoints != nil {
		o.AlternativeEndpoints = *body.AlternativeEndpoints
	}
	if body.BasicAuthOnly != nil {
		o.BasicAuthOnly = *body.BasicAuthOnly
	}
	if body.PostAuthOnly != nil {
		o.PostAuthOnly = *body.PostAuthOnly
	}
	if err := s.SetInterop(tid, o); err != nil {
		writeControlErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func (s *Sim) apiSigningKeys(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.SigningKeys())
}

// apiRotateSigningKey signs with a new key from now on: {"keepOld": false} also drops the old
// keys from the JWKS at once; by default they stay published (a graceful rotation).
func (s *Sim) apiRotateSigningKey(w http.ResponseWriter, r *http.Request) {
	var body struct {
		KeepOld *bool `json:"keepOld"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	keep := body.KeepOld == nil || *body.KeepOld
	if _, err := s.RotateSigningKey(keep); err != nil {
		writeAPIError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.SigningKeys())
}

func (s *Sim) apiRemoveOldSigningKeys(w http.ResponseWriter, r *http.Request) {
	s.RemoveOldSigningKeys()
	writeJSON(w, http.StatusOK, s.SigningKeys())
}

// apiTimetable plays the timetable view: {"user": sourcedId, "startDate": "2023-03-10",
// "endDate": "2023-03-13"} (defaults: the signed-in user, else the first teacher; this week's
// Monday to Friday). It answers with the partner's answer, read (TimetableResult); 502 when the
// partner could not be asked.
func (s *Sim) apiTimetable(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tenantID")
	var body struct {
		User      string `json:"user"`
		StartDate string `json:"startDate"`
		EndDate   string `json:"endDate"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	ti, ok := s.Tenant(tid)
	if !ok {
		writeAPIError(w, http.StatusNotFound, ErrUnknownTenant.Error())
		return
	}
	user := body.User
	if user == "" {
		user = ti.SignedInUser
	}
	if user == "" {
		if u, ok := s.UserByRole(tid, RoleTeacher); ok {
			user = u.SourcedID
		}
	}
	start, end, err := s.timetableDates(body.StartDate, body.EndDate)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.TimetableView(r.Context(), tid, user, start, end)
	if err != nil {
		writeAPIError(w, http.StatusBadGateway, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}
