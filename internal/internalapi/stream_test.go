package internalapi_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
)

// testRoot is where the test platform answers some paths itself (the simulator's extern API
// has no large or slow resources); the token is still checked by the simulator first.
const testRoot = "/WebUntis/api/rest/extern/v1/test/"

// testPlatform puts handlers for paths below testRoot in front of the simulator. Each request
// to them is authenticated by the simulator (with the token it carries) before the handler
// answers, and counted.
type testPlatform struct {
	handlers map[string]http.HandlerFunc
	hits     atomic.Int64
}

func (tp *testPlatform) wrap(sim http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := tp.handlers[strings.TrimPrefix(r.URL.Path, testRoot)]
		if !strings.HasPrefix(r.URL.Path, testRoot) || !ok {
			sim.ServeHTTP(w, r)
			return
		}
		tp.hits.Add(1)
		probe := httptest.NewRequest(http.MethodGet, "/ims/oneroster/v1p1/orgs", nil)
		probe.Header.Set("Authorization", r.Header.Get("Authorization"))
		rec := httptest.NewRecorder()
		sim.ServeHTTP(rec, probe)
		if rec.Code != http.StatusOK {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		h(w, r)
	})
}

// chunk is one piece of a synthetic answer.
var chunk = bytes.Repeat([]byte(`{"id":12345,"name":"x"},`), 1365) // ~32 KiB

// An answer reaches the app while the platform is still sending it: the app reads the first
// part before the platform sends the rest.
func TestAnswersStreamWhileThePlatformSends(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var waitedOut atomic.Bool
	tp := &testPlatform{handlers: map[string]http.HandlerFunc{
		"gated": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(chunk)
			http.NewResponseController(w).Flush()
			select {
			case <-gate:
			case <-time.After(20 * time.Second):
				waitedOut.Store(true) // the first part never reached the app: it was held back
			}
			_, _ = w.Write(chunk)
		},
	}}
	e := newEnv(t, options{wrap: tp.wrap})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	req, _ := http.NewRequest(http.MethodGet, e.internal.URL+schoolPath(a, testRoot+"gated"), nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len(chunk))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	close(gate)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(first, chunk) || !bytes.Equal(rest, chunk) {
		t.Errorf("answer: %d+%d bytes, %v", len(first), len(rest), err)
	}
	if waitedOut.Load() {
		t.Error("the first part reached the app only after the platform had sent everything: the answer was buffered")
	}
}

// A large answer (far over the 32 MiB a JSON call may buffer) passes with flat memory: the
// server allocates a small fraction of it. Not parallel, so that the measure is this test's.
func TestALargeAnswerPassesWithFlatMemory(t *testing.T) {
	const size = 64 << 20
	tp := &testPlatform{handlers: map[string]http.HandlerFunc{
		"large": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(size))
			for sent := 0; sent < size; {
				n, err := w.Write(chunk[:min(len(chunk), size-sent)])
				if err != nil {
					return
				}
				sent += n
			}
		},
	}}
	e := newEnv(t, options{wrap: tp.wrap})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	// Warm up: the token, connections, buffers.
	if ans := e.get(schoolPath(a, orPath+"/orgs")); ans.status != http.StatusOK {
		t.Fatal(ans)
	}
	want := sha256.New()
	for sent := 0; sent < size; sent += len(chunk) {
		want.Write(chunk[:min(len(chunk), size-sent)])
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequest(http.MethodGet, e.internal.URL+schoolPath(a, testRoot+"large"), nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.CopyBuffer(got, resp.Body, make([]byte, 64<<10))
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) || resp.Header.Get("Content-Length") != strconv.Itoa(size) {
		t.Fatalf("answer: %d bytes (want %d), %v, Content-Length %q", n, size, err, resp.Header.Get("Content-Length"))
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("a %d MiB answer allocated %.1f MiB in the whole process (platform, server and client)", size>>20, float64(allocated)/(1<<20))
	if allocated > size/8 {
		t.Errorf("a %d MiB answer allocated %d MiB: it is buffered, not streamed", size>>20, allocated>>20)
	}
}

// Of the platform's answer headers the app gets the content's and the paging ones; Link targets
// on the platform become this API's paths (others are dropped); cookies, challenges and
// anything else stay behind.
func TestAnswerHeadersPassRewrittenOrNotAtAll(t *testing.T) {
	t.Parallel()
	var simURL atomic.Value
	tp := &testPlatform{handlers: map[string]http.HandlerFunc{
		"headers": func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "application/json; charset=utf-8")
			h.Set("X-Total-Count", "1234")
			h.Set("ETag", `"v1"`)
			h.Add("Link", `<`+simURL.Load().(string)+`/ims/oneroster/v1p1/users?offset=100&limit=100>; rel="next", <https://evil.example/steal?x=1>; rel="help"`)
			h.Add("Link", `</WebUntis/api/rest/extern/v1/students?offset=0>; rel="first"; title="a, b", <//evil.example/x>; rel="last"`)
			h.Add("Link", `<`+simURL.Load().(string)+`/WebUntis/api/sso/v3/1001/token>; rel="token"`)
			h.Set("Set-Cookie", "platform=session; Path=/")
			h.Set("WWW-Authenticate", `Bearer realm="platform"`)
			h.Set("X-Powered-By", "platform")
			h.Set("Access-Control-Allow-Origin", "*")
			_, _ = w.Write([]byte(`{"ok":true}`))
		},
	}}
	e := newEnv(t, options{wrap: tp.wrap})
	simURL.Store(e.simURL)
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	ans := e.get(schoolPath(a, testRoot+"headers"))
	if ans.status != http.StatusOK || string(ans.body) != `{"ok":true}` {
		t.Fatal(ans)
	}
	h := ans.header
	if h.Get("Content-Type") != "application/json; charset=utf-8" || h.Get("X-Total-Count") != "1234" || h.Get("ETag") != `"v1"` ||
		h.Get("Cache-Control") != "no-store" {
		t.Errorf("passed headers: %v", h)
	}
	wantLink := `</v1/schools/1001/ims/oneroster/v1p1/users?offset=100&limit=100>; rel="next", ` +
		`</v1/schools/1001/WebUntis/api/rest/extern/v1/students?offset=0>; rel="first"; title="a, b"`
	if got := strings.Join(h.Values("Link"), ", "); got != wantLink {
		t.Errorf("Link:\n got %s\nwant %s", got, wantLink)
	}
	for _, k := range []string{"Set-Cookie", "WWW-Authenticate", "X-Powered-By", "Access-Control-Allow-Origin"} {
		if v := h.Get(k); v != "" {
			t.Errorf("%s passed: %q", k, v)
		}
	}
}

// When the platform breaks off half-way, the app's answer breaks off too (never a short body that
// looks complete), it is counted as aborted, and the call is not repeated (its body had started).
func TestAnAnswerBrokenOffHalfWayIsAbortedNotRetried(t *testing.T) {
	t.Parallel()
	tp := &testPlatform{handlers: map[string]http.HandlerFunc{
		"broken": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(chunk)
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler) // the connection is closed mid-answer
		},
		"stalled": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(chunk)
			http.NewResponseController(w).Flush()
			select { // stalls until the server gives up on it
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
				_, _ = w.Write(chunk)
			}
		},
	}}
	e := newEnv(t, options{wrap: tp.wrap, platform: func(c *platform.Config) { c.StreamIdleTimeout = 200 * time.Millisecond }})
	a := e.school(platformsim.TenantSpec{ID: "1001"})
	for _, name := range []string{"broken", "stalled"} {
		before := tp.hits.Load()
		req, _ := http.NewRequest(http.MethodGet, e.internal.URL+schoolPath(a, testRoot+name), nil)
		req.Header.Set("Authorization", "Bearer "+apiToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) || len(b) != len(chunk) {
			t.Errorf("%s: read %d bytes, err %v; want the first part, then a broken answer", name, len(b), err)
		}
		if n := tp.hits.Load() - before; n != 1 {
			t.Errorf("%s: the platform was asked %d times, want once", name, n)
		}
	}
	if !strings.Contains(e.metricsText(), `internal_api_requests_total{route="extern",outcome="aborted"} 2`) {
		t.Errorf("metrics:\n%s", e.metricsText())
	}
	if len(e.logs.Find(t, "internal api: the platform's answer broke off; aborting the response")) != 2 {
		t.Errorf("log:\n%s", e.logs)
	}
}

func (e *env) metricsText() string {
	rec := httptest.NewRecorder()
	e.metrics.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}
