package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/httpserver"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/session"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/internal/webhook"
)

// world is make run in-process: the partner server (webhooks, sign-in) on a real database, and
// a platform simulator that can be restarted on the same address, as a second `make run`
// restarts it.
type world struct {
	t       *testing.T
	dbURL   string
	keys    string
	st      *store.Store
	simSrv  *httptest.Server
	simH    atomic.Pointer[http.Handler]
	sim     *platformsim.Sim
	partner *httptest.Server
	onboard *onboard.Service
	seed    []byte
}

func newWorld(t *testing.T, stateFile string) *world {
	t.Helper()
	w := &world{t: t, dbURL: pgtest.NewDatabase(t), seed: []byte("the simulator's webhook key")}
	var err error
	if w.keys, err = secret.GenerateKeySpec(); err != nil {
		t.Fatal(err)
	}
	w.simSrv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		(*w.simH.Load()).ServeHTTP(rw, r)
	}))
	t.Cleanup(w.simSrv.Close)
	w.startPartner()
	w.restartSim(stateFile)
	return w
}

func (w *world) startPartner() {
	t := w.t
	kr, err := secret.ParseKeyring(w.keys)
	if err != nil {
		t.Fatal(err)
	}
	w.st, err = store.Open(context.Background(), w.dbURL, kr, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.st.Close)
	api, _ := url.Parse(w.simSrv.URL)
	clients, err := platform.New(platform.Config{BaseURL: api, Store: w.st})
	if err != nil {
		t.Fatal(err)
	}
	var h atomic.Pointer[http.Handler]
	w.partner = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(rw, r) }))
	t.Cleanup(w.partner.Close)
	signIn, err := sso.New(sso.Config{APIURL: api, RedirectURL: w.partner.URL + "/launch", Store: w.st, Platform: clients})
	if err != nil {
		t.Fatal(err)
	}
	// Every simulator of this process signs webhooks with the same default key.
	probe, err := platformsim.New(platformsim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := config.ParseWebhookKeys(probe.WebhookPublicKey())
	if err != nil {
		t.Fatal(err)
	}
	// The server's caches follow credential changes through PostgreSQL notifications.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { clients.Listen(ctx, signIn.ChangeHandler()); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	w.onboard = onboard.New(w.st, clients, nil, nil, signIn.Invalidate)
	handler := httpserver.New(httpserver.Deps{
		Store: w.st, SSO: signIn, Sessions: session.New(session.Config{Store: w.st}), Platform: clients,
		Onboard: w.onboard, Webhooks: webhook.NewVerifier(keys), PublicOrigin: w.partner.URL,
	}).Handler()
	h.Store(&handler)
}

// restartSim starts a new simulator process on the same address: with the state file, or
// without one (""), as `make run` did before it kept one.
func (w *world) restartSim(stateFile string) {
	w.t.Helper()
	sim, err := platformsim.New(platformsim.Config{
		BaseURL: w.simSrv.URL, PartnerURL: w.partner.URL, DemoSeed: w.seed, StateFile: stateFile,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	sim.SeedDemo()
	handler := sim.Handler()
	w.simH.Store(&handler)
	w.sim = sim
}

// sync runs demosync as run.sh does.
func (w *world) sync() (string, error) {
	env := map[string]string{"DATABASE_URL": w.dbURL, "ENCRYPTION_KEYS": w.keys, "UNTIS_API_URL": w.simSrv.URL}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"demosync", "-sim", w.simSrv.URL}, func(k string) string { return env[k] }, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	for _, id := range []string{"1001", "1002"} {
		if ti, ok := w.sim.Tenant(id); ok && (strings.Contains(out, ti.Secret) || strings.Contains(out, ti.Password)) {
			w.t.Errorf("demosync printed a credential:\n%s", out)
		}
	}
	return out, err
}

// mustSync runs demosync and wants every school in a state someone chose.
func (w *world) mustSync(wantLines ...string) string {
	w.t.Helper()
	out, err := w.sync()
	if err != nil {
		w.t.Fatalf("demosync: %v\n%s", err, out)
	}
	for _, want := range wantLines {
		if !strings.Contains(out, want) {
			w.t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	return out
}

// signIn launches the app for a teacher of the school, as a click on an entry point does, and
// reports whether the user ends up signed in.
func (w *world) signIn(tid string) error {
	w.t.Helper()
	teacher, ok := w.sim.UserByRole(tid, platformsim.RoleTeacher)
	if !ok {
		w.t.Fatalf("no teacher in %s", tid)
	}
	if err := w.sim.SetSignedInUser(tid, teacher.SourcedID); err != nil {
		w.t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: secureJar{jar}, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	next := w.partner.URL + "/launch?tenant_id=" + tid
	for range 5 {
		resp, err := c.Get(next)
		if err != nil {
			return err
		}
		resp.Body.Close()
		loc, _ := resp.Location()
		switch {
		case resp.StatusCode == http.StatusSeeOther && loc != nil && loc.Path == "/":
			me, err := c.Get(w.partner.URL + "/api/me")
			if err != nil {
				return err
			}
			me.Body.Close()
			if me.StatusCode != http.StatusOK {
				return fmt.Errorf("/api/me = %d after signing in", me.StatusCode)
			}
			return nil
		case resp.StatusCode == http.StatusFound && loc != nil:
			next = loc.String()
		default:
			return fmt.Errorf("sign-in ended with %d at %s", resp.StatusCode, next)
		}
	}
	return errors.New("too many redirects")
}

// secureJar keeps cookies as browsers do for http://127.0.0.1 (a secure context): Secure and
// __Host- cookies work.
type secureJar struct{ *cookiejar.Jar }

func asHTTPS(u *url.URL) *url.URL {
	c := *u
	c.Scheme = "https"
	return &c
}

func (j secureJar) SetCookies(u *url.URL, cs []*http.Cookie) { j.Jar.SetCookies(asHTTPS(u), cs) }
func (j secureJar) Cookies(u *url.URL) []*http.Cookie        { return j.Jar.Cookies(asHTTPS(u)) }

func (w *world) mustSignIn(tids ...string) {
	w.t.Helper()
	for _, tid := range tids {
		if err := w.signIn(tid); err != nil {
			w.t.Errorf("school %s: sign-in fails: %v", tid, err)
		}
	}
}

func (w *world) version(tid string) int {
	w.t.Helper()
	c, err := w.st.CurrentCredentials(context.Background(), tid)
	if err != nil {
		return 0
	}
	return c.Version
}

func (w *world) state(tid string) string {
	w.t.Helper()
	tn, err := w.st.Tenant(context.Background(), tid)
	if err != nil {
		return ""
	}
	return tn.State
}

// TestMakeRunTwiceAfterAReset is the newcomer's case: the first make run activates the demo
// schools, the school's credentials are reset on the simulator page, make run runs again. The
// server must end up with the simulator's credentials, sign-in must work, and the report must
// say so; with the simulator's state file, and without it (the old make run: the restarted
// simulator came back with its first credentials, the CREATED it sent was a duplicate, and every
// launch failed behind an "ok").
func TestMakeRunTwiceAfterAReset(t *testing.T) {
	t.Parallel()
	for _, keepState := range []bool{true, false} {
		t.Run(map[bool]string{true: "with the state file", false: "simulator forgot its state"}[keepState], func(t *testing.T) {
			t.Parallel()
			stateFile := ""
			if keepState {
				stateFile = filepath.Join(t.TempDir(), "sim-state.json")
			}
			w := newWorld(t, stateFile)
			w.mustSync("demo school 1001 (Gymnasium am See): ready: the simulator sent its signed CREATED webhook",
				"demo school 1002 (Mittelschule Nord): ready: the simulator sent its signed CREATED webhook")
			w.mustSignIn("1001", "1002")

			if res, err := w.sim.Reset(context.Background(), "1001"); err != nil || res.Status != http.StatusOK {
				t.Fatalf("reset: %v %+v", err, res)
			}
			w.mustSignIn("1001")
			before := w.version("1001")

			w.restartSim(stateFile)
			if !keepState {
				// What the newcomer hit: the old make run's CREATED is the first run's body again.
				if res, err := w.sim.Activate(context.Background(), "1001"); err != nil || res.Status != http.StatusOK {
					t.Fatalf("activate: %v %+v", err, res)
				}
				if w.signIn("1001") == nil {
					t.Fatal("the scenario does not reproduce: sign-in works after the old make run's CREATED")
				}
			}
			out := w.mustSync()
			w.mustSignIn("1001", "1002")
			if keepState {
				if !strings.Contains(out, "demo school 1001 (Gymnasium am See): ready: the server holds the simulator's credentials, and the platform accepts them") {
					t.Errorf("with the state file nothing needs sending:\n%s", out)
				}
				if v := w.version("1001"); v != before {
					t.Errorf("credentials version %d -> %d although both sides agreed", before, v)
				}
			} else if !strings.Contains(out, "demo school 1001 (Gymnasium am See): ready: the server held other credentials than the simulator") ||
				!strings.Contains(out, "signed RESET webhook") {
				t.Errorf("the repair is not reported:\n%s", out)
			}
			// And a third run changes nothing.
			if out := w.mustSync(); strings.Count(out, ": ready: the server holds the simulator's credentials, and the platform accepts them") != 2 {
				t.Errorf("third run:\n%s", out)
			}
		})
	}
}

// TestMakeRunRepairsEveryDisagreement: whatever happened between two runs, demosync leaves
// the two sides agreeing, or says truthfully why a school is off and how to bring it back.
func TestMakeRunRepairsEveryDisagreement(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a pasted secret that was wrong (the password right)", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, filepath.Join(t.TempDir(), "state.json"))
		w.mustSync()
		cid, _, pw, _ := w.sim.Credentials("1001")
		if _, _, err := w.st.ActivateWithCredentials(ctx, "1001", store.Credentials{ClientID: cid, Secret: "not-the-secret", Password: pw, Source: store.SourceManual}, "admin", nil); err != nil {
			t.Fatal(err)
		}
		if w.signIn("1001") == nil {
			t.Fatal("sign-in works with a wrong secret")
		}
		w.mustSync("demo school 1001 (Gymnasium am See): ready: the server held other credentials than the simulator", "signed RESET webhook")
		w.mustSignIn("1001")
	})

	t.Run("the database was wiped", func(t *testing.T) {
		t.Parallel()
		stateFile := filepath.Join(t.TempDir(), "state.json")
		first := newWorld(t, stateFile)
		first.mustSync()
		if _, err := first.sim.Reset(ctx, "1002"); err != nil {
			t.Fatal(err)
		}
		// A new database, the simulator's state kept: the simulator says activated, the server
		// never heard of the schools.
		w := newWorld(t, stateFile)
		w.mustSync("demo school 1001 (Gymnasium am See): ready: the server did not know the school", "signed REACTIVATED webhook")
		w.mustSignIn("1001", "1002")
	})

	t.Run("deactivated on the simulator page", func(t *testing.T) {
		t.Parallel()
		stateFile := filepath.Join(t.TempDir(), "state.json")
		w := newWorld(t, stateFile)
		w.mustSync()
		if _, err := w.sim.Deactivate(ctx, "1002", false); err != nil {
			t.Fatal(err)
		}
		w.restartSim(stateFile)
		w.mustSync("demo school 1002 (Mittelschule Nord): deactivated on the simulator page and on the server, so sign-in is refused; press Reactivate")
		if st := w.state("1002"); st != store.StateDeactivated {
			t.Errorf("server state %s", st)
		}
		if ti, _ := w.sim.Tenant("1002"); ti.Status != platformsim.StatusDeactivated {
			t.Errorf("simulator status %s: make run brought back a school the user deactivated", ti.Status)
		}
		w.mustSignIn("1001")
	})

	t.Run("the deactivation webhook was lost", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, filepath.Join(t.TempDir(), "state.json"))
		w.mustSync()
		// The partner was down when the school deactivated the app.
		w.sim.SetPartnerURL("http://127.0.0.1:1")
		if _, err := w.sim.Deactivate(ctx, "1001", false); err == nil {
			t.Fatal("delivered to a closed port")
		}
		w.sim.SetPartnerURL(w.partner.URL)
		w.mustSync("demo school 1001 (Gymnasium am See): deactivated on the simulator page and on the server (the server still had it in use: the simulator sent the DEACTIVATION webhook again)")
		if st := w.state("1001"); st != store.StateDeactivated {
			t.Errorf("server state %s", st)
		}
	})

	t.Run("switched off by an operator", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, filepath.Join(t.TempDir(), "state.json"))
		w.mustSync()
		if _, err := w.onboard.Deactivate(ctx, "1001", "operator ops@partner.example", "trial over"); err != nil {
			t.Fatal(err)
		}
		w.mustSync("demo school 1001 (Gymnasium am See): switched off by an operator of this server (console), so sign-in is refused")
		if st := w.state("1001"); st != store.StateDeactivated {
			t.Errorf("make run undid the operator's decision: state %s", st)
		}
	})

	t.Run("the server refuses the webhooks", func(t *testing.T) {
		t.Parallel()
		w := newWorld(t, filepath.Join(t.TempDir(), "state.json"))
		// A partner URL where no server answers: nothing can be activated, and it is not ok.
		w.sim.SetPartnerURL("http://127.0.0.1:1")
		out, err := w.sync()
		if !errors.Is(err, errNotReady) || !strings.Contains(out, "demo school 1001 (Gymnasium am See): NOT READY") {
			t.Errorf("err = %v, want errNotReady:\n%s", err, out)
		}
	})
}
