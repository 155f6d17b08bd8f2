// Command loadgen drives a running stack (the server and the platform simulator, as `make run`
// or scripts/load.sh start them) with complete sign-ins and with authenticated /api/me requests,
// and prints counts, rate and latency percentiles.
//
//	loadgen -app http://localhost:8080 -sim http://localhost:8081 -mode both -d 10s
//
// Two more modes measure the gateway: "proxied" GETs -url (default: the app's /) with a session
// cookie (-session, or sessions signed in as for "me"), as a signed-in browser would, and
// "direct" GETs -url without any cookie, as a client of the upstream itself would. Side by side,
// with the trivial upstream that "loadgen upstream" serves (200 "ok" for every path):
//
//	loadgen upstream -addr 127.0.0.1:3001 &
//	loadgen -mode direct -url http://127.0.0.1:3001/bench -c 16 -d 20s
//	loadgen -mode proxied -app http://localhost:8080 -url http://localhost:8080/bench -c 16 -d 20s
//
// A login is launch on the app (302 to the simulator's authorize), authorize (302 back with a
// code), callback on the app (303 with the session cookie); redirects are never followed
// automatically. The simulator's pretend WebUntis session is its sim_user_{tenantId} cookie,
// set to a teacher the simulator's control API lists. The server's cookies are Secure and
// __Host- prefixed, which a Go cookie jar does not send over http://localhost, so each login
// keeps its cookies itself. It exits non-zero when no request succeeded.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is the command line.
type config struct {
	app, sim      string
	tenants       []string
	mode          string
	concurrency   int // 0: the mode's default
	duration      time.Duration
	sessionCookie string
	sessions      int
	// target is the URL of the proxied and direct modes; session an existing session cookie
	// value for proxied (none: sign in); expect the status every answer must have.
	target  string
	session string
	expect  int
}

const (
	defaultLoginConcurrency = 8
	defaultMeConcurrency    = 16
)

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var tenants string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.app, "app", "http://localhost:8080", "the partner server's base URL")
	fs.StringVar(&c.sim, "sim", "http://localhost:8081", "the platform simulator's base URL")
	fs.StringVar(&tenants, "tenants", "1001,1002", "comma-separated tenant ids of active schools")
	fs.StringVar(&c.mode, "mode", "both", "logins, me, both (logins, then me), proxied (GET -url with a session) or direct (GET -url without cookies)")
	fs.IntVar(&c.concurrency, "c", 0, fmt.Sprintf("concurrent workers (default %d for logins, %d for me)", defaultLoginConcurrency, defaultMeConcurrency))
	fs.DurationVar(&c.duration, "d", 10*time.Second, "how long each mode runs")
	fs.StringVar(&c.sessionCookie, "session-cookie", "__Host-untis-session", "the name of the server's session cookie")
	fs.IntVar(&c.sessions, "sessions", 16, "sessions signed in before the me and proxied modes")
	fs.StringVar(&c.target, "url", "", "the URL the proxied and direct modes GET (default: the app's /)")
	fs.StringVar(&c.session, "session", "", "proxied mode: the value of an existing session cookie to send (default: sign in -sessions sessions)")
	fs.IntVar(&c.expect, "expect", http.StatusOK, "proxied and direct modes: the status every answer must have")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	for _, t := range strings.Split(tenants, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.tenants = append(c.tenants, t)
		}
	}
	switch {
	case len(c.tenants) == 0:
		return c, errors.New("-tenants names no tenant")
	case !slices.Contains([]string{"logins", "me", "both", "proxied", "direct"}, c.mode):
		return c, fmt.Errorf("-mode %q: want logins, me, both, proxied or direct", c.mode)
	case c.concurrency < 0 || c.duration <= 0 || c.sessions <= 0:
		return c, errors.New("-c, -d and -sessions must be positive")
	case c.expect < 100 || c.expect > 599:
		return c, fmt.Errorf("-expect %d is not an HTTP status", c.expect)
	case c.session != "" && (c.mode != "proxied" || len(c.session) > 4096 || strings.ContainsAny(c.session, ";, \t\r\n")):
		return c, errors.New("-session is a cookie value for the proxied mode")
	}
	if c.target == "" {
		c.target = strings.TrimSuffix(c.app, "/") + "/"
	}
	for _, u := range []*string{&c.app, &c.sim, &c.target} {
		p, err := url.Parse(*u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return c, fmt.Errorf("%q is not an http(s) base URL", *u)
		}
		if u != &c.target {
			*u = strings.TrimSuffix(*u, "/")
		}
	}
	return c, nil
}

// needsUsers says whether the mode signs users in (and so needs the simulator).
func (c config) needsUsers() bool {
	return c.mode == "logins" || c.mode == "me" || c.mode == "both" || (c.mode == "proxied" && c.session == "")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "upstream" {
		return runUpstream(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}
	conc := func(def int) int {
		if cfg.concurrency > 0 {
			return cfg.concurrency
		}
		return def
	}
	maxConc := max(conc(defaultLoginConcurrency), conc(defaultMeConcurrency), cfg.sessions)
	g := newGen(cfg, maxConc)
	defer g.transport.CloseIdleConnections()

	var users []user
	if cfg.needsUsers() {
		if users, err = g.teachers(ctx); err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 1
		}
	}
	anyOK := false
	if cfg.mode == "logins" || cfg.mode == "both" {
		r := g.runFor(ctx, "logins", conc(defaultLoginConcurrency), func(worker, i int) error {
			u := users[(worker*7919+i)%len(users)]
			_, err := g.login(ctx, u)
			return err
		})
		r.print(stdout)
		anyOK = anyOK || r.ok > 0
	}
	if (cfg.mode == "me" || cfg.mode == "both") && ctx.Err() == nil {
		sessions, err := g.signInSessions(ctx, users, cfg.sessions)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 1
		}
		r := g.runFor(ctx, "me", conc(defaultMeConcurrency), func(worker, _ int) error {
			return g.me(ctx, sessions[worker%len(sessions)])
		})
		r.print(stdout)
		anyOK = anyOK || r.ok > 0
	}
	if cfg.mode == "proxied" || cfg.mode == "direct" {
		cookies := []string{""} // direct: no cookie at all
		if cfg.mode == "proxied" {
			if cfg.session != "" {
				cookies = []string{cookieHeader(map[string]string{cfg.sessionCookie: cfg.session})}
			} else if cookies, err = g.signInSessions(ctx, users, cfg.sessions); err != nil {
				fmt.Fprintln(stderr, "loadgen:", err)
				return 1
			}
		}
		r := g.runFor(ctx, cfg.mode, conc(defaultMeConcurrency), func(worker, _ int) error {
			return g.fetch(ctx, cfg.target, cookies[worker%len(cookies)])
		})
		r.print(stdout)
		anyOK = r.ok > 0
	}
	if !anyOK {
		fmt.Fprintln(stderr, "loadgen: nothing succeeded")
		return 1
	}
	return 0
}

// gen holds what every worker shares: the configuration and one transport whose idle pool is
// large enough that every worker keeps its keep-alive connections to both hosts.
type gen struct {
	cfg       config
	transport *http.Transport
	client    *http.Client
}

func newGen(cfg config, conc int) *gen {
	tr := &http.Transport{
		Proxy:               nil, // a local stack: never through a proxy
		MaxIdleConns:        4 * conc,
		MaxIdleConnsPerHost: 2 * conc,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   false,
	}
	return &gen{cfg: cfg, transport: tr, client: &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// user is a teacher to sign in as.
type user struct{ tenantID, sourcedID string }

// teachers lists the teachers of every tenant from the simulator's control API.
func (g *gen) teachers(ctx context.Context) ([]user, error) {
	var out []user
	for _, tid := range g.cfg.tenants {
		u := g.cfg.sim + "/sim/api/tenants/" + url.PathEscape(tid) + "/users?role=teacher"
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := g.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("list teachers of %s: %w", tid, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("list teachers of %s: %w", tid, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("list teachers of %s: %s answered %d: %.200s", tid, u, resp.StatusCode, body)
		}
		var list []struct {
			SourcedID string `json:"sourcedId"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("list teachers of %s: %w", tid, err)
		}
		for _, l := range list {
			if l.SourcedID != "" {
				out = append(out, user{tid, l.SourcedID})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the simulator lists no teacher for tenants %v", g.cfg.tenants)
	}
	return out, nil
}

// errStatus is an answer other than the one a step expects.
type errStatus struct {
	step   string
	status int
}

func (e *errStatus) Error() string {
	if e.status == http.StatusTooManyRequests {
		// The server limits the sign-ins one client starts (1,500 a minute by default); a load
		// test from one address is far past that.
		return fmt.Sprintf("%s answered %d: the server's launch limits refused it; start the server with "+
			"LAUNCH_LIMIT_PER_CLIENT=0 LAUNCH_LIMIT_PER_SCHOOL=0 (scripts/load.sh does)", e.step, e.status)
	}
	return fmt.Sprintf("%s answered %d", e.step, e.status)
}

// cookieHeader is the Cookie header that sends cookies (name to value).
func cookieHeader(cookies map[string]string) string {
	parts := make([]string, 0, len(cookies))
	for k, v := range cookies {
		parts = append(parts, (&http.Cookie{Name: k, Value: v}).String())
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// get requests u with the Cookie header given (if any), reads the body to the end (so the connection is
// reused), and returns the answer's status, its Location resolved against u, and its cookies.
func (g *gen) get(ctx context.Context, u, cookie string) (int, string, []*http.Cookie, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", nil, err
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc := ""
	if l := resp.Header.Get("Location"); l != "" {
		lu, err := req.URL.Parse(l)
		if err != nil {
			return resp.StatusCode, "", nil, fmt.Errorf("bad Location %q: %w", l, err)
		}
		loc = lu.String()
	}
	return resp.StatusCode, loc, resp.Cookies(), nil
}

// login signs u in as a new browser would and returns the session cookie's value. It succeeds
// only when the callback answered 303 and set the session cookie.
func (g *gen) login(ctx context.Context, u user) (string, error) {
	// The browser's cookies for the app, by name (the flow cookie; the session cookie after).
	appCookies := map[string]string{}
	keep := func(cs []*http.Cookie) {
		for _, c := range cs {
			if c.MaxAge < 0 || c.Value == "" {
				delete(appCookies, c.Name)
			} else {
				appCookies[c.Name] = c.Value
			}
		}
	}
	status, loc, cs, err := g.get(ctx, g.cfg.app+"/launch?tenant_id="+url.QueryEscape(u.tenantID), "")
	if err != nil {
		return "", fmt.Errorf("launch: %w", err)
	}
	if status != http.StatusFound || !strings.HasPrefix(loc, g.cfg.sim+"/") {
		return "", &errStatus{"launch", status}
	}
	keep(cs)
	// The simulator's pretend WebUntis session (platformsim.UserCookieName).
	simCookie := cookieHeader(map[string]string{"sim_user_" + u.tenantID: u.sourcedID})
	status, loc, _, err = g.get(ctx, loc, simCookie)
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	if status != http.StatusFound || !strings.HasPrefix(loc, g.cfg.app+"/") {
		return "", &errStatus{"authorize", status}
	}
	status, _, cs, err = g.get(ctx, loc, cookieHeader(appCookies))
	if err != nil {
		return "", fmt.Errorf("callback: %w", err)
	}
	if status != http.StatusSeeOther {
		return "", &errStatus{"callback", status}
	}
	for _, c := range cs {
		if c.Name == g.cfg.sessionCookie && c.Value != "" && c.MaxAge >= 0 {
			return c.Value, nil
		}
	}
	return "", errors.New("callback set no session cookie")
}

// signInSessions signs in n sessions (round robin over users) for the me mode and returns the
// Cookie header of each.
func (g *gen) signInSessions(ctx context.Context, users []user, n int) ([]string, error) {
	out := make([]string, 0, n)
	for i := range n {
		sid, err := g.login(ctx, users[i%len(users)])
		if err != nil {
			return nil, fmt.Errorf("sign in session %d of %d for the me mode: %w", i+1, n, err)
		}
		out = append(out, cookieHeader(map[string]string{g.cfg.sessionCookie: sid}))
	}
	return out, nil
}

// me requests /api/me with a session's Cookie header.
func (g *gen) me(ctx context.Context, cookie string) error {
	status, _, _, err := g.get(ctx, g.cfg.app+"/api/me", cookie)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return &errStatus{"/api/me", status}
	}
	return nil
}

// fetch GETs u with the Cookie header given ("" for none) and expects the configured status.
func (g *gen) fetch(ctx context.Context, u, cookie string) error {
	status, _, _, err := g.get(ctx, u, cookie)
	if err != nil {
		return err
	}
	if status != g.cfg.expect {
		return &errStatus{"GET " + u, status}
	}
	return nil
}

// result is one mode's outcome.
type result struct {
	mode        string
	concurrency int
	elapsed     time.Duration
	ok, failed  int
	latencies   []time.Duration // of the successes, sorted
	errors      map[string]int  // failures by description
}

// runFor runs conc workers calling op until the duration is over (a request under way when it
// ends is completed and counted) or ctx is cancelled.
func (g *gen) runFor(ctx context.Context, mode string, conc int, op func(worker, i int) error) result {
	deadline := time.Now().Add(g.cfg.duration)
	var (
		mu  sync.Mutex
		res = result{mode: mode, concurrency: conc, errors: map[string]int{}}
		wg  sync.WaitGroup
	)
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			errs := map[string]int{}
			failed := 0
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				err := op(w, i)
				if ctx.Err() != nil {
					break // interrupted: neither a success nor the stack's failure
				}
				if err != nil {
					failed++
					errs[describe(err)]++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.failed += failed
			for k, v := range errs {
				res.errors[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.ok = len(res.latencies)
	slices.Sort(res.latencies)
	return res
}

// describe shortens an error to a line fit for counting alike failures together.
func describe(err error) string {
	var es *errStatus
	if errors.As(err, &es) {
		return es.Error()
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// percentile is the q-quantile (0 < q <= 1) of sorted durations, by the nearest-rank method.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

func (r result) print(w io.Writer) {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "%s: concurrency %d, %s: ok %d, failed %d, %.1f/s\n",
		r.mode, r.concurrency, r.elapsed.Round(time.Millisecond), r.ok, r.failed, r.rate())
	if len(r.latencies) > 0 {
		fmt.Fprintf(w, "  latency p50 %s  p90 %s  p99 %s  max %s\n", ms(percentile(r.latencies, 0.50)),
			ms(percentile(r.latencies, 0.90)), ms(percentile(r.latencies, 0.99)), ms(r.latencies[len(r.latencies)-1]))
	}
	keys := make([]string, 0, len(r.errors))
	for k := range r.errors {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return r.errors[b] - r.errors[a] })
	for _, k := range keys {
		fmt.Fprintf(w, "  failed %d× %s\n", r.errors[k], k)
	}
}
