package internalapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"
)

// kind is one kind of problem the API answers (RFC 9457): a stable type (what the app branches
// on), a title that does not change from occurrence to occurrence, and the usual status.
type kind struct {
	slug   string
	title  string
	status int
	doc    string // what it means and what to do; served at the type's URI
}

// typeURI is the problem's type: a relative URI, resolved against the request's URL to this
// listener's /problems/{slug}, which describes it.
func (k *kind) typeURI() string { return "/problems/" + k.slug }

// The problem kinds. Their slugs are part of the API: never change one.
var (
	kindUnauthorized = &kind{"unauthorized", "Missing or wrong API token", http.StatusUnauthorized,
		"The request has no Authorization: Bearer header with one of the tokens in INTERNAL_API_TOKEN. Nothing was done."}
	kindBadRequest = &kind{"bad-request", "Bad request", http.StatusBadRequest,
		"The request cannot be sent to the platform as it is: a malformed tenant id, a path that is not a plain platform API path (dot segments, encoded slashes or dots, a \";\", a trailing slash), a query with characters that must be percent-encoded, or a parameter of this API out of range. detail says which. Nothing was sent to the platform."}
	kindNotFound = &kind{"not-found", "Not found", http.StatusNotFound,
		"This API has no such route, or the platform answered 404: it does not know the object asked for (objects of another school included). platformStatus says whether the platform answered."}
	kindMethodNotAllowed = &kind{"method-not-allowed", "Method not allowed", http.StatusMethodNotAllowed,
		"The route does not take this method; the Allow header lists those it takes. OneRoster is read-only; writes to the extern API are allowed only for the paths in INTERNAL_API_WRITE_PATHS."}
	kindWriteNotAllowed = &kind{"write-not-allowed", "Write not allowed for this path", http.StatusForbidden,
		"The operator has not allowed this method on this extern API path (INTERNAL_API_WRITE_PATHS). Nothing was sent to the platform."}
	kindTooLarge = &kind{"body-too-large", "Request body too large", http.StatusRequestEntityTooLarge,
		"The body of a write is larger than INTERNAL_API_MAX_BODY. Nothing was sent to the platform."}
	kindSchoolNotFound = &kind{"school-not-found", "Unknown school", http.StatusNotFound,
		"The server knows no school with this tenant id: it was never activated for the app."}
	kindSchoolNotActive = &kind{"school-not-active", "School not active", http.StatusForbidden,
		"The school is deactivated or deleted (state says which): its data is not fetched from the platform. A school becomes reachable again when it reactivates the app."}
	kindCredentialsFailing = &kind{"credentials-failing", "The school's credentials are failing", http.StatusServiceUnavailable,
		"The platform refused the school's credentials. Calls for the school fail at once, without asking the platform, until the backoff ends (Retry-After); they work again once the platform accepts the credentials, usually after the school's administrator resets the app's credentials in WebUntis. The operator console shows the reason."}
	kindPlatformRefused = &kind{"platform-refused", "The platform refused the request", http.StatusBadRequest,
		"The platform answered with a 4xx (other than 401, 404 and 429): a filter or field it does not know, a permission the app lacks at this school (403), a conflict (409). The status is the platform's; platformStatus, platformCode and platformMessage carry what it said."}
	kindPlatformUnavailable = &kind{"platform-unavailable", "The platform is unavailable", http.StatusBadGateway,
		"The platform failed (5xx), could not be reached, answered too slowly (504), asked us to slow down (429; 503 with Retry-After), or answered something the API does not promise. GETs were retried already; writes are never retried (the platform may have acted on them)."}
	kindInternal = &kind{"internal-error", "Internal error", http.StatusInternalServerError,
		"The server failed (its database, for example). The log line with this requestId says why."}
)

var kinds = []*kind{
	kindUnauthorized, kindBadRequest, kindNotFound, kindMethodNotAllowed, kindWriteNotAllowed, kindTooLarge,
	kindSchoolNotFound, kindSchoolNotActive, kindCredentialsFailing, kindPlatformRefused, kindPlatformUnavailable,
	kindInternal,
}

// problem is one answer in application/problem+json. Extension members carry what the app may
// act on; none of them ever holds a token or a secret.
type problem struct {
	kind   *kind
	status int // 0: the kind's
	detail string

	TenantID        string `json:"tenantId,omitempty"`
	State           string `json:"state,omitempty"`
	PlatformStatus  int    `json:"platformStatus,omitempty"`
	PlatformCode    string `json:"platformCode,omitempty"`
	PlatformMessage string `json:"platformMessage,omitempty"`
	// retryAfter, in whole seconds, goes into the Retry-After header and the body.
	retryAfter int
	allow      string // the Allow header of a 405
}

// problemBody is the JSON of a problem.
type problemBody struct {
	Type            string `json:"type"`
	Title           string `json:"title"`
	Status          int    `json:"status"`
	Detail          string `json:"detail,omitempty"`
	Instance        string `json:"instance,omitempty"`
	RequestID       string `json:"requestId,omitempty"`
	TenantID        string `json:"tenantId,omitempty"`
	State           string `json:"state,omitempty"`
	RetryAfter      int    `json:"retryAfter,omitempty"`
	PlatformStatus  int    `json:"platformStatus,omitempty"`
	PlatformCode    string `json:"platformCode,omitempty"`
	PlatformMessage string `json:"platformMessage,omitempty"`
}

// writeProblem answers with p. The instance is the request's path (never its query, which may
// hold a filter with a person's name).
func writeProblem(w http.ResponseWriter, r *http.Request, p problem) {
	status := p.status
	if status == 0 {
		status = p.kind.status
	}
	body := problemBody{
		Type: p.kind.typeURI(), Title: p.kind.title, Status: status, Detail: p.detail,
		Instance: r.URL.EscapedPath(), RequestID: w.Header().Get("X-Request-Id"),
		TenantID: p.TenantID, State: p.State, RetryAfter: p.retryAfter,
		PlatformStatus: p.PlatformStatus, PlatformCode: p.PlatformCode, PlatformMessage: p.PlatformMessage,
	}
	b, err := marshal(body)
	if err != nil {
		b = []byte(`{"type":"` + kindInternal.typeURI() + `","title":"Internal error","status":500}`)
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.retryAfter))
	}
	if p.allow != "" {
		h.Set("Allow", p.allow)
	}
	if p.kind == kindUnauthorized {
		challenge := `Bearer realm="untis-partner-internal"`
		if p.detail == detailWrongToken {
			challenge += `, error="invalid_token"`
		}
		h.Set("WWW-Authenticate", challenge)
	}
	setOutcome(r, p.kind.slug)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// marshal is json.Marshal without HTML escaping: the answers are JSON for programs, where
// "<token>" reads better than "\u003ctoken\u003e" (the problem type says nosniff).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// serveProblemDoc answers GET /problems/{slug}: what the problem type means, in plain text (it
// needs no token: it is documentation).
func serveProblemDoc(w http.ResponseWriter, r *http.Request) {
	slug := chi.URLParam(r, "slug")
	for _, k := range kinds {
		if k.slug == slug {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "max-age=3600")
			setOutcome(r, "ok")
			_, _ = w.Write([]byte(k.title + " (" + strconv.Itoa(k.status) + ")\n\n" + k.doc + "\n"))
			return
		}
	}
	writeProblem(w, r, problem{kind: kindNotFound, detail: "There is no such problem type."})
}
