package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/migrations"
)

// An RSA key is generated once per test binary: 2048-bit keygen is slow.
var (
	webhookKeyOnce sync.Once
	webhookKey     string // base64 SPKI, the UNTIS_WEBHOOK_KEYS form
)

func webhookPublicKey(t *testing.T) string {
	t.Helper()
	webhookKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			panic(err)
		}
		webhookKey = base64.StdEncoding.EncodeToString(der)
	})
	return webhookKey
}

func newKeySpec(t *testing.T) string {
	t.Helper()
	spec, err := secret.GenerateKeySpec()
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func keyID(spec string) string {
	id, _, _ := strings.Cut(spec, ":")
	return id
}

func keyMaterial(spec string) string {
	_, k, _ := strings.Cut(spec, ":")
	return k
}

func password(t *testing.T, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	return pw
}

// openStoreWith opens a store on databaseURL with the ENCRYPTION_KEYS spec, closed when the test
// ends.
func openStoreWith(t *testing.T, databaseURL, spec string) *store.Store {
	t.Helper()
	kr, err := secret.ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), databaseURL, kr, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// server is a serve command running in-process on a port of its own choosing.
type server struct {
	addr string // learned from the "listening" log line
	base string // http://addr
	logs *logtest.Buffer

	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

// startServe runs serve with env and LISTEN_ADDR=127.0.0.1:0, and waits for its "listening" log
// line to learn the address: no free port is picked and released first, so no other process can
// take it in between. The server is stopped when the test ends, if the test has not stopped it.
func startServe(t *testing.T, env map[string]string) *server {
	t.Helper()
	env = maps.Clone(env)
	env["LISTEN_ADDR"] = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{logs: &logtest.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- run(ctx, []string{"serve"}, getenvFrom(env), strings.NewReader(""), io.Discard, s.logs)
	}()
	t.Cleanup(func() {
		if err := s.stop(t); err != nil {
			t.Errorf("serve returned %v when stopped", err)
		}
	})
	waitFor(t, "the listening log line", func() bool {
		select {
		case err := <-s.done:
			s.done <- err // for stop
			t.Fatalf("serve stopped before listening: %v\n%s", err, s.logs)
		default:
		}
		for _, r := range s.logs.Find(t, "listening") {
			if a, _ := r["addr"].(string); a != "" {
				s.addr = a
				return true
			}
		}
		return false
	})
	s.base = "http://" + s.addr
	return s
}

// stop cancels serve's context (SIGTERM, in the real process) and returns what run returned.
func (s *server) stop(t *testing.T) error {
	t.Helper()
	s.stopOnce.Do(func() {
		s.cancel()
		select {
		case s.stopErr = <-s.done:
		case <-time.After(90 * time.Second):
			s.stopErr = errors.New("serve did not return within 90s of the cancel")
		}
	})
	return s.stopErr
}

// refusingDatabase is an address where something accepts connections and closes them at once:
// a database that is down, without relying on a port staying free.
func refusingDatabase(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeStartsAndStops(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewEmptyDatabase(t) // serve's migrate-up runs for real
	encKeys := newKeySpec(t)
	const delay = 2 * time.Second
	env := map[string]string{
		"DATABASE_URL":       dbURL,
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    encKeys,
		"SHUTDOWN_TIMEOUT":   "10s",
		"SHUTDOWN_DELAY":     delay.String(),
		"PUBLIC_URL":         "https://partner.example.com",
	}
	srv := startServe(t, env)
	base := srv.base

	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "http_requests_total") || !strings.Contains(body, "db_pool_max_connections") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d:\n%s", code, body)
	}
	// The platform clients are wired in, and their listener for other replicas' credential
	// changes connects.
	waitFor(t, "the tenant change listener", func() bool {
		_, body := httpGet(t, base+"/metrics")
		return strings.Contains(body, "platform_tenant_listener_connected 1") &&
			strings.Contains(body, "platform_tenants_credentials_failing 0")
	})
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/ = %d", resp.StatusCode)
	}
	// PUBLIC_URL is https: pages carry HSTS.
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS with an https PUBLIC_URL: %q", resp.Header.Get("Strict-Transport-Security"))
	}

	// The container health probe reaches the running server (it reads the port from LISTEN_ADDR).
	probeEnv := maps.Clone(env)
	probeEnv["LISTEN_ADDR"] = srv.addr
	if err := run(context.Background(), []string{"healthcheck"}, getenvFrom(probeEnv), nil, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck against the running server: %v", err)
	}

	// The schema was migrated by serve.
	var migrateOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "version"}, getenvFrom(env), nil, &migrateOut, io.Discard); err != nil {
		t.Fatal(err)
	}
	versions := embeddedVersions(t)
	if latest := fmt.Sprintf("schema version: %d\n", versions[len(versions)-1]); !strings.Contains(migrateOut.String(), latest) {
		t.Errorf("after serve, migrate version says %q", migrateOut.String())
	}

	// Stop: during SHUTDOWN_DELAY /readyz answers 503 while pages are still served; then the
	// listener closes and run returns nil.
	stopped := make(chan error, 1)
	cancelled := time.Now()
	go func() { stopped <- srv.stop(t) }()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	sawNotReady := false
	waitFor(t, "/readyz to answer 503 after the cancel", func() bool {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			// Refused connections are only acceptable once the delay is over (a slow machine).
			if time.Since(cancelled) < delay {
				t.Fatalf("/readyz failed %v after the cancel, within SHUTDOWN_DELAY: %v", time.Since(cancelled), err)
			}
			return true
		}
		resp.Body.Close()
		sawNotReady = resp.StatusCode == http.StatusServiceUnavailable
		return sawNotReady
	})
	if sawNotReady {
		if code, err := func() (int, error) {
			resp, err := client.Get(base + "/")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}(); err != nil || code != http.StatusOK {
			if time.Since(cancelled) < delay {
				t.Errorf("GET / during SHUTDOWN_DELAY = %d, %v; want 200", code, err)
			}
		}
	} else {
		t.Log("the machine was too slow to see /readyz during SHUTDOWN_DELAY; the httpserver tests cover it")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("run returned %v, want nil after cancel", err)
		}
		if waited := time.Since(cancelled); waited < delay {
			t.Errorf("run returned %v after the cancel, before SHUTDOWN_DELAY (%v) was over", waited, delay)
		}
	case <-time.After(120 * time.Second):
		t.Fatal("run did not return")
	}
	if c, err := net.DialTimeout("tcp", srv.addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after run returned")
	}
	if err := run(context.Background(), []string{"healthcheck"}, getenvFrom(probeEnv), nil, io.Discard, io.Discard); err == nil {
		t.Error("healthcheck succeeded after the server stopped")
	}

	// The log: JSON lines, a start line describing the configuration without its secrets.
	logs := srv.logs
	starting := logs.Find(t, "starting")
	if len(starting) != 1 {
		t.Fatalf("%d start-up log lines:\n%s", len(starting), logs)
	}
	if starting[0]["LISTEN_ADDR"] != "127.0.0.1:0" || starting[0]["PUBLIC_URL"] != "https://partner.example.com" {
		t.Errorf("start-up line does not show the configuration: %v", starting[0])
	}
	logs.AssertNoSecrets(t, password(t, dbURL), keyMaterial(encKeys), dbURL)
	for _, msg := range []string{"listening", "stopped"} {
		if len(logs.Find(t, msg)) != 1 {
			t.Errorf("log lacks %q", msg)
		}
	}
	var shutdown map[string]any
	for _, r := range logs.Records(t) {
		if m, _ := r["msg"].(string); strings.HasPrefix(m, "shutting down") {
			shutdown = r
		}
	}
	if shutdown == nil || shutdown["delay"] != float64(delay) {
		t.Errorf("shutdown log line = %v, want one with delay %v", shutdown, delay)
	}
	// An https PUBLIC_URL gives no configuration warning.
	for _, r := range logs.Records(t) {
		if r["level"] == "WARN" {
			t.Errorf("unexpected warning: %v", r)
		}
	}
}

// When requests are still running at SHUTDOWN_TIMEOUT, the server closes them and still exits
// 0: it was asked to stop, and it stopped (contract: drain and exit 0).
func TestServeDrainTimeoutStillExitsCleanly(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":       pgtest.NewDatabase(t),
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    newKeySpec(t),
		"SHUTDOWN_DELAY":     "0s",
		"SHUTDOWN_TIMEOUT":   "1s",
		"LOG_LEVEL":          "debug", // the probe's request line shows the request was handled
		"PUBLIC_URL":         "http://partner.example.com",
	}
	srv := startServe(t, env)

	// A request that stays in flight: it announces a body it never sends. The handler answers,
	// then net/http waits (up to ReadTimeout, 15s) for that body before it writes the response,
	// so the connection is active, not idle, when the drain starts.
	conn, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stuck request to reach the handler", func() bool {
		for _, r := range srv.logs.Find(t, "request") {
			if r["route"] == "/healthz" {
				return true
			}
		}
		return false
	})

	if err := srv.stop(t); err != nil {
		t.Fatalf("run after a drain timeout = %v, want nil", err)
	}
	var warned bool
	for _, r := range srv.logs.Find(t, "stopped before every request finished") {
		warned = r["level"] == "WARN"
	}
	if !warned {
		t.Errorf("no warning about the unfinished request:\n%s", srv.logs)
	}
	// The stuck connection was closed, without a response.
	if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(conn); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("reading the stuck connection: %v (got %q)", err, b)
	} else if len(b) != 0 {
		t.Errorf("the stuck connection got a response: %q", b)
	}
	// A plain-http public URL that is not loopback is warned about at start.
	var configWarning bool
	for _, r := range srv.logs.Records(t) {
		if m, _ := r["msg"].(string); r["level"] == "WARN" && strings.HasPrefix(m, "configuration:") && strings.Contains(m, "PUBLIC_URL") {
			configWarning = true
		}
	}
	if !configWarning {
		t.Errorf("no configuration warning for PUBLIC_URL=http://partner.example.com:\n%s", srv.logs)
	}
}

func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	encKeys := newKeySpec(t)
	const dbPassword = "NeverPrintThisPassw0rd"
	valid := map[string]string{
		"DATABASE_URL":       "postgres://app:" + dbPassword + "@127.0.0.1:1/partner",
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    encKeys,
		"LISTEN_ADDR":        "127.0.0.1:0",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range valid {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
	}{
		{"missing DATABASE_URL", with("DATABASE_URL", ""), "DATABASE_URL"},
		{"missing UNTIS_WEBHOOK_KEYS", with("UNTIS_WEBHOOK_KEYS", ""), "UNTIS_WEBHOOK_KEYS"},
		{"missing ENCRYPTION_KEYS", with("ENCRYPTION_KEYS", ""), "ENCRYPTION_KEYS"},
		{"malformed DATABASE_URL", with("DATABASE_URL", "mysql://app:"+dbPassword+"@db/partner"), "DATABASE_URL"},
		{"malformed ENCRYPTION_KEYS", with("ENCRYPTION_KEYS", "k1:"+keyMaterial(encKeys)+"!!"), "ENCRYPTION_KEYS"},
		{"ENCRYPTION_KEYS without id", with("ENCRYPTION_KEYS", keyMaterial(encKeys)), "ENCRYPTION_KEYS"},
		{"malformed UNTIS_WEBHOOK_KEYS", with("UNTIS_WEBHOOK_KEYS", "not-a-key"), "UNTIS_WEBHOOK_KEYS"},
		{"malformed LISTEN_ADDR", with("LISTEN_ADDR", "nowhere"), "LISTEN_ADDR"},
		{"malformed LOG_LEVEL", with("LOG_LEVEL", "loud"), "LOG_LEVEL"},
		{"both DATABASE_URL and DATABASE_URL_FILE", with("DATABASE_URL_FILE", "/etc/hostname"), "DATABASE_URL"},
		{"unreadable ENCRYPTION_KEYS_FILE", with("ENCRYPTION_KEYS", "", "ENCRYPTION_KEYS_FILE", "/nonexistent/keys"), "ENCRYPTION_KEYS_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), []string{"serve"}, getenvFrom(tt.env), nil, &stdout, &stderr)
			if err == nil {
				t.Fatal("serve started with a bad configuration")
			}
			if !strings.Contains(err.Error(), tt.wantVar) {
				t.Errorf("error %q does not name %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is not one line", err)
			}
			for _, s := range []string{dbPassword, keyMaterial(encKeys)} {
				if strings.Contains(err.Error()+stdout.String()+stderr.String(), s) {
					t.Errorf("output contains a secret: %v\n%s%s", err, stdout.String(), stderr.String())
				}
			}
		})
	}
}

// A database that does not answer stops serve with an error that keeps the password out, in
// both forms of DATABASE_URL.
func TestServeUnreachableDatabase(t *testing.T) {
	t.Parallel()
	const dbPassword = "NeverPrintThisPassw0rd"
	addr := refusingDatabase(t)
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, databaseURL string }{
		{"URL", "postgres://app:" + dbPassword + "@" + addr + "/partner?connect_timeout=5"},
		{"keywords", "host=" + host + " port=" + port + " user=app password=" + dbPassword + " dbname=partner connect_timeout=5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"DATABASE_URL":       tt.databaseURL,
				"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
				"ENCRYPTION_KEYS":    newKeySpec(t),
				"LISTEN_ADDR":        "127.0.0.1:0",
			}
			stderr := &logtest.Buffer{}
			err := run(context.Background(), nil, getenvFrom(env), nil, io.Discard, stderr)
			if err == nil {
				t.Fatal("serve started without a database")
			}
			if strings.Contains(err.Error(), dbPassword) {
				t.Errorf("the error names the password: %s", logtest.Redact(err.Error(), dbPassword))
			}
			stderr.AssertNoSecrets(t, dbPassword)
		})
	}
}

// A port already taken is a clear error naming LISTEN_ADDR.
func TestServeListenAddrInUse(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := map[string]string{
		"DATABASE_URL":       pgtest.NewDatabase(t),
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    newKeySpec(t),
		"LISTEN_ADDR":        ln.Addr().String(),
	}
	err = run(context.Background(), []string{"serve"}, getenvFrom(env), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "LISTEN_ADDR") {
		t.Fatalf("serve on a taken port = %v, want an error naming LISTEN_ADDR", err)
	}
}

// embeddedVersions lists the versions of the embedded up-migrations in order. Tests derive the
// schema versions they expect from it, since the numbers may leave gaps (branches merged in
// another order) and grow with every migration.
func embeddedVersions(t *testing.T) []int {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil || len(names) < 2 {
		t.Fatalf("embedded migrations %v: %v", names, err)
	}
	var out []int
	for _, n := range names {
		v, err := strconv.Atoi(n[:strings.IndexByte(n, '_')])
		if err != nil {
			t.Fatalf("migration %s: %v", n, err)
		}
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewEmptyDatabase(t)
	env := map[string]string{"DATABASE_URL": dbURL}
	const (
		present = 1
		absent  = -1
	)
	versions := embeddedVersions(t)
	n := len(versions)
	latest := fmt.Sprintf("schema version: %d\n", versions[n-1])
	previous := fmt.Sprintf("schema version: %d\n", versions[n-2])
	force := strconv.Itoa(versions[n-1])
	steps := []struct {
		sql     string // run first, to set the scene
		args    []string
		wantOut string // "" = expect an error
		wantErr string
		tables  int // present, absent or 0 (not checked)
	}{
		{args: []string{"migrate", "version"}, wantOut: "schema version: none", tables: absent},
		{args: []string{"migrate", "down", "1"}, wantErr: "only 0 migration(s) are applied", tables: absent},
		{args: []string{"migrate", "up"}, wantOut: latest, tables: present},
		{args: []string{"migrate", "version"}, wantOut: latest},
		{args: []string{"migrate", "up"}, wantOut: latest}, // no change is no error
		// More steps than applied: refused before anything is rolled back.
		{args: []string{"migrate", "down", strconv.Itoa(n + 1)}, wantErr: fmt.Sprintf("only %d migration(s) are applied", n), tables: present},
		{args: []string{"migrate", "version"}, wantOut: latest, tables: present},
		{args: []string{"migrate", "down", "1"}, wantOut: previous, tables: present},
		{args: []string{"migrate", "down", strconv.Itoa(n - 1)}, wantOut: "schema version: none", tables: absent},
		{args: []string{"migrate", "down", "x"}, wantErr: "positive number"},
		{args: []string{"migrate", "down", "0"}, wantErr: "positive number"},
		{args: []string{"migrate", "down", "-1"}, wantErr: "positive number"},
		{args: []string{"migrate", "down"}, wantErr: "usage"},
		{args: []string{"migrate", "bogus"}, wantErr: "usage"},
		{args: []string{"migrate", "up", "extra"}, wantErr: "usage"},
		{args: []string{"migrate"}, wantErr: "usage"},
		{args: []string{"migrate", "up"}, wantOut: latest, tables: present},
		// A migration that failed half-way: the version says so, up refuses and names the way out.
		{sql: `UPDATE schema_migrations SET dirty = true`, args: []string{"migrate", "version"}, wantOut: "migrate force"},
		{args: []string{"migrate", "up"}, wantErr: "migrate force " + force},
		{args: []string{"migrate", "force", "x"}, wantErr: "must be a migration number"},
		{args: []string{"migrate", "force", "-1"}, wantErr: "must be a migration number"},
		{args: []string{"migrate", "force", "99"}, wantErr: "there is no migration 99"},
		{args: []string{"migrate", "force"}, wantErr: "usage"},
		{args: []string{"migrate", "force", "1", "2"}, wantErr: "usage"},
		{args: []string{"migrate", "force", force}, wantOut: latest, tables: present},
		{args: []string{"migrate", "up"}, wantOut: latest, tables: present},
		{args: []string{"migrate", "version"}, wantOut: latest},
	}
	for _, s := range steps {
		if s.sql != "" {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			_, err = conn.Exec(ctx, s.sql)
			conn.Close(ctx)
			if err != nil {
				t.Fatalf("%s: %v", s.sql, err)
			}
		}
		var stdout bytes.Buffer
		err := run(context.Background(), s.args, getenvFrom(env), nil, &stdout, io.Discard)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Errorf("%v: error %v, want one containing %q", s.args, err, s.wantErr)
			}
		} else if err != nil {
			t.Fatalf("%v: %v", s.args, err)
		} else if !strings.Contains(stdout.String(), s.wantOut) {
			t.Errorf("%v printed %q, want %q", s.args, stdout.String(), s.wantOut)
		}
		if s.tables != 0 {
			if got := pgtest.HasTable(t, dbURL, "tenants"); got != (s.tables == present) {
				t.Errorf("after %v: tables present = %v, want %v", s.args, got, s.tables == present)
			}
		}
	}

	// DATABASE_URL in keyword form works as well.
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	keyword := fmt.Sprintf("host=%s port=%s user=%s password='%s' dbname=%s sslmode=disable",
		u.Hostname(), u.Port(), u.User.Username(), strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw), strings.TrimPrefix(u.Path, "/"))
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "version"}, getenvFrom(map[string]string{"DATABASE_URL": keyword}), nil, &stdout, io.Discard); err != nil {
		t.Errorf("migrate version with a keyword DATABASE_URL: %v", err)
	} else if !strings.Contains(stdout.String(), latest) {
		t.Errorf("migrate version with a keyword DATABASE_URL printed %q", stdout.String())
	}

	// migrate needs only the database, and says so when it is missing.
	err = run(context.Background(), []string{"migrate", "version"}, getenvFrom(map[string]string{}), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("migrate without DATABASE_URL = %v", err)
	}
}

func TestRotateKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	keyA, keyB, keyC := newKeySpec(t), newKeySpec(t), newKeySpec(t)

	openWith := func(spec string) *store.Store { return openStoreWith(t, dbURL, spec) }

	// Credentials sealed under key A: two tenants, one with two versions.
	stA := openWith(keyA)
	want := map[string]store.Credentials{}
	for _, c := range []struct{ tenant, client, secret, password string }{
		{"1001", "client-x", "oidc-secret-1001-v1", "password-1001-v1"},
		{"1001", "client-x", "oidc-secret-1001-v2", "password-1001-v2"},
		{"2002", "client-x", "oidc-secret-2002", "password-2002"},
	} {
		if err := stA.UpsertTenant(ctx, c.tenant, store.StateActive, "School "+c.tenant); err != nil {
			t.Fatal(err)
		}
		cr := store.Credentials{ClientID: c.client, Secret: c.secret, Password: c.password, Source: "webhook"}
		if _, err := stA.AddCredentials(ctx, c.tenant, cr); err != nil {
			t.Fatal(err)
		}
		want[c.tenant] = cr
	}
	plaintexts := []string{"oidc-secret-1001-v1", "oidc-secret-1001-v2", "oidc-secret-2002", "password-1001-v1", "password-1001-v2", "password-2002"}

	rotate := func(spec string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"rotate-keys"}, getenvFrom(map[string]string{"DATABASE_URL": dbURL, "ENCRYPTION_KEYS": spec}), nil, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		for _, p := range append(plaintexts, keyMaterial(keyA), keyMaterial(keyB), password(t, dbURL)) {
			if p != "" && (strings.Contains(out, p) || (err != nil && strings.Contains(err.Error(), p))) {
				t.Errorf("rotate-keys output or error contains the secret %q:\n%s%v", p, out, err)
			}
		}
		return out, err
	}

	out, err := rotate(keyB + "," + keyA)
	if err != nil {
		t.Fatalf("rotate-keys B,A: %v\n%s", err, out)
	}
	for _, w := range []string{
		keyID(keyB),
		"tenant_credentials.secret_sealed: scanned=3 rotated=3 current=0 unreadable=0",
		"tenant_credentials.password_sealed: scanned=3 rotated=3 current=0 unreadable=0",
		"done:",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("rotate-keys output lacks %q:\n%s", w, out)
		}
	}

	// Only B opens everything now; only A opens nothing.
	stB := openWith(keyB)
	stOnlyA := openWith(keyA)
	for tenant, w := range want {
		got, err := stB.CurrentCredentials(ctx, tenant)
		if err != nil {
			t.Errorf("tenant %s with only key B: %v", tenant, err)
		} else if got.Secret != w.Secret || got.Password != w.Password || got.ClientID != w.ClientID {
			t.Errorf("tenant %s with only key B: got %v, want %v", tenant, got, w)
		}
		if _, err := stOnlyA.CurrentCredentials(ctx, tenant); !errors.Is(err, secret.ErrUnknownKey) {
			t.Errorf("tenant %s with only key A: err = %v, want ErrUnknownKey", tenant, err)
		}
	}

	// Running again is a no-op: everything is current.
	out, err = rotate(keyB + "," + keyA)
	if err != nil {
		t.Fatalf("second rotate-keys: %v\n%s", err, out)
	}
	if !strings.Contains(out, "tenant_credentials.secret_sealed: scanned=3 rotated=0 current=3") {
		t.Errorf("second rotate-keys output:\n%s", out)
	}

	// A keyring that lacks the values' key cannot open them: an error, and nothing is lost.
	out, err = rotate(keyC + "," + keyA)
	if err == nil || !strings.Contains(err.Error(), "could not be opened") {
		t.Fatalf("rotate-keys C,A = %v, want an error saying values could not be opened\n%s", err, out)
	}
	if !strings.Contains(out, "unreadable=3") {
		t.Errorf("rotate-keys C,A output does not count the unreadable values:\n%s", out)
	}
	for tenant := range want {
		if _, err := stB.CurrentCredentials(ctx, tenant); err != nil {
			t.Errorf("after a failed rotation, tenant %s no longer opens with B: %v", tenant, err)
		}
	}

	// rotate-keys needs ENCRYPTION_KEYS.
	err = run(ctx, []string{"rotate-keys"}, getenvFrom(map[string]string{"DATABASE_URL": dbURL}), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEYS") {
		t.Errorf("rotate-keys without ENCRYPTION_KEYS = %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args       []string
		wantErr    string // "" = no error
		wantStdout string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`, ""},
		{[]string{"--serve"}, "unknown command", ""},
		{[]string{"serve", "extra"}, "serve takes no arguments", ""},
		{[]string{"version"}, "", version},
		{[]string{"help"}, "", "usage: server"},
		{[]string{"-h"}, "", "migrate down N"},
		{[]string{"help"}, "", "migrate force V"},
	}
	for _, tt := range tests {
		var stdout bytes.Buffer
		err := run(context.Background(), tt.args, getenvFrom(map[string]string{}), nil, &stdout, io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "usage:") {
				t.Errorf("%v: error %v, want %q with the usage", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tt.args, err)
		} else if !strings.Contains(stdout.String(), tt.wantStdout) {
			t.Errorf("%v printed %q, want %q", tt.args, stdout.String(), tt.wantStdout)
		}
	}
}
