package sso

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/store"
)

// appBase is where the app is served; a return path resolved against it must stay there.
var appBase = &url.URL{Scheme: "https", Host: "app.example", Path: "/"}

// returnPathRejects must all be refused. The open-redirect entries follow oauth2-proxy's
// redirect validator tests (pkg/app/redirect/validator_test.go and testdata/openredirects.txt),
// cut down to what matters for a path-only validator.
var returnPathRejects = []struct{ name, in string }{
	{"empty", ""},
	{"relative host", "evil.com"},
	{"relative dot", "."},
	{"relative dotdot", ".."},
	{"relative path", "a/b"},
	{"query only", "?x=1"},
	{"fragment only", "#x"},

	// Protocol-relative and backslash forms.
	{"double slash", "//evil.com"},
	{"triple slash", "///evil.com"},
	{"many slashes", "/////evil.com/"},
	{"slash backslash", "/\\evil.com"},
	{"backslash backslash", "\\\\evil.com"},
	{"backslash slash", "\\/evil.com"},
	{"backslash in path", "/a\\b"},
	{"slash backslash slash", "/\\/evil.com/"},
	{"dot backslash", "/./\\evil.com"},
	{"dotdot backslash", "/./../../\\evil.com"},
	{"semicolon at", "///\\;@evil.com"},
	{"double slash userinfo", "//app.example@evil.com/"},
	{"double slash tab", "//\tevil.com"},

	// Whitespace that browsers strip or that is not a path character.
	{"space slash", "/ /evil.com"},
	{"space backslash", "/ \\evil.com"},
	{"tab slash", "/\t/evil.com"},
	{"tab backslash", "/\t\\evil.com"},
	{"vtab slash", "/\v/evil.com"},
	{"vtab backslash", "/\v\\evil.com"},
	{"LF slash", "/\n/evil.com"},
	{"LF backslash", "/\n\\evil.com"},
	{"CR slash", "/\r/evil.com"},
	{"CR backslash", "/\r\\evil.com"},
	{"CRLF slash", "/\r\n/evil.com"},
	{"double tab", "/\t/\t\\evil.com"},
	{"triple tab 1", "/\t\t/\t/evil.com"},
	{"triple tab 2", "/\t\t\\\t/evil.com"},
	{"quad tab 1", "/\t\t/\t\t\\evil.com"},
	{"quad tab 2", "/\t\t\\\t\t/evil.com"},
	{"leading tab", "\t//evil.com"},
	{"leading space", " /a"},
	{"trailing space", "/a "},
	{"inner space", "/a b"},
	{"NUL", "/a\x00b"},
	{"NUL after slash", "/\x00/evil.com"},
	{"DEL", "/a\x7f"},
	{"form feed", "/\f/evil.com"},
	{"header injection", "/a\r\nSet-Cookie: x=1"},

	// The same, percent-encoded.
	{"encoded tab", "/%09/evil.com"},
	{"encoded LF", "/%0a/evil.com"},
	{"encoded LF upper", "/%0A/evil.com"},
	{"encoded CR", "/%0d/evil.com"},
	{"encoded CR upper", "/%0D/evil.com"},
	{"encoded NUL", "/a%00b"},
	{"encoded header injection", "/a%0d%0aSet-Cookie:%20x=1"},
	{"encoded slashes", "/%2F%2Fevil.com"},
	{"encoded slashes lower", "/%2f%2fevil.com"},
	{"encoded slash in segment", "/a%2fb"},
	{"encoded backslash", "/%5Cevil.com"},
	{"encoded backslash lower", "/%5cevil.com"},
	{"encoded slash backslash", "/%2f%5c%2f%67%6f%6f%67%6c%65%2e%63%6f%6d/"},
	{"encoded leading slashes", "%2F%2Fevil"},
	{"encoded leading slash", "%2Fevil"},
	{"encoded scheme", "%68%74%74%70%3a%2f%2f%67%6f%6f%67%6c%65%2e%63%6f%6d"},
	{"encoded slash dotdot", "/evil.com/%2f%2e%2e"},
	{"double-encoded pieces", "/%252f%252fevil.com%0a"},

	// Schemes.
	{"http", "http://x"},
	{"https", "https://x"},
	{"https evil", "https://evil.com/timetable"},
	{"https userinfo", "https://app.example@evil.com/"},
	{"javascript", "javascript:alert(1)"},
	{"javascript mixed case", "JaVaScRiPt:alert(1)"},
	{"javascript slashes", "javascript://%0aalert(1)"},
	{"data", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="},
	{"vbscript", "vbscript:msgbox(1)"},
	{"scheme no slashes", "http:evil.com"},
	{"mailto", "mailto:a@evil.com"},
	{"encoded-tab scheme", "%19Jav%09asc%09ript:https%20://evil.com/"},

	// Non-ASCII and Unicode tricks.
	{"ideographic full stop", "/\u3002evil"},
	{"ideographic full stop host", "//evil\u3002com"},
	{"fullwidth solidus", "\uff0f\uff0fevil.com"},
	{"slash fullwidth solidus", "/\uff0fevil.com"},
	{"fullwidth reverse solidus", "/\uff3cevil.com"},
	{"division slash", "/\u2215evil.com"},
	{"RTL override", "/a\u202eb"},
	{"line separator", "/a\u2028b"},
	{"latin-1 byte", "/caf\xe9"},
	{"invalid UTF-8", "/\xff\xfe"},
	{"NBSP", "/\u00a0/evil.com"},

	// Back into the sign-in: a loop.
	{"launch", "/launch"},
	{"launch slash", "/launch/"},
	{"launch sub", "/launch/x"},
	{"launch query", "/launch?tenant_id=1"},
	{"launch code", "/launch?code=abc&state=xyz"},
	{"launch fragment", "/launch#x"},
	{"dot launch", "/./launch"},
	{"dotdot launch", "/x/../launch"},
	{"deep dotdot launch", "/a/b/../../launch?x=1"},
	{"launch dot", "/launch/."},
	{"double slash launch", "//launch"},
	{"encoded dotdot launch", "/x/%2e%2e/launch"},
	{"encoded dotdot launch upper", "/x/%2E%2E/launch"},
	{"encoded dotdot at root", "/%2e%2e/launch"},
	{"half-encoded dotdot", "/x/.%2e/launch"},
	{"encoded dot launch", "/%2e/launch"},
	{"launch encoded dot", "/launch/%2e"},
	{"encoded letter launch", "/%6caunch"},
	{"encoded letters launch", "/%6C%61%75%6E%63%68?code=1"},

	// The gateway's machine endpoints: nothing there for a person.
	{"forward-auth", "/_untis/auth"},
	{"untis root", "/_untis"},
	{"untis static", "/_untis/static/app.css"},
	{"dotdot untis", "/x/../_untis/auth"},
	{"encoded untis", "/%5funtis/auth"},

	// Too long.
	{"over-long", "/" + strings.Repeat("a", maxReturnPathLength)},
	{"over-long query", "/a?" + strings.Repeat("x", maxReturnPathLength)},
	{"over-long once escaped", "/" + strings.Repeat("\"", 400)},

	// Not parseable.
	{"bad escape", "/a%zz"},
	{"truncated escape", "/a%2"},
}

// returnPathAccepts are inside the app and come back cleaned.
var returnPathAccepts = []struct{ in, want string }{
	{"/", "/"},
	{"/timetable", "/timetable"},
	{"/a/b?x=1&y=2", "/a/b?x=1&y=2"},
	{"/a/b/", "/a/b/"},
	{"/a/./b", "/a/b"},
	{"/a#frag", "/a#frag"},
	{"/a%20b", "/a%20b"},
	{"/a/../b", "/b"},
	{"/../..", "/"},
	{"/a/b/..", "/a"},
	{"/./", "/"},
	{"/.", "/"},
	{"/a//b", "/a/b"},
	{"/a/../..//evil.com", "/evil.com"},
	{"/launchpad", "/launchpad"},
	{"/_untisx", "/_untisx"},
	{"/x/_untis/auth", "/x/_untis/auth"},
	{"/x/launch", "/x/launch"},
	{"/timetable?next=/launch", "/timetable?next=/launch"},
	{"/timetable?return_to=//evil.com", "/timetable?return_to=//evil.com"},
	{"/a?", "/a"},
	{"/a#b#c", "/a#b%23c"},
	{"/a\"b", "/a%22b"},
	{"/%EF%BC%8Fevil.com", "/%EF%BC%8Fevil.com"},
	{"/https://evil.com", "/https:/evil.com"},
	{"/a:b", "/a:b"},
	{"/" + strings.Repeat("a", maxReturnPathLength-1), "/" + strings.Repeat("a", maxReturnPathLength-1)},
}

func TestSafeReturnPathRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range returnPathRejects {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got, ok := SafeReturnPath(tc.in); ok || got != "" {
				t.Errorf("SafeReturnPath(%q) = (%q, %v), want rejected", tc.in, got, ok)
			}
		})
	}
}

func TestSafeReturnPathAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range returnPathAccepts {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got, ok := SafeReturnPath(tc.in)
			if !ok || got != tc.want {
				t.Fatalf("SafeReturnPath(%q) = (%q, %v), want (%q, true)", tc.in, got, ok, tc.want)
			}
			checkReturnPath(t, got)
		})
	}
}

// TestSafeReturnPathOpenRedirectCorpus feeds entries of the oauth2-proxy corpus, raw and
// query-unescaped once as oauth2-proxy does: whatever is accepted must stay inside the app.
func TestSafeReturnPathOpenRedirectCorpus(t *testing.T) {
	t.Parallel()
	corpus := []string{
		"/%09/example.com", "/%2f%2f%2fbing.com%2f%3fwww.omise.co", "/%5cexample.com@google.com",
		"//%09/example.com", "//%2fxgoogle.com", "//%5cjavascript:alert(1)", "///%09/example.com",
		"////%5cexample.com", "////\\;@example.com", "////example.com/%2e%2e", "///example.com/%2f..",
		"//3H6k7lIAiqjfNeN@example.com+@google.com/", "//;@google.com", "//google%00.com",
		"//google%E3%80%82com", "//google.com:80#@example.com/", "//google.com:80?@example.com/",
		"//google.com\\@example.com", "//https:///example.com/%2e%2e", "//javascript:alert(1);",
		"/<>//example.com", "/\\/\\/example.com/", "/example.com/%2f%2e%2e", "/http://example.com",
		"/http://%67%6f%6f%67%6c%65%2e%63%6f%6d", "/https:/%5cexample.com/", "/https://%09/example.com",
		"/https:///example.com/%2e%2e", "/https://example.com@google.com/%2f..",
		"/x:1/:///%01javascript:alert(document.cookie)/", "<>//google.com", "@google.com",
		"Javas%26%2399;ript:alert(1)", "\\/\\/google.com/", "\\j\\av\\a\\s\\cr\\i\\pt\\:\\a\\l\\ert\\(1\\)",
		"http://google.com%2f%2f.example.com/", "http://[::ffff:216.58.214.206]", "http:3627734734",
		"\";alert(0);//", ".localdomain.pw",
	}
	for _, raw := range corpus {
		ins := []string{raw}
		if un, err := url.QueryUnescape(raw); err == nil && un != raw {
			ins = append(ins, un)
		}
		for _, in := range ins {
			if out, ok := SafeReturnPath(in); ok {
				t.Run(fmt.Sprintf("%q", in), func(t *testing.T) { checkReturnPath(t, out) })
			}
		}
	}
}

// checkReturnPath asserts what an accepted return path must be: printable ASCII starting with
// one slash, resolving to this app over https, not leading back to /launch by any reading
// (literal, decoded, or a browser's treatment of %2e segments), and a fixed point.
func checkReturnPath(t *testing.T, out string) {
	t.Helper()
	if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") {
		t.Fatalf("%q: must start with exactly one slash", out)
	}
	for i := 0; i < len(out); i++ {
		if c := out[i]; c < 0x21 || c >= 0x7f || c == '\\' {
			t.Fatalf("%q: byte %#x at %d", out, c, i)
		}
	}
	if len(out) > maxReturnPathLength {
		t.Fatalf("%q: longer than %d", out, maxReturnPathLength)
	}
	ref, err := url.Parse(out)
	if err != nil {
		t.Fatalf("%q: does not parse: %v", out, err)
	}
	res := appBase.ResolveReference(ref)
	if res.Scheme != "https" || res.Host != "app.example" || res.User != nil {
		t.Fatalf("%q resolves to %q, off the app", out, res)
	}
	if isLaunchPath(out) {
		t.Fatalf("%q leads back to /launch", out)
	}
	for _, p := range []string{path.Clean(res.Path), browserPath(res.EscapedPath())} {
		if p == "/launch" || strings.HasPrefix(p, "/launch/") {
			t.Fatalf("%q resolves to %q: back to /launch", out, p)
		}
	}
	if again, ok := SafeReturnPath(out); !ok || again != out {
		t.Fatalf("SafeReturnPath(%q) = (%q, %v), want it unchanged (idempotent)", out, again, ok)
	}
}

func isLaunchPath(s string) bool {
	return s == "/launch" || strings.HasPrefix(s, "/launch?") || strings.HasPrefix(s, "/launch/") ||
		strings.HasPrefix(s, "/launch#")
}

// browserPath removes dot segments the way the WHATWG URL parser does, which unlike RFC 3986
// (and net/url) also reads "%2e" as a dot.
func browserPath(p string) string {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	var out []string
	for i, s := range segs {
		last := i == len(segs)-1
		switch strings.ToLower(s) {
		case ".", "%2e":
			if last {
				out = append(out, "")
			}
		case "..", ".%2e", "%2e.", "%2e%2e":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/")
}

func TestBrowserPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/":                "/",
		"/a/b":             "/a/b",
		"/x/%2e%2e/launch": "/launch",
		"/%2E/launch":      "/launch",
		"/a/.%2e/":         "/",
		"/a/b/%2e":         "/a/b/",
	} {
		if got := browserPath(in); got != want {
			t.Errorf("browserPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLaunch(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name        string
		q           url.Values
		wantErr     error
		wantTenant  string
		wantReturn  string            // "" means "/"
		wantContext map[string]string // nil means empty
		wantDropped []string
	}{
		{name: "tenant_id", q: url.Values{"tenant_id": {"42"}}, wantTenant: "42"},
		{name: "tenantId", q: url.Values{"tenantId": {"42"}}, wantTenant: "42"},
		{name: "both equal", q: url.Values{"tenant_id": {"42"}, "tenantId": {"42"}}, wantTenant: "42"},
		{name: "both different", q: url.Values{"tenant_id": {"42"}, "tenantId": {"43"}}, wantErr: ErrBadTenant},
		{name: "valid and invalid", q: url.Values{"tenant_id": {"42"}, "tenantId": {"../1"}}, wantErr: ErrBadTenant},
		{name: "none", q: url.Values{}, wantErr: ErrNoTenant},
		{name: "none with context", q: url.Values{"school": {"x"}, "return_to": {"/a"}}, wantErr: ErrNoTenant},
		{name: "empty tenant_id", q: url.Values{"tenant_id": {""}}, wantErr: ErrNoTenant},
		{name: "empty tenant_id, tenantId set", q: url.Values{"tenant_id": {""}, "tenantId": {"7"}}, wantTenant: "7"},
		{name: "tenant letters", q: url.Values{"tenant_id": {"test-School_1"}}, wantTenant: "test-School_1"},
		{name: "tenant max length", q: url.Values{"tenant_id": {long(maxTenantIDLen)}}, wantTenant: long(maxTenantIDLen)},
		{name: "tenant too long", q: url.Values{"tenant_id": {long(maxTenantIDLen + 1)}}, wantErr: ErrBadTenant},
		{name: "tenant traversal", q: url.Values{"tenant_id": {"../1"}}, wantErr: ErrBadTenant},
		{name: "tenant slash", q: url.Values{"tenant_id": {"1/2"}}, wantErr: ErrBadTenant},
		{name: "tenant dot", q: url.Values{"tenant_id": {"1.2"}}, wantErr: ErrBadTenant},
		{name: "tenant space", q: url.Values{"tenant_id": {"4 2"}}, wantErr: ErrBadTenant},
		{name: "tenant trailing space", q: url.Values{"tenantId": {"42 "}}, wantErr: ErrBadTenant},
		{name: "tenant newline", q: url.Values{"tenant_id": {"42\n"}}, wantErr: ErrBadTenant},
		{name: "tenant NUL", q: url.Values{"tenant_id": {"42\x00"}}, wantErr: ErrBadTenant},
		{name: "tenant fullwidth digits", q: url.Values{"tenant_id": {"\uff14\uff12"}}, wantErr: ErrBadTenant},
		{name: "tenant unicode letter", q: url.Values{"tenant_id": {"sch\u00fcle"}}, wantErr: ErrBadTenant},
		{name: "tenant multi-valued", q: url.Values{"tenant_id": {"1", "2"}}, wantTenant: "1"},
		{
			name: "reserved not context",
			q: url.Values{
				"tenant_id": {"1"}, "tenantId": {"1"}, "return_to": {"/a"}, "code": {"c"}, "state": {"s"},
				"error": {"e"}, "error_description": {"d"}, "error_uri": {"u"}, "iss": {"https://idp"},
				"session_state": {"ss"},
			},
			wantTenant: "1", wantReturn: "/a",
		},
		{
			name: "known context kept as strings",
			q: url.Values{
				"tenant_id": {"1"}, "school": {"Gymnasium M\u00fcnchen"}, "lesson_id": {"123"},
				"period_id": {"456"}, "class_ids": {"1,2,3"}, "subject_ids": {"7"}, "exam_id": {"0042"},
				"date": {"2024-05-06"}, "start": {"2024-05-06T08:00"}, "end": {"2024-05-06T08:45"},
			},
			wantTenant: "1",
			wantContext: map[string]string{
				"school": "Gymnasium M\u00fcnchen", "lesson_id": "123", "period_id": "456", "class_ids": "1,2,3",
				"subject_ids": "7", "exam_id": "0042", "date": "2024-05-06", "start": "2024-05-06T08:00",
				"end": "2024-05-06T08:45",
			},
		},
		{
			name:        "unknown context kept",
			q:           url.Values{"tenant_id": {"1"}, "foo": {"bar"}, "x.y-z_1": {"v"}, "empty": {""}},
			wantTenant:  "1",
			wantContext: map[string]string{"foo": "bar", "x.y-z_1": "v", "empty": ""},
		},
		{
			name:        "multi-valued keeps first",
			q:           url.Values{"tenant_id": {"1"}, "school": {"a", "b"}, "return_to": {"/first", "//evil.com"}},
			wantTenant:  "1",
			wantReturn:  "/first",
			wantContext: map[string]string{"school": "a"},
		},
		{
			name:        "key length bound",
			q:           url.Values{"tenant_id": {"1"}, long(MaxLaunchKeyLen): {"k"}, long(MaxLaunchKeyLen + 1): {"x"}},
			wantTenant:  "1",
			wantContext: map[string]string{long(MaxLaunchKeyLen): "k"},
			wantDropped: []string{"(unprintable or long name)"},
		},
		{
			name:        "value length bound",
			q:           url.Values{"tenant_id": {"1"}, "ok": {long(MaxLaunchValueLen)}, "big": {long(MaxLaunchValueLen + 1)}},
			wantTenant:  "1",
			wantContext: map[string]string{"ok": long(MaxLaunchValueLen)},
			wantDropped: []string{"big"},
		},
		{
			name: "control characters dropped",
			q: url.Values{
				"tenant_id": {"1"}, "nul": {"a\x00b"}, "tab": {"a\tb"}, "lf": {"a\nb"}, "cr": {"a\rb"},
				"del": {"a\x7fb"}, "c1": {"a\u0085b"}, "ls": {"a\u2028b"}, "ps": {"a\u2029b"},
				"badutf8": {"a\xffb"}, "fine": {"a b <c> & \"d\""},
			},
			wantTenant:  "1",
			wantContext: map[string]string{"fine": "a b <c> & \"d\""},
			wantDropped: []string{"badutf8", "c1", "cr", "del", "lf", "ls", "nul", "ps", "tab"},
		},
		{
			name:        "bad keys dropped, name hidden",
			q:           url.Values{"tenant_id": {"1"}, "bad key": {"x"}, "sch\u00fcle": {"x"}, "a\nb": {"x"}, "": {"x"}},
			wantTenant:  "1",
			wantDropped: []string{"(unprintable or long name)", "(unprintable or long name)", "(unprintable or long name)", "(unprintable or long name)"},
		},
		{name: "return_to double slash", q: url.Values{"tenant_id": {"1"}, "return_to": {"//evil.com"}}, wantTenant: "1"},
		{name: "return_to scheme", q: url.Values{"tenant_id": {"1"}, "return_to": {"https://evil.com/"}}, wantTenant: "1"},
		{name: "return_to launch", q: url.Values{"tenant_id": {"1"}, "return_to": {"/launch?tenant_id=1"}}, wantTenant: "1"},
		{name: "return_to encoded launch", q: url.Values{"tenant_id": {"1"}, "return_to": {"/x/%2e%2e/launch"}}, wantTenant: "1"},
		{name: "return_to backslash", q: url.Values{"tenant_id": {"1"}, "return_to": {"/\\evil.com"}}, wantTenant: "1"},
		{name: "return_to relative", q: url.Values{"tenant_id": {"1"}, "return_to": {"evil.com"}}, wantTenant: "1"},
		{name: "return_to cleaned", q: url.Values{"tenant_id": {"1"}, "return_to": {"/a/./b?x=1"}}, wantTenant: "1", wantReturn: "/a/b?x=1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := ParseLaunch(tc.q)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if l.TenantID != tc.wantTenant {
				t.Errorf("TenantID = %q, want %q", l.TenantID, tc.wantTenant)
			}
			wantReturn := tc.wantReturn
			if wantReturn == "" {
				wantReturn = "/"
			}
			if l.ReturnTo != wantReturn {
				t.Errorf("ReturnTo = %q, want %q", l.ReturnTo, wantReturn)
			}
			wantContext := tc.wantContext
			if wantContext == nil {
				wantContext = map[string]string{}
			}
			if !reflect.DeepEqual(l.Context, wantContext) {
				t.Errorf("Context = %q, want %q", l.Context, wantContext)
			}
			dropped := append([]string(nil), l.Dropped...)
			sort.Strings(dropped)
			if len(dropped) != 0 || len(tc.wantDropped) != 0 {
				if !reflect.DeepEqual(dropped, tc.wantDropped) {
					t.Errorf("Dropped = %q, want %q", dropped, tc.wantDropped)
				}
			}
			checkLaunch(t, tc.q, l)
		})
	}
}

// TestParseLaunchCountBound: past MaxLaunchParams the extra parameters are dropped and named,
// and which ones survive does not depend on map order.
func TestParseLaunchCountBound(t *testing.T) {
	t.Parallel()
	const n = MaxLaunchParams + 6
	q := url.Values{"tenant_id": {"1"}, "return_to": {"/a"}, "code": {"c"}, "state": {"s"}}
	var all []string
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("p%02d", n-1-i) // inserted in reverse order
		q.Set(k, "v"+k)
		all = append(all, k)
	}
	sort.Strings(all)
	first, err := ParseLaunch(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Context) != MaxLaunchParams {
		t.Fatalf("len(Context) = %d, want %d", len(first.Context), MaxLaunchParams)
	}
	for _, k := range all[:MaxLaunchParams] {
		if first.Context[k] != "v"+k {
			t.Errorf("Context[%q] = %q, want %q", k, first.Context[k], "v"+k)
		}
	}
	if !reflect.DeepEqual(first.Dropped, all[MaxLaunchParams:]) {
		t.Errorf("Dropped = %q, want %q", first.Dropped, all[MaxLaunchParams:])
	}
	checkLaunch(t, q, first)
	for i := 0; i < 50; i++ {
		// A fresh map each time, so Go's map iteration order differs between runs.
		q2 := url.Values{}
		for k, v := range q {
			q2[k] = v
		}
		again, err := ParseLaunch(q2)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Fatalf("run %d: %+v, first run %+v", i, again, first)
		}
	}
}

// checkLaunch asserts the invariants of a successful ParseLaunch of q.
func checkLaunch(t *testing.T, q url.Values, l Launch) {
	t.Helper()
	if !store.ValidTenantID(l.TenantID) {
		t.Errorf("TenantID %q is not valid", l.TenantID)
	}
	if len(l.Context) > MaxLaunchParams {
		t.Errorf("len(Context) = %d > %d", len(l.Context), MaxLaunchParams)
	}
	nonReserved := 0
	for k := range q {
		if !reservedParams[k] {
			nonReserved++
		}
	}
	// Dropped names at most maxDroppedNamed parameters, then "(more)".
	if n := len(l.Dropped); n > maxDroppedNamed+1 || (n == maxDroppedNamed+1 && l.Dropped[n-1] != "(more)") {
		t.Errorf("Dropped is unbounded: %d names", n)
	}
	if got := len(l.Context) + len(l.Dropped); len(l.Dropped) <= maxDroppedNamed && got != nonReserved {
		t.Errorf("Context (%d) + Dropped (%d) = %d, want the %d non-reserved parameters", len(l.Context), len(l.Dropped), got, nonReserved)
	}
	size := 0
	for k, v := range l.Context {
		size += len(k) + len(v)
		if reservedParams[k] {
			t.Errorf("reserved %q in Context", k)
		}
		if k == "" || len(k) > MaxLaunchKeyLen || len(v) > MaxLaunchValueLen {
			t.Errorf("Context[%q] = %q out of bounds", k, v)
		}
		if vs := q[k]; len(vs) == 0 || vs[0] != v {
			t.Errorf("Context[%q] = %q, not the first value of %q", k, v, vs)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			t.Errorf("Context[%q] = %q: invalid UTF-8", k, v)
		}
		for _, r := range k + v {
			if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r) {
				t.Errorf("Context[%q] = %q: control or format character %U", k, v, r)
			}
		}
	}
	if size > MaxLaunchContextBytes {
		t.Errorf("the context holds %d bytes, over %d", size, MaxLaunchContextBytes)
	}
	for _, d := range l.Dropped {
		if d != "(unprintable or long name)" && d != "(more)" && !validContextKey(d) {
			t.Errorf("Dropped name %q is not loggable", d)
		}
	}
	if p, ok := SafeReturnPath(l.ReturnTo); !ok || p != l.ReturnTo {
		t.Errorf("ReturnTo %q does not pass SafeReturnPath unchanged: (%q, %v)", l.ReturnTo, p, ok)
	}
}

func FuzzSafeReturnPath(f *testing.F) {
	for _, tc := range returnPathRejects {
		f.Add(tc.in)
	}
	for _, tc := range returnPathAccepts {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, ok := SafeReturnPath(in)
		if !ok {
			if out != "" {
				t.Fatalf("SafeReturnPath(%q) = (%q, false), want empty on rejection", in, out)
			}
			return
		}
		checkReturnPath(t, out)
	})
}

func FuzzParseLaunch(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Skip()
		}
		l, err := ParseLaunch(q)
		if err != nil {
			if !errors.Is(err, ErrNoTenant) && !errors.Is(err, ErrBadTenant) {
				t.Fatalf("ParseLaunch(%q): unexpected error %v", raw, err)
			}
			return
		}
		checkLaunch(t, q, l)
		again, err := ParseLaunch(q)
		if err != nil || !reflect.DeepEqual(again, l) {
			t.Fatalf("ParseLaunch(%q) not deterministic: %+v then %+v, %v", raw, l, again, err)
		}
	})
}

func TestParseLaunchDroppedIsBounded(t *testing.T) {
	t.Parallel()
	q := url.Values{"tenant_id": {"1"}}
	for i := range 500 {
		q.Set(fmt.Sprintf("p%03d", i), "v")
	}
	l, err := ParseLaunch(q)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Context) != MaxLaunchParams || len(l.Dropped) != maxDroppedNamed+1 || l.Dropped[maxDroppedNamed] != "(more)" {
		t.Errorf("Context %d, Dropped %v", len(l.Context), l.Dropped)
	}
	if l, _ := ParseLaunch(url.Values{"tenant_id": {"1"}, "school": {"abc\u202edef"}}); l.Context["school"] != "" {
		t.Errorf("a bidi override was kept: %q", l.Context["school"])
	}
}

// TestParseLaunchSizeBound: the whole context is bounded (it is stored with every started
// sign-in, from a URL anyone can send), and the platform's own parameters are kept before
// made-up ones.
func TestParseLaunchSizeBound(t *testing.T) {
	t.Parallel()
	q := url.Values{"tenant_id": {"1"}, "lesson_id": {"4711"}, "school": {"Gymnasium Nord"}, "date": {"2026-03-01"}}
	// Maximal parameters whose names sort before the platform's.
	for i := range MaxLaunchParams {
		q.Set(fmt.Sprintf("a%02d", i), strings.Repeat("x", MaxLaunchValueLen))
	}
	l, err := ParseLaunch(q)
	if err != nil {
		t.Fatal(err)
	}
	checkLaunch(t, q, l)
	if l.Context["lesson_id"] != "4711" || l.Context["school"] != "Gymnasium Nord" || l.Context["date"] != "2026-03-01" {
		t.Errorf("the platform's parameters were pushed out: %v", l.Context)
	}
	size := 0
	for k, v := range l.Context {
		size += len(k) + len(v)
	}
	// What fits: the platform's three, then as many 515-byte ones as the rest allows.
	if want := len("lesson_id4711schoolGymnasium Norddate2026-03-01") + 3*(3+MaxLaunchValueLen); size != want {
		t.Errorf("the context holds %d bytes, want %d", size, want)
	}
	if len(l.Dropped) != maxDroppedNamed+1 {
		t.Errorf("Dropped %v", l.Dropped)
	}
}

func TestParseLaunchDropsFormatCharacters(t *testing.T) {
	t.Parallel()
	for name, v := range map[string]string{
		"zero-width space": "Gym\u200bnasium", "byte order mark": "\ufeffGymnasium", "left-to-right mark": "Gym\u200enasium",
		"arabic letter mark": "Gym\u061cnasium", "soft hyphen": "Gym\u00adnasium", "RTL isolate": "Gym\u2067nasium",
	} {
		l, err := ParseLaunch(url.Values{"tenant_id": {"1"}, "school": {v}, "lesson_id": {"7"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, kept := l.Context["school"]; kept || l.Context["lesson_id"] != "7" || !slices.Contains(l.Dropped, "school") {
			t.Errorf("%s: context %q, dropped %v", name, l.Context, l.Dropped)
		}
	}
	// Letters of every script stay.
	if l, _ := ParseLaunch(url.Values{"tenant_id": {"1"}, "school": {"Gymnasium Süd – Ελληνικό 学校"}}); l.Context["school"] == "" {
		t.Error("a school name in several scripts was dropped")
	}
}
