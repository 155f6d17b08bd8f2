package internalapi

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestWriteRulesMatchOnlyWhatTheyName(t *testing.T) {
	t.Parallel()
	wr, err := ParseWriteRules(" POST /WebUntis/api/rest/extern/v1/students , PUT|PATCH /WebUntis/api/rest/extern/v1/students/*," +
		"/WebUntis/api/rest/extern/v2/exams/, DELETE /WebUntis/api/rest/extern/v1/students/*/absences/*")
	if err != nil {
		t.Fatal(err)
	}
	const x = "/WebUntis/api/rest/extern"
	for _, tc := range []struct {
		path string
		want []string
	}{
		{x + "/v1/students", []string{"POST"}},
		{x + "/v1/students/12", []string{"PUT", "PATCH"}},
		{x + "/v1/students/12/absences/3", []string{"DELETE"}},
		{x + "/v1/students/12/absences", nil},
		{x + "/v1/students/12/x", nil},
		{x + "/v2/exams", nil},
		{x + "/v2/exams/7", []string{"POST", "PUT", "PATCH"}},
		{x + "/v2/exams/7/grades/1", []string{"POST", "PUT", "PATCH"}},
		{x + "/v1/Students", nil},
		{x + "/v1/stud%65nts", nil}, // matched as sent: an encoding can only refuse
		{x + "/v1/students%2F12", nil},
		{"/ims/oneroster/v1p1/users", nil},
		{"", nil},
		{"v1/students", nil},
	} {
		if got := wr.Methods(tc.path); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.path, got, tc.want)
		}
	}
	if !wr.Allows("PATCH", x+"/v1/students/1") || wr.Allows("DELETE", x+"/v1/students/1") || wr.Allows("GET", x+"/v1/students") {
		t.Error("Allows disagrees with Methods")
	}
	var none WriteRules
	if none.Allows("POST", x+"/v1/students") || none.Len() != 0 {
		t.Error("the zero value allows a write")
	}
	for _, bad := range []string{
		"/WebUntis/api/rest/extern/", "/WebUntis/api/rest/extern", "/WebUntis/api/rest/v1/x", "/ims/oneroster/v1p1/users",
		"GET /WebUntis/api/rest/extern/v1/x", "post /WebUntis/api/rest/extern/v1/x", "POST|GET /WebUntis/api/rest/extern/v1/x",
		"/WebUntis/api/rest/extern/v1//x", "/WebUntis/api/rest/extern/v1/../sso", "/WebUntis/api/rest/extern/v1/./x",
		"/WebUntis/api/rest/extern/v1/x?y", "/WebUntis/api/rest/extern/v1/[a]", "/WebUntis/api/rest/extern/v1/%2e",
		"/WebUntis/api/rest/extern/v1/a\\b", "POST  /WebUntis/api/rest/extern/v1/x y",
	} {
		if _, err := ParseWriteRules(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
}

func TestLinksAndLocationsAreRewrittenOrDropped(t *testing.T) {
	t.Parallel()
	api, _ := url.Parse("https://api.example.com")
	a := &API{apiBase: strings.TrimRight(api.String(), "/")}
	for _, tc := range []struct{ in, want string }{
		{"https://api.example.com/ims/oneroster/v1p1/users?offset=10", "/v1/schools/1001/ims/oneroster/v1p1/users?offset=10"},
		{"/WebUntis/api/rest/extern/v1/students/7", "/v1/schools/1001/WebUntis/api/rest/extern/v1/students/7"},
		{"https://api.example.com/WebUntis/api/sso/v3/1001/token", ""},
		{"https://api.example.com.evil.example/ims/oneroster/v1p1/users", ""},
		{"http://api.example.com/ims/oneroster/v1p1/users", ""},
		{"//api.example.com/ims/oneroster/v1p1/users", ""},
		{"/ims/oneroster/v1p1/users/../../../WebUntis/api/sso", ""},
		{"/ims/oneroster/v1p1/users/%2e%2e/x", ""},
		{"users?offset=10", ""},
		{"", ""},
	} {
		got, ok := a.rewriteURL(tc.in, "1001")
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%q: %q %v, want %q", tc.in, got, ok, tc.want)
		}
	}
	if got := a.rewriteLinks([]string{`<https://api.example.com/ims/oneroster/v1p1/users?a=1,2>; rel="next"; title="x, <y>", <https://x.example/>; rel=help`,
		`</ims/oneroster/v1p1/classes>;rel=prev`, `garbage`}, "7"); got !=
		`</v1/schools/7/ims/oneroster/v1p1/users?a=1,2>; rel="next"; title="x, <y>", </v1/schools/7/ims/oneroster/v1p1/classes>;rel=prev` {
		t.Errorf("links: %s", got)
	}
}
