package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/logtest"
)

func noEnv(string) string { return "" }

func TestWebhookPublicKeySubcommand(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys", "webhook.pem")
	var outs []string
	for range 2 {
		var stdout, stderr bytes.Buffer
		if err := run(t.Context(), []string{"platformsim", "webhook-public-key", "-webhook-key-file", file}, noEnv, &stdout, &stderr); err != nil {
			t.Fatalf("run: %v (%s)", err, stderr.String())
		}
		outs = append(outs, strings.TrimSpace(stdout.String()))
	}
	if outs[0] != outs[1] {
		t.Error("the key changed between runs")
	}
	der, err := base64.StdEncoding.DecodeString(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKIXPublicKey(der); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", fi.Mode(), err)
	}
	if err := run(t.Context(), []string{"platformsim", "webhook-public-key"}, noEnv, io.Discard, io.Discard); err == nil {
		t.Error("no key file: no error")
	}
}

func TestFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ecFile := filepath.Join(dir, "ec.pem")
	if _, err := loadOrCreateKey(ecFile, "ES256"); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		env  map[string]string
	}{
		"bad alg":           {[]string{"-signing-alg", "HS256", "-addr", "127.0.0.1:0"}, nil},
		"alg/file mismatch": {[]string{"-signing-key-file", ecFile, "-addr", "127.0.0.1:0"}, nil},
		"bad SIM_DEMO":      {nil, map[string]string{"SIM_DEMO": "maybe"}},
		"stray argument":    {[]string{"serve"}, nil},
		"bad log level":     {[]string{"-log-level", "loud", "-addr", "127.0.0.1:0"}, nil},
	} {
		getenv := func(k string) string { return tc.env[k] }
		if err := run(t.Context(), append([]string{"platformsim"}, tc.args...), getenv, io.Discard, io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestServe starts the binary's run on a free port, uses it like make run
// does, and shuts it down through the context.
func TestServe(t *testing.T) {
	t.Parallel()
	var got struct {
		sync.Mutex
		paths []string
	}
	partner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Lock()
		got.paths = append(got.paths, r.URL.Path)
		got.Unlock()
	}))
	defer partner.Close()

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr logtest.Buffer
	env := map[string]string{"SIM_PARTNER_URL": partner.URL, "SIM_SIGNING_ALG": "ES256"}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"platformsim", "-addr", "127.0.0.1:0",
			"-signing-key-file", filepath.Join(dir, "signing.pem"), "-webhook-key-file", filepath.Join(dir, "webhook.pem")},
			func(k string) string { return env[k] }, &stdout, &stderr)
	}()

	urlRE := regexp.MustCompile(`open (http://127\.0\.0\.1:\d+)/`)
	var base string
	for deadline := time.Now().Add(5 * time.Second); base == ""; {
		if m := urlRE.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no URL printed; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	resp, err := http.Get(base + "/WebUntis/api/sso/v3/1001/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Issuer string   `json:"issuer"`
		Algs   []string `json:"id_token_signing_alg_values_supported"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc.Issuer != base+"/WebUntis/api/sso/v3/1001" || len(doc.Algs) != 1 || doc.Algs[0] != "ES256" {
		t.Errorf("discovery = %+v", doc)
	}

	resp, err = http.Post(base+"/sim/api/tenants/1001/activate", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got.Lock()
	paths := got.paths
	got.Unlock()
	if resp.StatusCode != http.StatusOK || len(paths) != 1 || paths[0] != "/webhooks/credentials" {
		t.Errorf("activate: %d, partner saw %v", resp.StatusCode, paths)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	for _, f := range []string{"signing.pem", "webhook.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

// TestStateFileFlag: with -state-file a restarted simulator offers the credentials of the reset
// it did before (make run's second start), instead of the first ones.
func TestStateFileFlag(t *testing.T) {
	t.Parallel()
	partner := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer partner.Close()
	dir := t.TempDir()
	args := []string{"platformsim", "-addr", "127.0.0.1:0", "-partner-url", partner.URL,
		"-webhook-key-file", filepath.Join(dir, "webhook.pem"), "-state-file", filepath.Join(dir, "sim-state.json")}
	secretOf := func(base string) string {
		t.Helper()
		resp, err := http.Get(base + "/sim/api/tenants/1001")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ti struct{ Secret, Status string }
		if err := json.NewDecoder(resp.Body).Decode(&ti); err != nil {
			t.Fatal(err)
		}
		return ti.Status + " " + ti.Secret
	}
	start := func() (string, func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr logtest.Buffer
		done := make(chan error, 1)
		go func() { done <- run(ctx, args, noEnv, &stdout, &stderr) }()
		urlRE := regexp.MustCompile(`open (http://127\.0\.0\.1:\d+)/`)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if m := urlRE.FindStringSubmatch(stdout.String()); m != nil {
				return m[1], func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("run: %v", err)
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no URL printed; stderr:\n%s", stderr.String())
			}
		}
	}
	base, stop := start()
	first := secretOf(base)
	resp, err := http.Post(base+"/sim/api/tenants/1001/reset", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reset := secretOf(base)
	stop()
	if reset == first || !strings.HasPrefix(reset, "active ") {
		t.Fatalf("reset: %q -> %q", first, reset)
	}
	base, stop = start()
	defer stop()
	if got := secretOf(base); got != reset {
		t.Errorf("after a restart: %q, want the reset's %q", got, reset)
	}
}
