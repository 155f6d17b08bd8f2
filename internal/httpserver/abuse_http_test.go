package httpserver_test

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// manualClock is a clock that moves only when the test says, so that limits count exactly.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: time.Now()} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var trustLocalProxy = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}

// launchResult is one answer of a burst of launches.
type launchResult struct {
	status     int
	retryAfter string
	body       string
}

// launchBurst sends n launches of school tid at once, from client address ip (as the trusted
// test proxy says; "" for the direct peer), with workers parallel clients, and returns the
// answers. Each launch is a fresh browser: no cookie, as n different people.
func (e *signinEnv) launchBurst(t *testing.T, n, workers int, ip, tid string) []launchResult {
	t.Helper()
	out := make([]launchResult, n)
	next := make(chan int)
	client := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				q := url.Values{"tenant_id": {tid}, "lesson_id": {strconv.Itoa(4000 + i)}, "school": {"School " + tid}}
				req, _ := http.NewRequest(http.MethodGet, e.app.srv.URL+"/launch?"+q.Encode(), nil)
				if ip != "" {
					req.Header.Set("X-Forwarded-For", ip)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				out[i] = launchResult{resp.StatusCode, resp.Header.Get("Retry-After"), string(body)}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// tally counts the answers by status.
func tally(rs []launchResult) map[int]int {
	m := map[int]int{}
	for _, r := range rs {
		m[r.status]++
	}
	return m
}

// metricValue is the value of one series on /metrics ("" when absent).
func (e *signinEnv) metricValue(t *testing.T, series string) string {
	t.Helper()
	_, body := get(t, nil, e.app.srv.URL+"/metrics", nil)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// Issue 12: unauthenticated launches stored a flow row each, without bound (5,000 requests with a
// maximal context grew the table by 70 MB in 3.4 s). Flow creation is limited per client network
// and per school, with 429, Retry-After and a page in plain words.
func TestLaunchRateLimits(t *testing.T) {
	t.Parallel()
	clock := newManualClock()
	e := newSigninEnv(t, signinOptions{now: clock.Now, trusted: trustLocalProxy,
		launchLimits: httpserver.LaunchLimits{PerClient: 20, PerSchool: 30}})
	a := e.school(platformsim.TenantSpec{ID: "6901", Name: "Schule A"}, store.StateActive)
	b := e.school(platformsim.TenantSpec{ID: "6902", Name: "Schule B"}, store.StateActive)
	const attacker = "198.51.100.7"

	// One client, 50 launches at once: its burst of 20 starts sign-ins, the rest are refused.
	burst := e.launchBurst(t, 50, 8, attacker, a)
	if got := tally(burst); got[http.StatusFound] != 20 || got[http.StatusTooManyRequests] != 30 {
		t.Fatalf("50 launches from one client = %v, want 20 started and 30 refused", got)
	}
	if n := e.countRows("auth_flows"); n != 20 {
		t.Errorf("%d flow rows, want 20: a refused launch must store nothing", n)
	}
	for _, r := range burst {
		if r.status != http.StatusTooManyRequests {
			continue
		}
		// 20 a minute is one every 3 s.
		if r.retryAfter != "3" || !strings.Contains(r.body, "Too many sign-ins at once") ||
			!strings.Contains(r.body, "from your network") || !strings.Contains(r.body, "open the app again from WebUntis") {
			t.Fatalf("a refused launch: Retry-After %q\n%s", r.retryAfter, r.body)
		}
		break
	}
	// The limit is the client's, whichever school it launches.
	if got := tally(e.launchBurst(t, 3, 3, attacker, b)); got[http.StatusTooManyRequests] != 3 {
		t.Errorf("the same client for another school = %v, want 3 refused", got)
	}

	// Another client (an IPv6 /64) for school A: the school has 10 of its 30 left. The 30
	// launches the first client was refused did not count against the school, so one client
	// cannot use up its school's launches alone.
	burst = e.launchBurst(t, 15, 5, "2001:db8:1:2::5", a)
	if got := tally(burst); got[http.StatusFound] != 10 || got[http.StatusTooManyRequests] != 5 {
		t.Fatalf("15 launches of school A from a second client = %v, want 10 started and 5 refused", got)
	}
	for _, r := range burst {
		if r.status == http.StatusTooManyRequests && !strings.Contains(r.body, "at your school") {
			t.Fatalf("a launch over the school's limit:\n%s", r.body)
		}
	}
	// Another address of the same /64 is the same client: 5 of its 20 are left.
	if got := tally(e.launchBurst(t, 10, 5, "2001:db8:1:2::6", b)); got[http.StatusFound] != 5 || got[http.StatusTooManyRequests] != 5 {
		t.Errorf("10 launches from the same /64 = %v, want 5 started and 5 refused", got)
	}
	// The next /64 is another client; school B has room.
	if got := tally(e.launchBurst(t, 10, 5, "2001:db8:1:3::1", b)); got[http.StatusFound] != 10 {
		t.Errorf("10 launches from the next /64 = %v, want 10 started", got)
	}
	// Without a trusted proxy's word, the peer is the client (127.0.0.1 here).
	if got := tally(e.launchBurst(t, 5, 5, "", b)); got[http.StatusFound] != 5 {
		t.Errorf("5 launches from the peer = %v", got)
	}

	// The buckets refill evenly: one more launch every 3 s, a full burst after a minute.
	clock.Advance(3 * time.Second)
	if got := tally(e.launchBurst(t, 2, 1, attacker, b)); got[http.StatusFound] != 1 || got[http.StatusTooManyRequests] != 1 {
		t.Errorf("3 s later = %v, want 1 started and 1 refused", got)
	}
	clock.Advance(time.Minute)
	if got := tally(e.launchBurst(t, 20, 5, attacker, b)); got[http.StatusFound] != 20 {
		t.Errorf("a minute later = %v, want 20 started", got)
	}

	// Every refusal is counted; the log has a line per burst of refusals, not per request.
	if v := e.metricValue(t, `launch_rate_limited_total{limit="client"}`); v != "39" {
		t.Errorf(`launch_rate_limited_total{limit="client"} = %q, want 39`, v)
	}
	if v := e.metricValue(t, `launch_rate_limited_total{limit="school"}`); v != "5" {
		t.Errorf(`launch_rate_limited_total{limit="school"} = %q, want 5`, v)
	}
	if lines := e.logs.Find(t, "launch rate-limited"); len(lines) == 0 || len(lines) > 6 {
		t.Errorf("%d log lines for 44 refusals, want one per burst (1 to 6)", len(lines))
	}
	if n, want := e.countRows("auth_flows"), 20+10+5+10+5+1+20; n != want {
		t.Errorf("%d flow rows, want %d (one per started sign-in)", n, want)
	}
}

// Limits of 0 are off: a load test, or a district behind one address, can lift them.
func TestLaunchLimitsOff(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{now: newManualClock().Now})
	a := e.school(platformsim.TenantSpec{ID: "6911"}, store.StateActive)
	if got := tally(e.launchBurst(t, 100, 8, "", a)); got[http.StatusFound] != 100 {
		t.Errorf("100 launches without limits = %v", got)
	}
}

// The default limits never stop a school's real users: a class of 30 launching at once from the
// school's NAT address, a whole school of 1,500 launching at the same moment from that one
// address at the first lesson, and every one of them launching a second time within the minute
// from elsewhere (a second tab, another entry point, a phone).
func TestLaunchLimitDefaultsAdmitAWholeSchool(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	clock := newManualClock()
	e := newSigninEnv(t, signinOptions{now: clock.Now, trusted: trustLocalProxy,
		launchLimits: httpserver.LaunchLimits{PerClient: cfg.LaunchLimitPerClient, PerSchool: cfg.LaunchLimitPerSchool}})
	school := e.school(platformsim.TenantSpec{ID: "6921"}, store.StateActive)
	const nat = "192.0.2.44"

	if got := tally(e.launchBurst(t, 30, 30, "192.0.2.30", school)); got[http.StatusFound] != 30 {
		t.Fatalf("a class of 30 at once = %v", got)
	}
	if got := tally(e.launchBurst(t, 1500, 16, nat, school)); got[http.StatusFound] != 1500 {
		t.Fatalf("1,500 users at once from the school's NAT address = %v", got)
	}
	clock.Advance(30 * time.Second)
	// The second launches come from 1,500 other addresses within the same minute: 100 here
	// stand for them, each address its own client, the school's limit shared.
	for i := range 15 {
		if got := tally(e.launchBurst(t, 100, 16, fmt.Sprintf("198.51.%d.1", 100+i), school)); got[http.StatusFound] != 100 {
			t.Fatalf("second launches, batch %d = %v", i+1, got)
		}
	}
	if v := e.metricValue(t, `launch_rate_limited_total{limit="school"}`); v != "" && v != "0" {
		t.Errorf("refusals: %s", v)
	}
}

// The stored launch context is bounded in total: a maximal launch URL stores a few KiB, not the
// 14 KiB a row of the flood held.
func TestLaunchContextIsBoundedInTheStore(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := e.school(platformsim.TenantSpec{ID: "6931"}, store.StateActive)
	q := url.Values{"tenant_id": {tid}, "lesson_id": {"4711"}, "return_to": {"/" + strings.Repeat("r", 1000)}}
	for i := range 40 {
		q.Set(fmt.Sprintf("p%02d", i), strings.Repeat("v", 512))
	}
	if got := e.browser().get(e.app.srv.URL + "/launch?" + q.Encode()); got.status != http.StatusFound {
		t.Fatalf("launch = %d\n%s", got.status, got.body)
	}
	var launchBytes, rowBytes int
	var lesson string
	if err := e.store.Pool().QueryRow(e.ctx(), `SELECT octet_length(launch::text), pg_column_size(f.*), launch->>'lesson_id' FROM auth_flows f`).
		Scan(&launchBytes, &rowBytes, &lesson); err != nil {
		t.Fatal(err)
	}
	if launchBytes > 2048+24*6+2 || rowBytes > 4096 || lesson != "4711" {
		t.Errorf("the stored context takes %d bytes (row %d), lesson %q; want at most about 2 KiB", launchBytes, rowBytes, lesson)
	}
}

// Issue 12: NUL bytes and invalid UTF-8 reached PostgreSQL (the console's sign-in answered 503
// and logged an ERROR; a callback's state logged a warning). Text the database cannot store is a
// 400 before any query, on every route that stores or looks up what it is sent.
func TestNotStorableTextIsRefusedBeforeTheStore(t *testing.T) {
	t.Parallel()
	e := newSigninEnv(t, signinOptions{})
	tid := "6941"
	e.obActivate(tid)
	e.addOperator("ops@partner.example", "correct horse battery staple")
	console, csrf := e.consoleBrowser(t, "ops@partner.example", "correct horse battery staple")

	for _, bad := range []string{"\x00", "\xff", "a\xc3("} {
		name := strconv.QuoteToASCII(bad)
		t.Run(name, func(t *testing.T) {
			check := func(what string, got answer) {
				t.Helper()
				if got.status != http.StatusBadRequest {
					t.Errorf("%s = %d, want 400\n%s", what, got.status, got.body)
				}
			}
			b := e.browser()
			page := b.get(e.app.srv.URL + "/admin/login")
			token := obCSRF(t, page.body)
			check("console sign-in, e-mail", b.formPost(e.app.srv.URL+"/admin/login",
				url.Values{"csrf": {token}, "email": {"ops" + bad + "@partner.example"}, "password": {"whatever it is"}}, nil))
			check("console sign-in, password", b.formPost(e.app.srv.URL+"/admin/login",
				url.Values{"csrf": {token}, "email": {"ops@partner.example"}, "password": {"pw" + bad}}, nil))
			check("console sign-in, a parameter's name", b.formPost(e.app.srv.URL+"/admin/login",
				url.Values{"csrf": {token}, "email": {"ops@partner.example"}, "x" + bad: {"1"}}, nil))
			check("activation, client id", b.formPost(e.app.srv.URL+"/activate",
				activateValues(activateForm(t, b), tid, "app"+bad, "secret", "password"), nil))
			check("activation form, query", b.get(e.app.srv.URL+"/activate?tenant_id="+url.QueryEscape("1"+bad)))
			check("console search", console.get(e.app.srv.URL+"/admin?tenant_id="+url.QueryEscape(bad)))
			check("console deactivation, reason", console.formPost(e.app.srv.URL+"/admin/tenants/"+tid+"/deactivate",
				url.Values{"csrf": {csrf}, "confirm": {tid}, "reason": {"reason " + bad}}, nil))
			check("console credentials", console.formPost(e.app.srv.URL+"/admin/tenants/"+tid+"/credentials",
				url.Values{"csrf": {csrf}, "clientId": {"app" + bad}, "secret": {"s"}, "password": {"p"}}, nil))
			for _, q := range []string{"state=", "code=x&state=", "error=access_denied&state=s&error_description=", "tenant_id=", "code=c&state=s&iss="} {
				check("launch "+q, b.get(e.app.srv.URL+"/launch?"+q+url.QueryEscape(bad)))
			}
		})
	}
	// A school admin's setup form.
	admin, home := e.obSignIn(tid, platformsim.RoleAdministrator)
	if home.status != http.StatusOK {
		t.Fatalf("admin sign-in = %d", home.status)
	}
	setup := admin.get(e.app.srv.URL + "/setup")
	if got := admin.formPost(e.app.srv.URL+"/setup", url.Values{"csrf": {obCSRF(t, setup.body)}, "anything": {"\x00"}}, nil); got.status != http.StatusBadRequest {
		t.Errorf("setup with a NUL = %d", got.status)
	}

	// Nothing was changed, and nothing reached the database: no error, no warning about it.
	if s := e.obState(tid); s != store.StateActive {
		t.Errorf("the school is %q", s)
	}
	for _, r := range e.logs.Records(t) {
		if lvl := r["level"]; lvl == "ERROR" || (lvl == "WARN" && strings.Contains(fmt.Sprint(r), "22021")) {
			t.Errorf("log: %v", r)
		}
		if strings.Contains(fmt.Sprint(r["msg"]), "look up flow by state") {
			t.Errorf("a bad state reached the store: %v", r)
		}
	}
	if refused := e.logs.Find(t, "request refused: not storable text"); len(refused) == 0 {
		t.Error("no log line says why forms were refused")
	}
}
