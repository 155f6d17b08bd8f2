package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/untis-partner/server/internal/pgtest"
)

// serve with UPSTREAM_URL runs in gateway mode: "/" and every path it does not reserve belong
// to the app, and only a signed-in user reaches it; forward-auth and the identity keys are
// wired; rotate-identity-key adds a key the JWKS then publishes.
func TestServeGatewayModeAndRotateIdentityKey(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	var lastHost, lastForwardedHost, lastRole atomic.Value
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		lastHost.Store(r.Host)
		lastForwardedHost.Store(r.Header.Get("X-Forwarded-Host"))
		lastRole.Store(r.Header.Get("X-Untis-Role"))
		io.WriteString(w, "the app")
	}))
	defer app.Close()
	dbURL := pgtest.NewEmptyDatabase(t)
	env := map[string]string{
		"DATABASE_URL":         dbURL,
		"UNTIS_WEBHOOK_KEYS":   webhookPublicKey(t),
		"ENCRYPTION_KEYS":      newKeySpec(t),
		"SHUTDOWN_DELAY":       "0s",
		"PUBLIC_URL":           "https://app.example.com",
		"UPSTREAM_URL":         app.URL,
		"GATEWAY_PUBLIC_PATHS": "/assets/",
	}
	srv := startServe(t, env)
	if len(srv.logs.Find(t, "gateway mode: every path the server does not reserve goes to the app")) != 1 {
		t.Errorf("no gateway-mode log line:\n%s", srv.logs)
	}
	for _, tc := range []struct {
		path   string
		status int
		want   string
	}{
		{"/", http.StatusUnauthorized, "Open this app from Untis"},
		{"/static/app.css", http.StatusUnauthorized, "Open this app from Untis"},
		{"/_untis/static/app.css", http.StatusOK, "font"},
		{"/_untis/auth", http.StatusUnauthorized, "Not signed in"},
		{"/.well-known/jwks.json", http.StatusOK, `"kid"`},
		{"/api/me", http.StatusUnauthorized, "not_signed_in"},
	} {
		if code, body := httpGet(t, srv.base+tc.path); code != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s = %d %.200s", tc.path, code, body)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d anonymous requests reached the app", hits.Load())
	}
	req, _ := http.NewRequest(http.MethodGet, srv.base+"/assets/app.js", nil)
	req.Header.Set("X-Untis-Role", "administrator")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "the app" || hits.Load() != 1 ||
		lastHost.Load() != "app.example.com" || lastForwardedHost.Load() != "app.example.com" || lastRole.Load() != "" {
		t.Errorf("public path: %d %q, host %v / %v, role %q", resp.StatusCode, body, lastHost.Load(), lastForwardedHost.Load(), lastRole.Load())
	}

	kids := func() []string {
		_, body := httpGet(t, srv.base+"/.well-known/jwks.json")
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(body), &set); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range set.Keys {
			out = append(out, k.KeyID)
		}
		return out
	}
	before := kids()
	if len(before) != 1 {
		t.Fatalf("JWKS of a new deployment: %v", before)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, []string{"rotate-identity-key"}, getenvFrom(env), nil, &out, io.Discard); err != nil {
		t.Fatalf("rotate-identity-key: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "new identity key ") || !strings.Contains(out.String(), "signs from ") ||
		!strings.Contains(out.String(), "the previous key "+before[0]+" stays published") {
		t.Errorf("rotate-identity-key printed:\n%s", out.String())
	}
	st := openStoreWith(t, dbURL, env["ENCRYPTION_KEYS"])
	keys, err := st.SigningKeys(ctx, time.Now())
	if err != nil || len(keys) != 2 || keys[1].KID != before[0] || !strings.Contains(out.String(), keys[0].KID) {
		t.Errorf("after rotate-identity-key the store holds %d keys (%v)", len(keys), err)
	}

	// It needs the encryption keys (the private keys are sealed).
	err = run(ctx, []string{"rotate-identity-key"}, getenvFrom(map[string]string{"DATABASE_URL": dbURL}), nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEYS") {
		t.Errorf("rotate-identity-key without ENCRYPTION_KEYS = %v", err)
	}
}
