package exampleapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// platformAPI is the server's platform API (its internal listener) as a partner's app uses it:
// a bearer token, the school in the path, the platform's own OneRoster paths and parameters
// after it. The app never holds a school's credentials or token: the server does.
type platformAPI struct {
	base    string // without a trailing slash
	token   string
	timeout time.Duration
	client  *http.Client
}

func newPlatformAPI(base, token string, timeout time.Duration) *platformAPI {
	if i := strings.IndexByte(token, ','); i >= 0 {
		token = token[:i] // INTERNAL_API_TOKEN may list several (a rotation); the first is ours
	}
	return &platformAPI{
		base: strings.TrimSuffix(base, "/"), token: strings.TrimSpace(token), timeout: timeout,
		// The timeout covers the body too: a stalled answer ends as a message on the page, not a
		// page that never loads. The internal API itself cuts a stalled platform after 60 s.
		client: &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// teacher is what the page shows of a OneRoster user.
type teacher struct {
	SourcedID  string `json:"sourcedId"`
	Status     string `json:"status"`
	Username   string `json:"username"`
	GivenName  string `json:"givenName"`
	FamilyName string `json:"familyName"`
	Email      string `json:"email"`
}

// Name is "Family, Given" as a staff list shows it.
func (t teacher) Name() string {
	switch {
	case t.FamilyName != "" && t.GivenName != "":
		return t.FamilyName + ", " + t.GivenName
	case t.FamilyName != "" || t.GivenName != "":
		return t.FamilyName + t.GivenName
	}
	return t.Username
}

// apiError is why the platform API gave no teachers, in plain words for the page, with what the
// API said for whoever looks into it.
type apiError struct {
	Words     string // for the user
	Type      string // the problem's type, when the API answered with one
	Status    int
	Detail    string
	RequestID string
}

// Tenant ids as the platform sends them; anything else is not put into a path.
var tenantIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// maxAnswer bounds the answer the app reads: a page of 50 users is about 35 KB.
const maxAnswer = 4 << 20

// teachers asks for one page of the school's teachers (OneRoster getAllTeachers), sorted by family
// name. The platform sends no total: a page shorter than limit is the last one.
func (p *platformAPI) teachers(ctx context.Context, tenantID string, offset, limit int) ([]teacher, *apiError) {
	if !tenantIDPattern.MatchString(tenantID) {
		return nil, &apiError{Words: "The school's id is not one the platform uses, so the app does not ask for it."}
	}
	q := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(offset)}, "sort": {"familyName"}}
	target := p.base + "/v1/schools/" + tenantID + "/ims/oneroster/v1p1/teachers?" + q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, &apiError{Words: "The request to the platform API could not be made: " + err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, p.transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	switch {
	case err != nil:
		return nil, p.transportError(err)
	case len(body) > maxAnswer:
		return nil, &apiError{Words: fmt.Sprintf("The platform API's answer is larger than %d MiB; the app does not read it.", maxAnswer>>20), Status: resp.StatusCode}
	case resp.StatusCode != http.StatusOK:
		return nil, problemWords(resp, body)
	}
	var page struct {
		Users []teacher `json:"users"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, &apiError{Words: "The platform API's answer is not the OneRoster list the app expects.", Status: resp.StatusCode, Detail: err.Error()}
	}
	return page.Users, nil
}

func (p *platformAPI) transportError(err error) *apiError {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return &apiError{Words: fmt.Sprintf("The platform API did not answer within %s. Try again in a moment.", p.timeout)}
	}
	if errors.Is(err, context.Canceled) {
		return &apiError{Words: "The request was cancelled."}
	}
	// The error names the address (never the token, which is only in a header).
	return &apiError{Words: "The platform API at " + p.base + " cannot be reached: is the server running with INTERNAL_LISTEN_ADDR?", Detail: err.Error()}
}

// problemWords turns an answer other than 200 into plain words. The internal API answers RFC 9457
// problems whose type is stable (README "The platform API"); the app branches on it, never on
// the title or detail, which are for people.
func problemWords(resp *http.Response, body []byte) *apiError {
	e := &apiError{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-Id")}
	var pb struct {
		Type            string `json:"type"`
		Title           string `json:"title"`
		Detail          string `json:"detail"`
		State           string `json:"state"`
		RetryAfter      int    `json:"retryAfter"`
		PlatformStatus  int    `json:"platformStatus"`
		PlatformMessage string `json:"platformMessage"`
		RequestID       string `json:"requestId"`
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "application/problem+json" || json.Unmarshal(body, &pb) != nil || pb.Type == "" {
		e.Words = fmt.Sprintf("The platform API answered %d without saying why.", resp.StatusCode)
		return e
	}
	e.Type, e.Detail = pb.Type, pb.Detail
	if pb.RequestID != "" {
		e.RequestID = pb.RequestID
	}
	later := ""
	if pb.RetryAfter > 0 {
		later = fmt.Sprintf(" The server tries again in %d s.", pb.RetryAfter)
	}
	switch strings.TrimPrefix(pb.Type, "/problems/") {
	case "credentials-failing":
		e.Words = "The school's credentials are failing: the Untis Platform refuses them, so the app cannot read the school's data. " +
			"An administrator of the school can reset the app's credentials in WebUntis." + later
	case "school-not-active":
		e.Words = "The school is not active for this app" + orEmpty(" (it is "+pb.State+")", pb.State) + ": its data is not read from the platform."
	case "school-not-found":
		e.Words = "The server does not know this school: it was never activated for the app."
	case "platform-refused":
		e.Words = "The Untis Platform refused to list the school's teachers"
		if pb.PlatformStatus == http.StatusForbidden {
			e.Words += ": the app lacks the permission at this school"
		}
		e.Words += "." + orEmpty(" It said: "+pb.PlatformMessage, pb.PlatformMessage)
	case "platform-unavailable":
		e.Words = "The Untis Platform is not available right now. Try again in a moment."
	case "unauthorized":
		e.Words = "The server does not accept the app's token for the platform API: the app's INTERNAL_API_TOKEN is not one of the server's."
	case "internal-error":
		e.Words = "The server failed to answer; its log has the reason under request id " + e.RequestID + "."
	default:
		e.Words = "The platform API could not answer: " + pb.Title + "."
	}
	return e
}

// orEmpty is s, or "" when cond is empty.
func orEmpty(s, cond string) string {
	if cond == "" {
		return ""
	}
	return s
}
