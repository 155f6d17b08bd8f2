package httpserver_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/store"
)

// The design's load targets name 8 concurrent logins and 16 concurrent /api/me requests; the
// benchmarks run as many goroutines (RunParallel starts parallelism × GOMAXPROCS).
const (
	benchLoginConcurrency = 8
	benchMeConcurrency    = 16
)

func parallelismFor(concurrency int) int {
	return max(1, concurrency/runtime.GOMAXPROCS(0))
}

// benchHop is one request of a benchmark: like browser.get, but returning an error instead of
// failing, since RunParallel's goroutines must not call FailNow.
func benchHop(b *browser, u string) (status int, location string, setCookies []*http.Cookie, err error) {
	resp, err := b.client.Get(u)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if loc := resp.Header.Get("Location"); loc != "" {
		l, err := resp.Request.URL.Parse(loc)
		if err != nil {
			return resp.StatusCode, "", nil, err
		}
		location = l.String()
	}
	return resp.StatusCode, location, resp.Cookies(), nil
}

// benchLogin is one complete launch → authorize → callback sign-in in a fresh browser, without
// following the callback's redirect: the login is done when the session cookie is set.
func benchLogin(e *signinEnv, tr http.RoundTripper, tenantID, userID string) error {
	b := e.browser()
	b.client.Transport = tr
	b.signInAs(tenantID, userID)
	status, loc, _, err := benchHop(b, e.app.srv.URL+"/launch?tenant_id="+tenantID)
	if err != nil || status != http.StatusFound || !strings.HasPrefix(loc, e.simURL) {
		return fmt.Errorf("launch: %d to %q: %v", status, loc, err)
	}
	status, loc, _, err = benchHop(b, loc)
	if err != nil || status != http.StatusFound || !strings.HasPrefix(loc, e.app.srv.URL+"/launch?") {
		return fmt.Errorf("authorize: %d to %q: %v", status, loc, err)
	}
	status, loc, cookies, err := benchHop(b, loc)
	if err != nil || status != http.StatusSeeOther {
		return fmt.Errorf("callback: %d to %q: %v", status, loc, err)
	}
	for _, c := range cookies {
		if c.Name == session.CookieName && c.Value != "" {
			return nil
		}
	}
	return fmt.Errorf("callback: no %s cookie", session.CookieName)
}

// benchTransport keeps enough idle connections for conc goroutines talking to two hosts (the app
// and the simulator); http.DefaultTransport keeps 2 per host, so most requests would dial anew.
func benchTransport(b *testing.B, conc int) *http.Transport {
	tr := &http.Transport{MaxIdleConns: 4 * conc, MaxIdleConnsPerHost: 2 * conc, IdleConnTimeout: time.Minute}
	b.Cleanup(tr.CloseIdleConnections)
	return tr
}

// firstError keeps the first error of many goroutines.
type firstError struct {
	n   atomic.Int64
	err atomic.Pointer[error]
}

func (f *firstError) add(err error) {
	f.n.Add(1)
	f.err.CompareAndSwap(nil, &err)
}

func (f *firstError) check(b *testing.B, what string) {
	if n := f.n.Load(); n > 0 {
		b.Fatalf("%d of %d %s failed, the first: %v", n, b.N, what, *f.err.Load())
	}
}

// benchTeachers adds two schools and returns their teachers (tenant id, sourcedId) to sign in as.
func benchTeachers(b *testing.B, e *signinEnv) [][2]string {
	b.Helper()
	var out [][2]string
	for _, id := range []string{"4001", "4002"} {
		e.school(platformsim.TenantSpec{ID: id, Name: "Bench School " + id, Teachers: 20}, store.StateActive)
		for _, u := range e.sim.Users(id) {
			if u.Role == platformsim.RoleTeacher {
				out = append(out, [2]string{id, u.SourcedID})
			}
		}
	}
	if len(out) == 0 {
		b.Fatal("no teachers")
	}
	return out
}

// latencies collects per-request durations from RunParallel's goroutines.
type latencies struct {
	mu  sync.Mutex
	all []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d...)
	l.mu.Unlock()
}

// report adds p50 and p99 (milliseconds) to the benchmark's metrics.
func (l *latencies) report(b *testing.B) {
	if len(l.all) == 0 {
		return
	}
	slices.Sort(l.all)
	at := func(q float64) float64 {
		return float64(l.all[min(len(l.all)-1, int(q*float64(len(l.all))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkSignInFlow measures complete sign-ins (launch on the app, authorize on the simulator,
// callback on the app: code exchange, id_token verification, OneRoster profile, user and session
// rows) through real HTTP against the in-process simulator and a real PostgreSQL, 8 at a time,
// each in a fresh browser. The test databases run with synchronous_commit off (pgtest), so this
// is an upper bound for a durable database. The simulator, server and browsers share the CPU:
// RS256 is the simulator's default, whose RSA-2048 signature of every id_token costs more than
// the rest of a login; ES256 shows the stack with a cheap signer.
func BenchmarkSignInFlow(b *testing.B) {
	ecKey, err := platformsim.GenerateSigningKey(platformsim.ES256)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("RS256", func(b *testing.B) { benchmarkSignInFlow(b, platformsim.Config{}) })
	b.Run("ES256", func(b *testing.B) { benchmarkSignInFlow(b, platformsim.Config{SigningKey: ecKey}) })
}

func benchmarkSignInFlow(b *testing.B, simCfg platformsim.Config) {
	e := newSigninEnv(b, signinOptions{sim: simCfg})
	users := benchTeachers(b, e)
	tr := benchTransport(b, benchLoginConcurrency)
	// Warm up: discovery, JWKS and the platform's keep-alive connections.
	for _, u := range users[:2] {
		if err := benchLogin(e, tr, u[0], u[1]); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	measureParallel(b, benchLoginConcurrency, "sign-ins", "logins/s", func() error {
		u := users[int(next.Add(1))%len(users)]
		return benchLogin(e, tr, u[0], u[1])
	})
}

// measureParallel runs op b.N times from `concurrency` goroutines and reports its rate in unit,
// its p50 and p99 latency, and the first failure of what it measures.
func measureParallel(b *testing.B, concurrency int, what, unit string, op func() error) {
	var failed firstError
	var lat latencies
	b.SetParallelism(parallelismFor(concurrency))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		mine := make([]time.Duration, 0, 1024)
		for pb.Next() {
			start := time.Now()
			if err := op(); err != nil {
				failed.add(err)
				continue
			}
			mine = append(mine, time.Since(start))
		}
		lat.add(mine)
	})
	b.StopTimer()
	failed.check(b, what)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
	lat.report(b)
}

// BenchmarkAPIMe measures authenticated requests (session lookup + handler) through real HTTP:
// one signed-in session, GET /api/me from 16 goroutines over keep-alive connections.
func BenchmarkAPIMe(b *testing.B) {
	e := newSigninEnv(b, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "4101", Name: "Bench School"}, store.StateActive)
	br := e.browser()
	br.signInAs(tid, e.user(tid, platformsim.RoleTeacher).SourcedID)
	if home := br.launch(launchQuery(tid)); home.status != http.StatusOK {
		b.Fatalf("sign-in ended with %d: %s", home.status, home.body)
	}
	sid := br.cookie(session.CookieName)
	if sid == "" {
		b.Fatal("no session cookie after sign-in")
	}
	client := &http.Client{Transport: benchTransport(b, benchMeConcurrency), Timeout: 30 * time.Second}
	meURL, _ := url.Parse(e.app.srv.URL + "/api/me")
	cookie := (&http.Cookie{Name: session.CookieName, Value: sid}).String()
	get := func() error {
		req := &http.Request{Method: http.MethodGet, URL: meURL, Header: http.Header{"Cookie": {cookie}}, Host: meURL.Host}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/api/me answered %d", resp.StatusCode)
		}
		return nil
	}
	if err := get(); err != nil {
		b.Fatal(err)
	}
	measureParallel(b, benchMeConcurrency, "requests", "req/s", get)
}
