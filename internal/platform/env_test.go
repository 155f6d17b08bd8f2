package platform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

// env is one test's world: a simulated platform, a real database, and the clients under test.
type env struct {
	t       testing.TB
	sim     *platformsim.Sim
	simURL  string
	store   *store.Store
	clients *platform.Clients
	metrics *metrics.Registry
	logs    *logtest.Buffer
}

// options tune newEnv.
type options struct {
	sim    platformsim.Config
	client platform.Config // BaseURL, Store, Logger, Metrics and Now are filled in
}

func testKeyring(t testing.TB) *secret.Keyring {
	t.Helper()
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func newEnv(t testing.TB, o options) *env {
	t.Helper()
	e := &env{t: t}
	// Webhooks the simulator sends (RESET, ...) land in a small receiver that stores the
	// credentials as the webhook handler will, so credential changes travel the real way.
	receiver := httptest.NewServer(http.HandlerFunc(e.receiveCredentials))
	t.Cleanup(receiver.Close)
	o.sim.PartnerURL = receiver.URL
	var srv *httptest.Server
	e.sim, srv = simtest.NewServer(t, o.sim)
	e.simURL = srv.URL

	st, err := store.Open(context.Background(), pgtest.NewDatabase(t), testKeyring(t), store.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	e.store = st

	var log = o.client.Logger
	if log == nil {
		log, e.logs = logtest.New()
	}
	e.metrics = metrics.NewRegistry()
	cfg := o.client
	cfg.BaseURL, _ = url.Parse(srv.URL)
	cfg.Store, cfg.Logger, cfg.Metrics, cfg.Now = st, log, e.metrics, e.sim.Now
	if cfg.RetryBase == 0 {
		cfg.RetryBase = 5 * time.Millisecond
	}
	e.clients, err = platform.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// receiveCredentials stores the credentials of a webhook the simulator sent (unverified: the
// webhook receiver and its signature checks are tested elsewhere) and invalidates the cache, as
// the onboarding code does.
func (e *env) receiveCredentials(w http.ResponseWriter, r *http.Request) {
	var p struct {
		TenantID, ClientID, Secret, Password string
	}
	if r.URL.Path != "/webhooks/credentials" || json.NewDecoder(r.Body).Decode(&p) != nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	ctx := r.Context()
	if err := e.store.UpsertTenant(ctx, p.TenantID, store.StateActive, ""); err != nil {
		e.t.Error(err)
	}
	if _, err := e.store.AddCredentials(ctx, p.TenantID, store.Credentials{
		ClientID: p.ClientID, Secret: p.Secret, Password: p.Password, Source: "webhook",
	}); err != nil {
		e.t.Error(err)
	}
	e.clients.Invalidate(p.TenantID)
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// school adds a school to the simulator and stores its credentials as an activation would.
func (e *env) school(spec platformsim.TenantSpec) string {
	e.t.Helper()
	if _, err := e.sim.AddTenant(spec); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.sim.Activate(e.ctx(), spec.ID); err != nil {
		e.t.Fatal(err)
	}
	return spec.ID
}

// storeCredentials replaces the school's stored credentials (as a manual entry would).
func (e *env) storeCredentials(tenantID, clientID, secretValue, password string) {
	e.t.Helper()
	if _, err := e.store.AddCredentials(e.ctx(), tenantID, store.Credentials{
		ClientID: clientID, Secret: secretValue, Password: password, Source: "manual",
	}); err != nil {
		e.t.Fatal(err)
	}
	e.clients.Invalidate(tenantID)
}

// warmSchool adds a school, picks a teacher of it, and reads that teacher once through the
// school's client, so the school's token is cached when the test begins.
func (e *env) warmSchool(id string) (tenantID string, teacher platformsim.User, cl platform.Client) {
	e.t.Helper()
	tenantID = e.school(platformsim.TenantSpec{ID: id})
	teacher = e.user(tenantID, platformsim.RoleTeacher)
	cl = e.clients.For(tenantID)
	if _, err := cl.User(e.ctx(), teacher.SourcedID); err != nil {
		e.t.Fatal(err)
	}
	return tenantID, teacher, cl
}

func (e *env) user(tenantID, role string) platformsim.User {
	e.t.Helper()
	u, ok := e.sim.UserByRole(tenantID, role)
	if !ok {
		e.t.Fatalf("tenant %s has no %s", tenantID, role)
	}
	return u
}

func (e *env) tokenRequests(tenantID string) int {
	return e.sim.Stats().TokenRequestCount(tenantID, platformsim.GrantClientCredentials)
}

func (e *env) apiCalls(tenantID string) int {
	return e.sim.Stats().APICallCount(tenantID)
}

func (e *env) tenant(tenantID string) store.Tenant {
	e.t.Helper()
	tn, err := e.store.Tenant(e.ctx(), tenantID)
	if err != nil {
		e.t.Fatal(err)
	}
	return tn
}

// metric returns the exposition lines of /metrics that start with prefix.
func (e *env) metric(prefix string) string {
	var b strings.Builder
	if _, err := e.metrics.WriteTo(&b); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for line := range strings.SplitSeq(b.String(), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
