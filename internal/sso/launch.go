package sso

import (
	"errors"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/store"
)

// Bounds on the launch context. The parameters are hints from a URL anyone can craft, so they
// are kept as plain strings, few and short; what does not fit is dropped, never an error: a user
// clicking an entry point must not be stopped because the platform added a parameter.
const (
	MaxLaunchParams   = 24
	MaxLaunchKeyLen   = 64
	MaxLaunchValueLen = 512
	// MaxLaunchContextBytes bounds the whole context (names and values): it is stored with every
	// started sign-in, by a URL anyone can send. The platform's own parameters take a few dozen
	// bytes.
	MaxLaunchContextBytes = 2048
	maxTenantIDLen        = store.MaxTenantIDLen
	maxReturnPathLength   = 1024
	maxDroppedNamed       = 16
)

// Parameters of /launch that are not launch context: the tenant hint, the return path, and the
// OAuth callback's own parameters.
var reservedParams = map[string]bool{
	"tenant_id": true, "tenantId": true, "return_to": true,
	"code": true, "state": true, "error": true, "error_description": true, "error_uri": true,
	"iss": true, "session_state": true,
}

// Launch is what an entry point's URL says: which school's sign-in to start, where to land
// afterwards, and the context the user came from (school, lesson, period, ...). None of it is
// proof of anything.
type Launch struct {
	TenantID string
	ReturnTo string
	Context  map[string]string
	// Dropped names the parameters left out of Context for breaking the bounds (for the log).
	Dropped []string
}

// ErrNoTenant and ErrBadTenant are the launch URL faults that stop a launch.
var (
	ErrNoTenant  = errors.New("the launch URL names no school (tenant_id)")
	ErrBadTenant = errors.New("the launch URL's school id is not valid")
)

// ParseLaunch reads a launch URL's query. The school comes from tenant_id (or tenantId); both
// present and different is an error, as is neither. return_to is kept only when it is a safe
// path inside the app (SafeReturnPath), else "/".
func ParseLaunch(q url.Values) (Launch, error) {
	l := Launch{ReturnTo: "/", Context: map[string]string{}}
	a, b := first(q, "tenant_id"), first(q, "tenantId")
	switch {
	case a == "" && b == "":
		return l, ErrNoTenant
	case a != "" && b != "" && a != b:
		return l, ErrBadTenant
	case a != "":
		l.TenantID = a
	default:
		l.TenantID = b
	}
	if !store.ValidTenantID(l.TenantID) {
		return l, ErrBadTenant
	}
	if p, ok := SafeReturnPath(first(q, "return_to")); ok {
		l.ReturnTo = p
	}
	// The platform's own parameters first, then the others sorted: which ones survive the bounds
	// does not depend on map order, and made-up ones cannot push out the lesson.
	keys := make([]string, 0, len(q))
	for _, k := range platformParams {
		if q.Has(k) {
			keys = append(keys, k)
		}
	}
	rest := len(keys)
	for k := range q {
		if !slices.Contains(platformParams, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys[rest:])
	size := 0
	for _, k := range keys {
		if reservedParams[k] {
			continue
		}
		v := first(q, k)
		if len(l.Context) >= MaxLaunchParams || size+len(k)+len(v) > MaxLaunchContextBytes ||
			!validContextKey(k) || !validContextValue(v) {
			// The log line names a bounded number of them: a URL may carry thousands.
			switch {
			case len(l.Dropped) < maxDroppedNamed:
				l.Dropped = append(l.Dropped, boundedName(k))
			case len(l.Dropped) == maxDroppedNamed:
				l.Dropped = append(l.Dropped, "(more)")
			}
			continue
		}
		l.Context[k] = v
		size += len(k) + len(v)
	}
	return l, nil
}

// platformParams are the context parameters the platform's entry points send (contract.md).
var platformParams = []string{"school", "lesson_id", "period_id", "date", "start", "end", "class_ids", "subject_ids", "exam_id"}

func first(q url.Values, k string) string {
	if vs := q[k]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func validContextKey(k string) bool {
	if k == "" || len(k) > MaxLaunchKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validContextValue accepts printable UTF-8 up to the length bound: no control characters, so
// a value can be logged and shown without surprises.
func validContextValue(v string) bool {
	if len(v) > MaxLaunchValueLen || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		// Also the line and paragraph separators, and every format character (Unicode category
		// Cf): the bidirectional overrides and isolates, which make shown text lie about its
		// order, and the invisible zero-width ones.
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r) {
			return false
		}
	}
	return true
}

// boundedName keeps a dropped parameter's name loggable.
func boundedName(k string) string {
	if !validContextKey(k) {
		return "(unprintable or long name)"
	}
	return k
}

// noLanding reports whether a cleaned path is no place to land after signing in: /launch (it
// would start another sign-in, a loop), and the gateway's machine endpoints under /_untis/
// (forward-auth, keys, static files), which show a person nothing.
func noLanding(p string) bool {
	return p == "/launch" || strings.HasPrefix(p, "/launch/") || p == "/_untis" || strings.HasPrefix(p, "/_untis/")
}

// SafeReturnPath reports whether p is a path inside this app that a redirect may send the user
// to, and returns it cleaned. It must start with exactly one '/', contain no backslash, no
// control character or space, no scheme or host, no encoded slash or backslash, and must not
// lead back into the sign-in itself (/launch would start another sign-in, a loop) or to the
// gateway's machine endpoints (/_untis/).
func SafeReturnPath(p string) (string, bool) {
	if p == "" || len(p) > maxReturnPathLength || p[0] != '/' {
		return "", false
	}
	if len(p) > 1 && (p[1] == '/' || p[1] == '\\') {
		return "", false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		// Browsers strip tabs and newlines from URLs ("/\t/evil" becomes "//evil"); backslashes
		// are read as slashes. Only printable ASCII is accepted; anything else must be escaped.
		if c <= 0x20 || c >= 0x7f || c == '\\' {
			return "", false
		}
	}
	lower := strings.ToLower(p)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%09") ||
		strings.Contains(lower, "%0a") || strings.Contains(lower, "%0d") || strings.Contains(lower, "%00") {
		return "", false
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", false
	}
	// Cleaned in its escaped form, so what the browser receives is exactly what was checked.
	escaped := u.EscapedPath()
	clean := path.Clean(escaped)
	if strings.HasPrefix(clean, "//") || noLanding(clean) {
		return "", false
	}
	// The loop check also runs on the decoded path: browsers read "%2e%2e" as "..", so
	// "/x/%2e%2e/launch" arrives as /launch, and "/%6caunch" is /launch to whatever decodes it.
	if noLanding(path.Clean(u.Path)) {
		return "", false
	}
	out := clean
	if strings.HasSuffix(escaped, "/") && clean != "/" {
		out += "/"
	}
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	if u.Fragment != "" {
		out += "#" + u.EscapedFragment()
	}
	// Escaping can lengthen it ('"' becomes "%22"); the bound holds for what is returned too.
	if len(out) > maxReturnPathLength {
		return "", false
	}
	return out, true
}
