package internalapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/internalapi"
	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// apiToken is the test deployment's INTERNAL_API_TOKEN.
const apiToken = "test-internal-api-token-0123456789abcdef"

// env is one test's world: the simulated platform, a real database, the server's public
// handler (which receives the platform's webhooks, so schools are activated the real way) and
// the internal API on a listener of its own.
type env struct {
	t        testing.TB
	sim      *platformsim.Sim
	simURL   string
	store    *store.Store
	platform *platform.Clients
	metrics  *metrics.Registry
	logs     *logtest.Buffer
	public   *httptest.Server
	internal *httptest.Server
	tokens   *tokenRecorder
}

type options struct {
	// wrap, when set, puts a handler in front of the simulator (a platform that answers some
	// paths its own way); it gets the simulator's handler.
	wrap func(sim http.Handler) http.Handler
	// writePaths is INTERNAL_API_WRITE_PATHS.
	writePaths string
	// maxBody is INTERNAL_API_MAX_BODY (0: the default).
	maxBody int64
	// setupFields are SETUP_FIELDS_FILE's fields.
	setupFields setup.Fields
	// simConfig configures the simulator.
	simConfig platformsim.Config
	// platform adjusts the platform client's configuration.
	platform func(*platform.Config)
	// tokens are the accepted API tokens (default: apiToken).
	tokens []string
}

func newEnv(t testing.TB, o options) *env {
	t.Helper()
	e := &env{t: t, tokens: &tokenRecorder{base: http.DefaultTransport}}
	cfg := o.simConfig
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.PartnerURL = "http://127.0.0.1:1" // set below, once the public handler listens
	sim, err := platformsim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = sim.Handler()
	if o.wrap != nil {
		h = o.wrap(h)
	}
	simSrv := httptest.NewServer(h)
	t.Cleanup(simSrv.Close)
	sim.SetBaseURL(simSrv.URL)
	e.sim, e.simURL = sim, simSrv.URL

	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), kr, store.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.store = st

	var log *slog.Logger
	log, e.logs = logtest.New()
	e.metrics = metrics.NewRegistry()
	api, _ := url.Parse(simSrv.URL)
	pcfg := platform.Config{
		BaseURL: api, Store: st, Logger: log, Metrics: e.metrics, Now: sim.Now, RetryBase: 5 * time.Millisecond,
		HTTPClient: &http.Client{Transport: e.tokens},
	}
	if o.platform != nil {
		o.platform(&pcfg)
	}
	e.platform, err = platform.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}

	keys, err := config.ParseWebhookKeys(sim.WebhookPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	e.public = httptest.NewServer(httpserver.New(httpserver.Deps{
		Store: st, Platform: e.platform, Logger: log, Metrics: metrics.NewRegistry(),
		Onboard:  onboard.New(st, e.platform, o.setupFields, log),
		Webhooks: webhook.NewVerifier(keys),
	}).Handler())
	t.Cleanup(e.public.Close)
	sim.SetPartnerURL(e.public.URL)

	rules, err := internalapi.ParseWriteRules(o.writePaths)
	if err != nil {
		t.Fatal(err)
	}
	maxBody := o.maxBody
	if maxBody == 0 {
		maxBody = internalapi.DefaultMaxBody
	}
	tokens := o.tokens
	if tokens == nil {
		tokens = []string{apiToken}
	}
	a, err := internalapi.New(internalapi.Config{
		Store: st, Platform: e.platform, APIURL: api, Tokens: tokens, WritePaths: rules, MaxBody: maxBody,
		Logger: log, Metrics: e.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.internal = httptest.NewUnstartedServer(a.Handler())
	srvCfg := internalapi.NewHTTPServer(a.Handler(), log)
	e.internal.Config.ReadHeaderTimeout, e.internal.Config.ReadTimeout = srvCfg.ReadHeaderTimeout, srvCfg.ReadTimeout
	e.internal.Config.WriteTimeout, e.internal.Config.IdleTimeout = srvCfg.WriteTimeout, srvCfg.IdleTimeout
	e.internal.Config.MaxHeaderBytes = srvCfg.MaxHeaderBytes
	e.internal.Start()
	t.Cleanup(e.internal.Close)
	return e
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// school adds a school to the simulator and activates it there, which sends the signed CREATED
// webhook to the server.
func (e *env) school(spec platformsim.TenantSpec) string {
	e.t.Helper()
	if _, err := e.sim.AddTenant(spec); err != nil {
		e.t.Fatal(err)
	}
	res, err := e.sim.Activate(e.ctx(), spec.ID)
	if err != nil || res.Status != http.StatusOK {
		e.t.Fatalf("activate %s: %+v %v", spec.ID, res, err)
	}
	return spec.ID
}

// answer is a response with its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return http.StatusText(a.status) + " " + string(a.body) }

// problem is an answer's problem+json body.
type problemBody struct {
	Type            string `json:"type"`
	Title           string `json:"title"`
	Status          int    `json:"status"`
	Detail          string `json:"detail"`
	Instance        string `json:"instance"`
	RequestID       string `json:"requestId"`
	TenantID        string `json:"tenantId"`
	State           string `json:"state"`
	RetryAfter      int    `json:"retryAfter"`
	PlatformStatus  int    `json:"platformStatus"`
	PlatformCode    string `json:"platformCode"`
	PlatformMessage string `json:"platformMessage"`
}

// problem decodes the answer as problem+json, failing the test if it is not one.
func (a answer) problem(t testing.TB) problemBody {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json: %s", ct, a)
	}
	var p problemBody
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("not a problem body (%v): %s", err, a.body)
	}
	if p.Status != a.status || p.Title == "" || p.Detail == "" || p.RequestID != a.header.Get("X-Request-Id") || p.RequestID == "" {
		t.Errorf("problem %+v does not match its answer %d %v", p, a.status, a.header)
	}
	return p
}

// wantProblem checks that the answer is the problem of type slug with the status.
func (a answer) wantProblem(t testing.TB, status int, slug string) problemBody {
	t.Helper()
	if a.status != status {
		t.Errorf("status %d, want %d: %s", a.status, status, a)
	}
	p := a.problem(t)
	if p.Type != "/problems/"+slug {
		t.Errorf("type %q, want /problems/%s: %s", p.Type, slug, a)
	}
	return p
}

// do sends a request to a server; pathAndQuery is sent as it is written.
func (e *env) do(base, method, pathAndQuery string, body io.Reader, header http.Header) answer {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx(), method, base+pathAndQuery, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", method, pathAndQuery, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

var bearer = http.Header{"Authorization": {"Bearer " + apiToken}}

// api calls the internal API with the token.
func (e *env) api(method, pathAndQuery string, body io.Reader, header ...http.Header) answer {
	e.t.Helper()
	h := bearer.Clone()
	for _, x := range header {
		for k, v := range x {
			h[k] = v
		}
	}
	return e.do(e.internal.URL, method, pathAndQuery, body, h)
}

// raw sends a request whose target goes on the wire exactly as written (Go's client would
// refuse or re-encode some of those the tests need).
func (e *env) raw(method, target string) answer {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.internal.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	_, err = io.WriteString(conn, method+" "+target+" HTTP/1.1\r\nHost: internal\r\nAuthorization: Bearer "+apiToken+
		"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

func (e *env) get(pathAndQuery string) answer {
	e.t.Helper()
	return e.api(http.MethodGet, pathAndQuery, nil)
}

// tokenRecorder is the platform client's transport: it remembers every access token the
// platform issued, so tests can look for them where none may appear.
type tokenRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (tr *tokenRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := tr.base.RoundTrip(r)
	if err != nil || !strings.HasSuffix(r.URL.Path, "/token") {
		return resp, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	if err != nil {
		return resp, nil
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(b, &tok) == nil && tok.AccessToken != "" {
		tr.mu.Lock()
		tr.seen = append(tr.seen, tok.AccessToken)
		tr.mu.Unlock()
	}
	return resp, nil
}

func (tr *tokenRecorder) issued() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.seen...)
}

// secrets are every value that must never appear in an answer or the log: the API token, each
// school's OIDC secret and password, and every access token the platform issued.
func (e *env) secrets() []string {
	out := []string{apiToken}
	for _, ti := range e.sim.Tenants() {
		out = append(out, ti.Secret, ti.Password)
	}
	return append(out, e.tokens.issued()...)
}

// assertNoSecret fails when an answer's body or headers, or the log, hold a secret.
func (e *env) assertNoSecret(answers ...answer) {
	e.t.Helper()
	secrets := e.secrets()
	for _, a := range answers {
		var hdr strings.Builder
		_ = a.header.Write(&hdr)
		for _, s := range secrets {
			if s != "" && (bytes.Contains(a.body, []byte(s)) || strings.Contains(hdr.String(), s)) {
				e.t.Errorf("an answer holds a secret: %s", a)
			}
		}
	}
	e.logs.AssertNoSecrets(e.t, secrets...)
}

// calls returns the simulator's recorded API calls.
func (e *env) calls() []platformsim.APICall { return e.sim.APICalls() }
