package httpserver_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// signinEnv is one test's world for sign-in: the simulated platform, a real database, and the
// server under test on an httptest server whose URL is the platform's partner URL.
type signinEnv struct {
	t       testing.TB
	sim     *platformsim.Sim
	simURL  string
	dbURL   string
	store   *store.Store
	app     *instance
	logs    *logtest.Buffer
	log     *slog.Logger
	keyring *secret.Keyring
	opts    signinOptions
}

// instance is one replica of the server: its own caches, sharing the database.
type instance struct {
	srv       *httptest.Server
	sso       *sso.Service
	sessions  *session.Manager
	platform  *platform.Clients
	metrics   *metrics.Registry
	store     *store.Store
	onboard   *onboard.Service
	operators *operator.Manager
	handler   atomic.Pointer[http.Handler]
	publicURL string
	now       func() time.Time
	served    bool
}

type signinOptions struct {
	sim   platformsim.Config
	embed bool
	// now is the server's clock (default: the simulator's).
	now func() time.Time
	// jwksInterval overrides the JWKS refetch limit.
	jwksInterval time.Duration
	idle, maxAge time.Duration
	// setupFields are the deployment's SETUP_FIELDS_FILE (nil: none).
	setupFields setup.Fields
	// trusted are TRUSTED_PROXIES: tests send X-Forwarded-For to act as other clients.
	trusted []netip.Prefix
	// launchLimits are LAUNCH_LIMIT_PER_CLIENT and _PER_SCHOOL (zero: off).
	launchLimits httpserver.LaunchLimits
	// deps, when set, completes each replica's dependencies (the gateway's tests add theirs);
	// publicURL is the address every replica is reached at.
	deps func(in *instance, publicURL string, d *httpserver.Deps)
	// httpServer, when set, adjusts each replica's http.Server before it starts (timeouts).
	httpServer func(*http.Server)
	// eventsTarget is EVENTS_URL as the console shows it ("" unset).
	eventsTarget string
	// sessionCacheTTL is SESSION_CACHE_TTL (zero: no cache, every request reads the database).
	sessionCacheTTL time.Duration
}

func newSigninEnv(t testing.TB, o signinOptions) *signinEnv {
	t.Helper()
	e := &signinEnv{t: t, opts: o}
	e.sim, e.simURL = startSim(t, o.sim)
	e.dbURL = pgtest.NewDatabase(t)
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{9}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	e.keyring = kr
	e.log, e.logs = logtest.New()
	e.app = e.newInstance()
	e.store = e.app.store
	e.sim.SetPartnerURL(e.app.srv.URL)
	return e
}

// testHashParams make operator password checks cheap in tests (the cost is read from each hash).
var testHashParams = operator.Params{Memory: 64, Time: 1, Threads: 1}

func startSim(t testing.TB, cfg platformsim.Config) (*platformsim.Sim, string) {
	// The partner URL is set once the server listens (newSigninEnv).
	cfg.PartnerURL = "http://127.0.0.1:1"
	sim, srv := simtest.NewServer(t, cfg)
	return sim, srv.URL
}

// newInstance starts one more replica of the server on the same database, with the partner URL
// of the first (as behind a load balancer).
func (e *signinEnv) newInstance() *instance {
	t := e.t
	t.Helper()
	st, err := store.Open(context.Background(), e.dbURL, e.keyring, store.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	in := &instance{store: st, metrics: metrics.NewRegistry()}
	now := e.opts.now
	if now == nil {
		now = e.sim.Now
	}
	api, _ := url.Parse(e.simURL)
	in.platform, err = platform.New(platform.Config{BaseURL: api, Store: st, Logger: e.log, Metrics: in.metrics, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	// The server's URL is known only once it listens; the handler is swapped in after (and again
	// by restart, which keeps the URL, as a redeployed server keeps its address).
	notYet := http.NotFoundHandler()
	in.handler.Store(&notYet)
	in.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		(*in.handler.Load()).ServeHTTP(w, r)
	}))
	if e.opts.httpServer != nil {
		e.opts.httpServer(in.srv.Config)
	}
	in.srv.Start()
	t.Cleanup(in.srv.Close)
	publicURL := in.srv.URL
	if e.app != nil {
		publicURL = e.app.srv.URL
	}
	in.sso, err = sso.New(sso.Config{
		APIURL: api, RedirectURL: publicURL + "/launch", Store: st, Platform: in.platform,
		Logger: e.log, Metrics: in.metrics, Now: now, JWKSMinInterval: e.opts.jwksInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	in.onboard = onboard.New(st, in.platform, e.opts.setupFields, e.log, in.sso.Invalidate)
	in.operators = operator.New(operator.Config{Store: st, Logger: e.log, Now: now, Hash: testHashParams})
	in.publicURL, in.now = publicURL, now
	e.serve(in, e.opts.embed)
	return in
}

// serve (re)builds the instance's sessions and handler, in embed mode or not.
func (e *signinEnv) serve(in *instance, embed bool) {
	t := e.t
	t.Helper()
	in.sessions = session.New(session.Config{
		Store: in.store, Embed: embed, IdleTimeout: e.opts.idle, MaxAge: e.opts.maxAge, Now: in.now, Logger: e.log,
		CacheTTL: e.opts.sessionCacheTTL,
	})
	webhookKey, err := config.ParseWebhookKeys(e.sim.WebhookPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	reg := in.metrics
	if in.served {
		// A restarted server registers its HTTP metrics anew.
		reg = metrics.NewRegistry()
	}
	in.served = true
	deps := httpserver.Deps{
		Store: in.store, SSO: in.sso, Sessions: in.sessions, Platform: in.platform, Logger: e.log, Metrics: reg,
		Onboard: in.onboard, Webhooks: webhook.NewVerifier(webhookKey), Operators: in.operators,
		EmbedMode: embed, PlatformOrigins: []string{e.simURL}, PublicOrigin: in.publicURL,
		Now: in.now, TrustedProxies: e.opts.trusted, LaunchLimits: e.opts.launchLimits, EventsTarget: e.opts.eventsTarget,
	}
	if e.opts.deps != nil {
		e.opts.deps(in, in.publicURL, &deps)
	}
	h := httpserver.New(deps).Handler()
	in.handler.Store(&h)
}

// restart serves the app again with EMBED_MODE switched to embed, on the same address and
// database: what a browser sees when the server is redeployed in the other mode.
func (e *signinEnv) restart(embed bool) {
	e.t.Helper()
	e.serve(e.app, embed)
}

func (e *signinEnv) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// school adds a school to the simulator and stores its credentials and state as an activation
// would.
func (e *signinEnv) school(spec platformsim.TenantSpec, state string) string {
	e.t.Helper()
	if _, err := e.sim.AddTenant(spec); err != nil {
		e.t.Fatal(err)
	}
	clientID, sec, pw, ok := e.sim.Credentials(spec.ID)
	if !ok {
		e.t.Fatalf("simulator has no credentials for %s", spec.ID)
	}
	if err := e.store.UpsertTenant(e.ctx(), spec.ID, state, ""); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.AddCredentials(e.ctx(), spec.ID, store.Credentials{
		ClientID: clientID, Secret: sec, Password: pw, Source: "webhook",
	}); err != nil {
		e.t.Fatal(err)
	}
	return spec.ID
}

func (e *signinEnv) user(tenantID, role string) platformsim.User {
	e.t.Helper()
	u, ok := e.sim.UserByRole(tenantID, role)
	if !ok {
		e.t.Fatalf("tenant %s has no %s", tenantID, role)
	}
	return u
}

// browser is a test browser: it keeps cookies like a real one on localhost (which treats
// http://127.0.0.1 as secure, so Secure and __Host- cookies work), and follows redirects only
// when asked.
type browser struct {
	t      testing.TB
	e      *signinEnv
	jar    *cookiejar.Jar
	client *http.Client
	lang   string // Accept-Language of every request ("" sends none)
}

// secureJar stores and returns cookies as if every URL were https, as browsers do for localhost.
type secureJar struct{ *cookiejar.Jar }

func asHTTPS(u *url.URL) *url.URL {
	c := *u
	c.Scheme = "https"
	return &c
}

func (j secureJar) SetCookies(u *url.URL, cs []*http.Cookie) { j.Jar.SetCookies(asHTTPS(u), cs) }
func (j secureJar) Cookies(u *url.URL) []*http.Cookie        { return j.Jar.Cookies(asHTTPS(u)) }

func (e *signinEnv) browser() *browser {
	jar, _ := cookiejar.New(nil)
	// Like every browser it names its languages; English, so that the pages of the simulator's
	// schools (language "de") read as the tests expect. A test that wants another sets b.lang.
	b := &browser{t: e.t, e: e, jar: jar, lang: "en-GB,en;q=0.8"}
	b.client = &http.Client{
		Jar:           secureJar{jar},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b
}

// signInAs makes the simulator's pretend WebUntis session that of user, in this browser.
func (b *browser) signInAs(tenantID, userID string) {
	u, _ := url.Parse(b.e.simURL)
	b.jar.SetCookies(asHTTPS(u), []*http.Cookie{{Name: platformsim.UserCookieName(tenantID), Value: userID, Path: "/"}})
}

type answer struct {
	status   int
	body     string
	header   http.Header
	location string
	url      string
}

// get requests u once, without following a redirect.
func (b *browser) get(u string) answer {
	b.t.Helper()
	return b.do(http.MethodGet, u, nil)
}

func (b *browser) do(method, u string, header http.Header) answer {
	b.t.Helper()
	return b.send(method, u, nil, header)
}

// send requests u once with body (nil for none), without following a redirect.
func (b *browser) send(method, u string, body io.Reader, header http.Header) answer {
	b.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	loc := resp.Header.Get("Location")
	if loc != "" {
		if l, err := resp.Request.URL.Parse(loc); err == nil {
			loc = l.String()
		}
	}
	return answer{status: resp.StatusCode, body: string(got), header: resp.Header, location: loc, url: u}
}

// follow requests u and follows redirects (at most 10), returning every answer in order.
func (b *browser) follow(u string) []answer {
	b.t.Helper()
	var out []answer
	for range 10 {
		a := b.get(u)
		out = append(out, a)
		if a.location == "" || a.status < 300 || a.status > 399 {
			return out
		}
		u = a.location
	}
	b.t.Fatalf("more than 10 redirects from %s", out[0].url)
	return nil
}

// launch opens the app's launch URL with query and follows through to the end.
func (b *browser) launch(query url.Values) answer {
	b.t.Helper()
	hops := b.follow(b.e.app.srv.URL + "/launch?" + query.Encode())
	return hops[len(hops)-1]
}

// authorize starts a launch on the app and lets the simulator answer, stopping before the
// callback reaches the app: it returns the callback URL (on the app) the platform sent back.
func (b *browser) authorize(app *instance, query url.Values) string {
	b.t.Helper()
	start := b.get(app.srv.URL + "/launch?" + query.Encode())
	if start.status != http.StatusFound || !strings.HasPrefix(start.location, b.e.simURL) {
		b.t.Fatalf("launch answered %d to %q, want 302 to the platform: %s", start.status, start.location, start.body)
	}
	back := b.get(start.location)
	if back.status != http.StatusFound {
		b.t.Fatalf("authorize answered %d: %s", back.status, back.body)
	}
	return back.location
}

// me returns GET /api/me on the app.
func (b *browser) me() answer {
	b.t.Helper()
	return b.get(b.e.app.srv.URL + "/api/me")
}

// cookie returns the value of the named cookie the browser holds for the app ("" if none).
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.e.app.srv.URL)
	for _, c := range b.jar.Cookies(asHTTPS(u)) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) cookieNames() []string {
	u, _ := url.Parse(b.e.app.srv.URL)
	var out []string
	for _, c := range b.jar.Cookies(asHTTPS(u)) {
		out = append(out, c.Name)
	}
	return out
}

// countRows counts the rows of a table (sessions, auth_flows, users) in the database.
func (e *signinEnv) countRows(table string) int {
	e.t.Helper()
	var n int
	if err := e.store.Pool().QueryRow(e.ctx(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func launchQuery(tenantID string, kv ...string) url.Values {
	q := url.Values{"tenant_id": {tenantID}}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	return q
}
