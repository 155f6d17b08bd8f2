package gateway

import (
	"bufio"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestPercentEncodingDecodesEverywhere(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"Jürgen", "J%C3%BCrgen"},
		{"Groß", "Gro%C3%9F"},
		{"O'Brien-Smith", "O%27Brien-Smith"},
		{"Anne Marie", "Anne%20Marie"},
		{"a+b@schule.example", "a%2Bb%40schule.example"},
		{"Zoë 🎓", "Zo%C3%AB%20%F0%9F%8E%93"},
		{"100%", "100%25"},
		{"line\r\nX-Untis-Role: administrator", "line%0D%0AX-Untis-Role%3A%20administrator"},
		{"plain-ASCII_1.2~", "plain-ASCII_1.2~"},
		{"", ""},
	}
	for _, tt := range tests {
		got := percentEncode(tt.in)
		if got != tt.want {
			t.Errorf("percentEncode(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for i := 0; i < len(got); i++ {
			if got[i] < 0x21 || got[i] > 0x7e {
				t.Errorf("percentEncode(%q) = %q holds byte %#x", tt.in, got, got[i])
			}
		}
		// urldecode / unquote / decodeURIComponent read it back, and so do form decoders.
		if back, err := url.PathUnescape(got); err != nil || back != tt.in {
			t.Errorf("PathUnescape(%q) = %q, %v", got, back, err)
		}
		if back, err := url.QueryUnescape(got); err != nil || back != tt.in {
			t.Errorf("QueryUnescape(%q) = %q, %v", got, back, err)
		}
	}
}

func TestTruncateKeepsWholeCharacters(t *testing.T) {
	t.Parallel()
	s := strings.Repeat("ü", 200) // 400 bytes
	got := truncate(s, 255)
	if len(got) != 254 || !strings.HasPrefix(s, got) {
		t.Errorf("truncate cut %d bytes: %q", len(got), got[len(got)-4:])
	}
	if truncate("short", 10) != "short" {
		t.Error("a short string was changed")
	}
}

func TestFormEncodingIsSortedDecodableAndBounded(t *testing.T) {
	t.Parallel()
	m := map[string]string{"school": "Gymnasium Süd", "lesson_id": "L 1&2=3", "date": "2026-12-06", "a+b": "x"}
	enc, kept, dropped := formEncode(m)
	if enc != "a%2Bb=x&date=2026-12-06&lesson_id=L+1%262%3D3&school=Gymnasium+S%C3%BCd" {
		t.Errorf("formEncode = %q", enc)
	}
	if len(dropped) != 0 || len(kept) != 4 {
		t.Errorf("kept %v, dropped %v", kept, dropped)
	}
	q, err := url.ParseQuery(enc)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range m {
		if q.Get(k) != v {
			t.Errorf("%s decodes to %q, want %q", k, q.Get(k), v)
		}
	}

	big := map[string]string{"a": strings.Repeat("x", 1500), "b": strings.Repeat("y", 1500), "c": "small"}
	enc, kept, dropped = formEncode(big)
	if len(enc) > maxForm || len(dropped) != 1 || dropped[0] != "b" || kept["c"] != "small" || kept["a"] == "" {
		t.Errorf("bounded encoding: %d bytes, kept %d, dropped %v", len(enc), len(kept), dropped)
	}
	if enc, kept, dropped := formEncode(nil); enc != "" || kept != nil || dropped != nil {
		t.Error("an empty map does not encode to nothing")
	}
}

func TestReservedHeaderNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"X-Untis-Role", true},
		{"x-untis-role", true},
		{"X-UNTIS-IDENTITY", true},
		{"X-Untis-Anything-New", true},
		{"X_Untis_Role", true},
		{"x_untis-tenant-id", true},
		{"X-Untis-", true},
		{"X-Untis", false},
		{"X-Untisfoo", false},
		{"X-Untis_Role", true},
		{"X-Forwarded-For", false}, // replaced by the proxy, not stripped here
		{"X_Forwarded_For", true},
		{"x_forwarded_host", true},
		{"X_Forwarded_Proto", true},
		{"X-Real-Ip", false},
		{"Cookie", false},
		{"Authorization", false},
	}
	for _, tt := range tests {
		if got := reservedHeader(tt.name); got != tt.want {
			t.Errorf("reservedHeader(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestStripInboundRemovesEveryVariant(t *testing.T) {
	t.Parallel()
	raw := "GET / HTTP/1.1\r\nHost: x\r\n" +
		"X-Untis-Role: administrator\r\n" +
		"x-untis-role: administrator\r\n" +
		"X-UNTIS-TENANT-ID: 9999\r\n" +
		"X_Untis_User_Id: forged\r\n" +
		"X-Untis-Identity: eyJforged\r\n" +
		"X-Untis-Email: a@b\r\n" +
		"X-Untis-Email: c@d\r\n" +
		"X-App-Header: kept\r\n\r\n"
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	stripInbound(req.Header)
	for k := range req.Header {
		if strings.Contains(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "untis") {
			t.Errorf("header %q survived", k)
		}
	}
	if req.Header.Get("X-App-Header") != "kept" {
		t.Error("the app's own header was removed")
	}
}

func TestStripOurCookiesKeepsTheAppsExactly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want []string // nil: no Cookie header
	}{
		{"none of ours", []string{`app=1; theme="dark blue"`}, []string{`app=1; theme="dark blue"`}},
		{"session only", []string{"__Host-untis-session=abc"}, nil},
		{"mixed", []string{"app=1; __Host-untis-session=abc; __Host-untis-flow-xyz=def; b=2"}, []string{"app=1; b=2"}},
		{"case variant", []string{"__HOST-UNTIS-session=abc; app=1"}, []string{"app=1"}},
		{"several lines", []string{"app=1", "__Host-untis-form=t", "b=2"}, []string{"app=1; b=2"}},
		{"ours named in a value only", []string{"app=__Host-untis-session"}, []string{"app=__Host-untis-session"}},
		{"spaces", []string{"  __Host-untis-session=abc ;app=1 ;; "}, []string{"app=1"}},
		{"similar but not ours", []string{"__Host-untisx=1; untis-session=2; __Secure-untis-session=3"}, []string{"__Host-untisx=1; untis-session=2; __Secure-untis-session=3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Cookie": tt.in}
			stripOurCookies(h)
			got := h["Cookie"]
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || (got == nil) != (tt.want == nil) {
				t.Errorf("Cookie = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTheAppCannotSetOrClearOurCookies(t *testing.T) {
	t.Parallel()
	h := http.Header{"Set-Cookie": {
		"app=1; Path=/",
		"__Host-untis-session=; Max-Age=0; Path=/; Secure",
		"__host-untis-session=evil; Path=/; Secure",
		"__Host-untis-flow-abc=x; Path=/; Secure",
		"other=2; HttpOnly",
	}}
	dropOurSetCookies(h)
	if got := strings.Join(h["Set-Cookie"], "|"); got != "app=1; Path=/|other=2; HttpOnly" {
		t.Errorf("Set-Cookie = %q", got)
	}
	h = http.Header{"Set-Cookie": {"__Host-untis-session=x"}}
	dropOurSetCookies(h)
	if _, ok := h["Set-Cookie"]; ok {
		t.Error("an empty Set-Cookie list is left")
	}
}

func TestPublicPathRules(t *testing.T) {
	t.Parallel()
	rules, err := ParsePathRules(" /assets/, /health,/favicon.ico, /img/*.png, /t/*/pub/ ,")
	if err != nil {
		t.Fatal(err)
	}
	if rules.Len() != 5 {
		t.Fatalf("%d rules", rules.Len())
	}
	tests := []struct {
		target string
		want   bool
	}{
		{"/assets/app.css", true},
		{"/assets/", true},
		{"/assets/deep/er/x.js?v=1", true},
		{"/assets", false},
		{"/assetsx/a", false},
		{"/health", true},
		{"/health/", false},
		{"/health/x", false},
		{"/healthz", false},
		{"/favicon.ico", true},
		{"/img/logo.png", true},
		{"/img/logo.png.js", false},
		{"/img/a/b.png", false},
		{"/t/42/pub/x", true},
		{"/t/42/priv/x", false},
		{"/", false},
		{"/private", false},
		// Not plain: never public, whatever they resolve to.
		{"/assets/../private", false},
		{"/assets/./app.css", false},
		{"/assets//app.css", false},
		{"/assets/..;/private", false},
		{"/assets/app.css;jsessionid=1", false},
		{"/assets%2F..%2Fprivate", false},
		{"/assets/%2e%2e/private", false},
		{"/assets/%61pp.css", false},
		{"/assets/a%20b.css", false},
		{"/assets/..%5cprivate", false},
		{"/health%00", false},
	}
	for _, tt := range tests {
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + tt.target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
		if err != nil {
			if tt.want {
				t.Errorf("%s: %v", tt.target, err)
			}
			continue
		}
		if got := rules.Match(r); got != tt.want {
			t.Errorf("Match(%s) = %v, want %v", tt.target, got, tt.want)
		}
	}
	if (PathRules{}).Match(httptestRequest("/assets/x")) {
		t.Error("no rules match something")
	}
}

func httptestRequest(target string) *http.Request {
	r, _ := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
	return r
}

func TestPublicPathRulesRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"assets/", "/", "/a/../b", "/a//b", "/a/./b", "/a?b", "/a[0]", `/a\b`, "/a%2fb", "/a;b", "/a#b",
		"/a b", "/ü", "/launch", "/_untis/static/", "/admin/", "/admin/x", "/webhooks/credentials", "/api/me",
		"/.well-known/jwks.json", "/ok,/launch",
	} {
		if _, err := ParsePathRules(v); err == nil {
			t.Errorf("ParsePathRules(%q) accepted", v)
		}
	}
	if r, err := ParsePathRules(""); err != nil || r.Len() != 0 {
		t.Errorf("empty = %v, %v", r, err)
	}
}

func TestReservedPaths(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/launch", "/logout", "/api/me", "/setup", "/activate", "/admin", "/admin/tenants/1",
		"/webhooks/credentials", "/webhooks/x", "/_untis/auth", "/_untis/static/app.css", "/healthz", "/readyz",
		"/metrics", "/.well-known/jwks.json", "/_untis/lang", "/_untis/theme.css", "/_untis/favicon.svg"} {
		if !Reserved(p) {
			t.Errorf("%s is not reserved", p)
		}
	}
	for _, p := range []string{"/", "/api/other", "/api/me/x", "/static/app.css", "/launchpad", "/setup/x", "/administration", "/.well-known/other", "/_untisx", "/favicon.ico"} {
		if Reserved(p) {
			t.Errorf("%s is reserved", p)
		}
	}
}

func TestLandingPrecedence(t *testing.T) {
	t.Parallel()
	l, err := ParseLanding("entry:lesson=/lessons, entry:exam=/exams?tab=1, role:teacher=/teacher,role:student=/student")
	if err != nil {
		t.Fatal(err)
	}
	lesson := map[string]string{"lesson_id": "L1"}
	exam := map[string]string{"exam_id": "E1"}
	main := map[string]string{"school": "x"}
	tests := []struct {
		returnTo string
		launch   map[string]string
		role     string
		want     string
	}{
		{"/deep/link?x=1", lesson, "teacher", "/deep/link?x=1"},
		{"/", lesson, "teacher", "/lessons"},
		{"", exam, "student", "/exams?tab=1"},
		{"/", main, "teacher", "/teacher"},
		{"/", main, "student", "/student"},
		{"/", main, "administrator", "/"},
		{"/", nil, "", "/"},
	}
	for _, tt := range tests {
		if got := l.Target(tt.returnTo, tt.launch, tt.role); got != tt.want {
			t.Errorf("Target(%q, %v, %q) = %q, want %q", tt.returnTo, tt.launch, tt.role, got, tt.want)
		}
	}
	if got := (Landing{}).Target("/", lesson, "teacher"); got != "/" {
		t.Errorf("no rules: %q", got)
	}
	if got := (Landing{}).Target("/x", nil, ""); got != "/x" {
		t.Errorf("no rules, return_to: %q", got)
	}
}

func TestLandingRulesRefused(t *testing.T) {
	t.Parallel()
	for _, v := range []string{
		"lesson=/l", "entry:lessons=/l", "entry:=/l", "role:Teacher=/t", "role:teach3r=/t", "group:x=/x",
		"entry:lesson=lessons", "entry:lesson=//evil.example", "entry:lesson=https://evil.example/",
		"entry:lesson=/launch", "role:teacher=/admin", "role:teacher=/_untis/auth", "role:teacher=/a/../b",
		"role:teacher=/t,role:teacher=/u", "role:teacher=", "role:teacher=/a b",
	} {
		if _, err := ParseLanding(v); err == nil {
			t.Errorf("ParseLanding(%q) accepted", v)
		}
	}
}

func TestEntryPoint(t *testing.T) {
	t.Parallel()
	if EntryPoint(map[string]string{"lesson_id": "1", "exam_id": "2"}) != EntryLesson ||
		EntryPoint(map[string]string{"exam_id": "2"}) != EntryExam ||
		EntryPoint(map[string]string{"lesson_id": ""}) != EntryMain || EntryPoint(nil) != EntryMain {
		t.Error("entry points")
	}
}

func TestForwardedForPassesOnlyWhatTrustedHopsSaw(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"direct client, no header", "203.0.113.7:5555", nil, "203.0.113.7"},
		{"direct client forging a chain", "203.0.113.7:5555", []string{"1.2.3.4, 10.0.0.1"}, "203.0.113.7"},
		{"behind a trusted proxy", "10.0.0.2:80", []string{"203.0.113.7"}, "203.0.113.7, 10.0.0.2"},
		{"forged entries left of the client", "10.0.0.2:80", []string{"6.6.6.6, 203.0.113.7"}, "203.0.113.7, 10.0.0.2"},
		{"two trusted hops", "10.0.0.2:80", []string{"203.0.113.7, 10.0.0.9"}, "203.0.113.7, 10.0.0.9, 10.0.0.2"},
		{"several header lines", "10.0.0.2:80", []string{"6.6.6.6", "203.0.113.7", "10.0.0.9"}, "203.0.113.7, 10.0.0.9, 10.0.0.2"},
		{"malformed entry", "10.0.0.2:80", []string{"203.0.113.7, garbage"}, "10.0.0.2"},
		{"only trusted entries", "10.0.0.2:80", []string{"10.0.0.3"}, "10.0.0.3, 10.0.0.2"},
		{"IPv6 and mapped", "[::ffff:10.0.0.2]:80", []string{"2001:db8::1"}, "2001:db8::1, 10.0.0.2"},
	}
	for _, tt := range tests {
		r := httptestRequest("/")
		r.RemoteAddr = tt.remote
		if tt.xff != nil {
			r.Header["X-Forwarded-For"] = tt.xff
		}
		if got := forwardedFor(r, trusted); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
