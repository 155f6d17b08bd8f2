package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
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

func getenvFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// syncBuffer is written by the server's goroutines while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
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
	addr := freeAddr(t)
	env := map[string]string{
		"DATABASE_URL":       dbURL,
		"LISTEN_ADDR":        addr,
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    encKeys,
		"SHUTDOWN_TIMEOUT":   "10s",
		"PUBLIC_URL":         "https://partner.example.com",
	}
	var stdout, stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, getenvFrom(env), strings.NewReader(""), &stdout, &stderr) }()

	base := "http://" + addr
	waitFor(t, "/healthz to answer", func() bool {
		select {
		case err := <-done:
			t.Fatalf("serve stopped early: %v\n%s", err, stderr.String())
		default:
		}
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s", code, body)
	}
	if code, body := httpGet(t, base+"/metrics"); code != http.StatusOK ||
		!strings.Contains(body, "http_requests_total") || !strings.Contains(body, "db_pool_max_connections") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d:\n%s", code, body)
	}
	if code, _ := httpGet(t, base+"/"); code != http.StatusOK {
		t.Errorf("/ = %d", code)
	}

	// The container health probe reaches the running server.
	if err := run(ctx, []string{"healthcheck"}, getenvFrom(env), nil, io.Discard, io.Discard); err != nil {
		t.Errorf("healthcheck against the running server: %v", err)
	}

	// The schema was migrated by serve.
	var migrateOut bytes.Buffer
	if err := run(ctx, []string{"migrate", "version"}, getenvFrom(env), nil, &migrateOut, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(migrateOut.String(), "schema version: 1") {
		t.Errorf("after serve, migrate version says %q", migrateOut.String())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v, want nil after cancel", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return within the shutdown timeout")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after run returned")
	}
	if err := run(context.Background(), []string{"healthcheck"}, getenvFrom(env), nil, io.Discard, io.Discard); err == nil {
		t.Error("healthcheck succeeded after the server stopped")
	}

	// The log: JSON lines, a start line describing the configuration without its secrets.
	logs := stderr.String()
	var starting map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if m["msg"] == "starting" {
			starting = m
		}
	}
	if starting == nil {
		t.Fatalf("no start-up log line:\n%s", logs)
	}
	if starting["LISTEN_ADDR"] != addr || starting["PUBLIC_URL"] != "https://partner.example.com" {
		t.Errorf("start-up line does not show the configuration: %v", starting)
	}
	if pw := password(t, dbURL); pw == "" {
		t.Log("the test database URL has no password; only the key is checked")
	} else if strings.Contains(logs, pw) {
		t.Errorf("log contains the DATABASE_URL password:\n%s", logs)
	}
	if strings.Contains(logs, keyMaterial(encKeys)) || strings.Contains(logs, dbURL) {
		t.Errorf("log contains the ENCRYPTION_KEYS value or the DATABASE_URL:\n%s", logs)
	}
	for _, msg := range []string{`"msg":"listening"`, `"msg":"shutting down: draining in-flight requests"`, `"msg":"stopped"`} {
		if !strings.Contains(logs, msg) {
			t.Errorf("log lacks %s", msg)
		}
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

// A database that does not answer stops serve with an error that keeps the password out.
func TestServeUnreachableDatabase(t *testing.T) {
	t.Parallel()
	const dbPassword = "NeverPrintThisPassw0rd"
	closed := freeAddr(t) // nothing listens there any more
	env := map[string]string{
		"DATABASE_URL":       "postgres://app:" + dbPassword + "@" + closed + "/partner?connect_timeout=5",
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    newKeySpec(t),
		"LISTEN_ADDR":        "127.0.0.1:0",
	}
	var stderr syncBuffer
	err := run(context.Background(), nil, getenvFrom(env), nil, io.Discard, &stderr)
	if err == nil {
		t.Fatal("serve started without a database")
	}
	if strings.Contains(err.Error(), dbPassword) || strings.Contains(stderr.String(), dbPassword) {
		t.Errorf("the password leaked: %v\n%s", err, stderr.String())
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

func TestMigrateCommands(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.NewEmptyDatabase(t)}
	steps := []struct {
		args    []string
		wantOut string // "" = expect an error
		wantErr string
	}{
		{[]string{"migrate", "version"}, "schema version: none", ""},
		{[]string{"migrate", "up"}, "schema version: 1\n", ""},
		{[]string{"migrate", "version"}, "schema version: 1\n", ""},
		{[]string{"migrate", "up"}, "schema version: 1\n", ""}, // no change is no error
		{[]string{"migrate", "down", "1"}, "schema version: none", ""},
		{[]string{"migrate", "down", "x"}, "", "positive number"},
		{[]string{"migrate", "down", "0"}, "", "positive number"},
		{[]string{"migrate", "down", "-1"}, "", "positive number"},
		{[]string{"migrate", "down"}, "", "usage"},
		{[]string{"migrate", "bogus"}, "", "usage"},
		{[]string{"migrate", "up", "extra"}, "", "usage"},
		{[]string{"migrate"}, "", "usage"},
		{[]string{"migrate", "up"}, "schema version: 1\n", ""},
		{[]string{"migrate", "version"}, "schema version: 1\n", ""},
	}
	for _, s := range steps {
		var stdout bytes.Buffer
		err := run(context.Background(), s.args, getenvFrom(env), nil, &stdout, io.Discard)
		if s.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), s.wantErr) {
				t.Errorf("%v: error %v, want one containing %q", s.args, err, s.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", s.args, err)
		}
		if !strings.Contains(stdout.String(), s.wantOut) {
			t.Errorf("%v printed %q, want %q", s.args, stdout.String(), s.wantOut)
		}
	}

	// migrate needs only the database, and says so when it is missing.
	err := run(context.Background(), []string{"migrate", "version"}, getenvFrom(map[string]string{}), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("migrate without DATABASE_URL = %v", err)
	}
}

func TestRotateKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	keyA, keyB, keyC := newKeySpec(t), newKeySpec(t), newKeySpec(t)

	openWith := func(spec string) *store.Store {
		t.Helper()
		kr, err := secret.ParseKeyring(spec)
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(ctx, dbURL, kr, store.Options{MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}

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
