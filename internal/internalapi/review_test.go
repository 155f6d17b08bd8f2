package internalapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// A ";" in a path never goes to the platform. The platform's REST API is a Java web application
// (/WebUntis/...), and Tomcat reads ";..." as a path parameter that it drops before resolving
// the path: "/students/..;/teachers" is "/teachers" there, while to our checks it is a segment
// named "..;" below /students/. Such a path would let a write that INTERNAL_API_WRITE_PATHS
// allows below one resource reach another, and a read leave the OneRoster and extern roots.
func TestPathParametersNeverReachThePlatform(t *testing.T) {
	t.Parallel()
	e := newEnv(t, options{writePaths: "POST /WebUntis/api/rest/extern/v1/students/, PUT /WebUntis/api/rest/extern/v1/students/*/absences"})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	e.sim.ResetStats()
	json := http.Header{"Content-Type": {"application/json"}}
	for _, w := range []struct{ method, path string }{
		{http.MethodPost, "/WebUntis/api/rest/extern/v1/students/..;/teachers"},
		{http.MethodPost, "/WebUntis/api/rest/extern/v1/students/1/..;/..;/teachers"},
		{http.MethodPut, "/WebUntis/api/rest/extern/v1/students/..;/absences"},
		{http.MethodPost, "/WebUntis/api/rest/extern/v1/students/x;jsessionid=1"},
	} {
		ans := e.api(w.method, schoolPath(a, w.path), strings.NewReader(`{}`), json)
		ans.wantProblem(t, http.StatusBadRequest, "bad-request")
	}
	for _, p := range []string{
		orPath + "/users/..;/..;/..;/WebUntis/api/rest/view/v1/profile",
		"/WebUntis/api/rest/extern/v1/teachers;x=1",
	} {
		e.get(schoolPath(a, p)).wantProblem(t, http.StatusBadRequest, "bad-request")
	}
	if calls := e.calls(); len(calls) != 0 {
		t.Errorf("paths with ; reached the platform: %+v", calls)
	}
}
