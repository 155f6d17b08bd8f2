package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/pgtest"
)

const testInternalToken = "serve-test-internal-token-0123456789abcdef"

// serve with INTERNAL_LISTEN_ADDR runs the internal API on that listener only: with the token it
// answers, without it 401, and the public listener does not know its routes. Both stop together.
func TestServeRunsTheInternalAPIOnItsOwnListener(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":         pgtest.NewEmptyDatabase(t),
		"UNTIS_WEBHOOK_KEYS":   webhookPublicKey(t),
		"ENCRYPTION_KEYS":      newKeySpec(t),
		"SHUTDOWN_DELAY":       "0s",
		"INTERNAL_LISTEN_ADDR": "127.0.0.1:0",
		"INTERNAL_API_TOKEN":   testInternalToken,
	}
	srv := startServe(t, env)
	var internal string
	waitFor(t, "the internal API's listening line", func() bool {
		for _, r := range srv.logs.Find(t, "internal API listening") {
			internal, _ = r["addr"].(string)
		}
		return internal != ""
	})
	get := func(base, path, token string) (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if code, h, body := get("http://"+internal, "/v1/schools", testInternalToken); code != http.StatusOK ||
		h.Get("Content-Type") != "application/json" || body != `{"schools":[],"next":null}` {
		t.Errorf("internal /v1/schools: %d %s", code, body)
	}
	if code, h, body := get("http://"+internal, "/v1/schools", ""); code != http.StatusUnauthorized ||
		!strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(body, "/problems/unauthorized") {
		t.Errorf("internal /v1/schools without the token: %d %s", code, body)
	}
	for _, p := range []string{"/v1/schools", "/v1/schools/1001/ims/oneroster/v1p1/users"} {
		if code, _, body := get(srv.base, p, testInternalToken); code != http.StatusNotFound || strings.Contains(body, "schools") {
			t.Errorf("public %s: %d %.200s", p, code, body)
		}
	}
	// The public listener's /metrics counts the internal API's requests (one registry).
	// (A request without the token is refused before it is routed.)
	if _, _, body := get(srv.base, "/metrics", ""); !strings.Contains(body, `internal_api_requests_total{route="schools",outcome="ok"} 1`) ||
		!strings.Contains(body, `internal_api_requests_total{route="other",outcome="unauthorized"} 1`) {
		t.Errorf("metrics:\n%s", body)
	}
	if err := srv.stop(t); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	if c, err := net.DialTimeout("tcp", internal, time.Second); err == nil {
		c.Close()
		t.Error("the internal listener still accepts connections after serve returned")
	}
	srv.logs.AssertNoSecrets(t, testInternalToken)
}

// An internal listener without a token is a configuration error naming the variable, and a port
// that cannot be had is a start error naming INTERNAL_LISTEN_ADDR; either way nothing serves.
func TestServeRefusesAnInternalListenerItCannotRunSafely(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"DATABASE_URL":       pgtest.NewEmptyDatabase(t),
		"UNTIS_WEBHOOK_KEYS": webhookPublicKey(t),
		"ENCRYPTION_KEYS":    newKeySpec(t),
		"LISTEN_ADDR":        "127.0.0.1:0",
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	noToken := map[string]string{"INTERNAL_LISTEN_ADDR": "127.0.0.1:0"}
	err := run(ctx, []string{"serve"}, getenvFrom(merge(base, noToken)), nil, io.Discard, io.Discard)
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Var != config.EnvInternalAPIToken {
		t.Errorf("without a token: %v, want a configuration error naming %s", err, config.EnvInternalAPIToken)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := map[string]string{"INTERNAL_LISTEN_ADDR": taken.Addr().String(), "INTERNAL_API_TOKEN": testInternalToken}
	err = run(ctx, []string{"serve"}, getenvFrom(merge(base, busy)), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), config.EnvInternalListenAddr) || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("a port in use: %v, want a start error naming %s", err, config.EnvInternalListenAddr)
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
