package exampleapp

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/events"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/internalapi"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// The spec's published test secret, as the server's events tests use it.
const eventsSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// apiToken is the test deployment's INTERNAL_API_TOKEN.
const apiToken = "example-app-test-internal-api-token-0123456789"

// serverEnv is the real thing around the example app: the simulated platform, a real database,
// the server's public handler (which receives the platform's signed webhooks, so schools are
// activated, deactivated and deleted the real way), its internal platform API on a listener of
// its own, and its events worker delivering to the app. Only the gateway is the test's (g): it
// signs the identity tokens the app verifies.
type serverEnv struct {
	t        *testing.T
	g        *gateway
	sim      *platformsim.Sim
	store    *store.Store
	internal *httptest.Server
	app      *app
	appSrv   *httptest.Server
}

// newServerEnv starts it all; cfg adjusts the app's configuration (its API URL, token and events
// secret are the env's unless cfg sets them).
func newServerEnv(t *testing.T, cfg func(*Config)) *serverEnv {
	t.Helper()
	e := &serverEnv{t: t, g: newGateway(t)}
	log := slog.New(slog.DiscardHandler)
	sim, err := platformsim.New(platformsim.Config{Logger: log, PartnerURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)
	sim.SetBaseURL(simSrv.URL)
	e.sim = sim

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

	apiURL, _ := url.Parse(simSrv.URL)
	clients, err := platform.New(platform.Config{BaseURL: apiURL, Store: st, Logger: log, Metrics: metrics.NewRegistry(),
		Now: sim.Now, RetryBase: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := config.ParseWebhookKeys(sim.WebhookPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	public := httptest.NewServer(httpserver.New(httpserver.Deps{
		Store: st, Platform: clients, Logger: log, Metrics: metrics.NewRegistry(),
		Onboard: onboard.New(st, clients, nil, log), Webhooks: webhook.NewVerifier(keys),
	}).Handler())
	t.Cleanup(public.Close)
	sim.SetPartnerURL(public.URL)

	api, err := internalapi.New(internalapi.Config{Store: st, Platform: clients, APIURL: apiURL, Tokens: []string{apiToken},
		MaxBody: internalapi.DefaultMaxBody, Logger: log, Metrics: metrics.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	e.internal = httptest.NewServer(api.Handler())
	t.Cleanup(e.internal.Close)

	c := Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: e.g.jwks.URL, APIURL: e.internal.URL,
		APIToken: apiToken, EventsSecret: eventsSecret}
	if cfg != nil {
		cfg(&c)
	}
	if e.app, err = build(c); err != nil {
		t.Fatal(err)
	}
	e.appSrv = httptest.NewServer(e.app.routes())
	t.Cleanup(e.appSrv.Close)

	// The server's events worker, delivering to the app's receiver as EVENTS_URL.
	secrets, err := events.ParseSecrets(eventsSecret)
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(e.appSrv.URL + eventsPath)
	w, err := events.New(events.Config{Store: st, URL: target, Secrets: secrets, Timeout: 5 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Poll: 20 * time.Millisecond,
		Busy: 5 * time.Millisecond, SweepEvery: time.Hour, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// school adds a school to the simulator and activates it there, which sends the platform's
// signed CREATED webhook to the server.
func (e *serverEnv) school(spec platformsim.TenantSpec) string {
	e.t.Helper()
	if _, err := e.sim.AddTenant(spec); err != nil {
		e.t.Fatal(err)
	}
	e.webhook(e.sim.Activate, spec.ID)
	return spec.ID
}

// webhook sends one of the simulator's lifecycle webhooks and checks the server took it.
func (e *serverEnv) webhook(send func(context.Context, string) (*platformsim.WebhookResult, error), tenantID string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := send(ctx, tenantID)
	if err != nil || res.Status != http.StatusOK {
		e.t.Fatalf("webhook for %s: %+v %v", tenantID, res, err)
	}
}

// userOf is a user of the school as the gateway would sign them in.
func userOf(u platformsim.User, tenantID, schoolName string) user {
	return user{tenant: tenantID, sub: u.SourcedID, role: u.Role, given: u.GivenName, family: u.FamilyName,
		email: u.Email, school: schoolName}
}

// page GETs path of the app as u, with a token the gateway signed for u.
func (e *serverEnv) page(path string, u user) (int, string) {
	e.t.Helper()
	tok := sign(e.t, e.g.kid, e.g.key, claimsOf(u, time.Now()), "ES256")
	code, _, body := get(e.t, e.appSrv.URL+path, headers(u, tok))
	return code, text(body)
}
