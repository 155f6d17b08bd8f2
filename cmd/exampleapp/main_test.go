package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The command serves the app until its context ends, also with a WebSocket open. Given only
// -issuer (the gateway's PUBLIC_URL), it verifies what a gateway with default settings signs:
// aud = PUBLIC_URL, keys at PUBLIC_URL/.well-known/jwks.json.
func TestRunServesAndStops(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}}})
	}))
	defer gw.Close()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(signer).Claims(map[string]any{
		"iss": gw.URL, "aud": gw.URL, "sub": "1001/t-1", "tenant_id": "1001", "user_id": "t-1", "role": "teacher",
		"given_name": "Ada", "family_name": "Lovelace", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-issuer", gw.URL}, noEnv, out, io.Discard) }()
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no address in %q", out.String())
		}
		if _, rest, ok := strings.Cut(out.String(), "listening on "); ok {
			base, _, _ = strings.Cut(rest, " ")
		}
	}
	if !strings.Contains(out.String(), "aud "+gw.URL) {
		t.Errorf("start-up line: %q", out.String())
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("X-Untis-Tenant-Id", "1001")
	req.Header.Set("X-Untis-User-Id", "t-1")
	req.Header.Set("X-Untis-Role", "teacher")
	req.Header.Set("X-Untis-Given-Name", "Ada")
	req.Header.Set("X-Untis-Family-Name", "Lovelace")
	req.Header.Set("X-Untis-Identity", tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "✓ identity verified") || !strings.Contains(string(page), "Ada Lovelace") {
		t.Errorf("the running app did not verify:\n%s", page)
	}
	// An open WebSocket does not hold up the stop.
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	c, _, err := websocket.Dial(wctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return")
	}
	for _, args := range [][]string{{"-jwks-url", "ftp://x"}, {"-issuer", ""}, {"extra"}} {
		if code := run(context.Background(), args, noEnv, io.Discard, io.Discard); code != 2 {
			t.Errorf("%v: exit %d", args, code)
		}
	}
}

func noEnv(string) string { return "" }

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The platform API's token and the events' secret come from the environment or from a file, never
// from a flag's value (ps shows those to every user of the machine); both at once is an error, and
// neither ever appears in what the command prints.
func TestSecretsComeFromTheEnvironmentOrAFile(t *testing.T) {
	t.Parallel()
	const token = "internal-api-token-from-the-environment-0123456789"
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	dir := t.TempDir()
	tokenFile, secretFile := filepath.Join(dir, "token"), filepath.Join(dir, "secret")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	api := []string{"-api-url", "http://127.0.0.1:8083"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"environment", api, map[string]string{"INTERNAL_API_TOKEN": token + ",an-older-token-still-accepted-by-the-server", "EVENTS_SECRET": secret}},
		{"files", append([]string{"-api-token-file", tokenFile, "-events-secret-file", secretFile}, api...), nil},
	} {
		o, err := parseFlags(tc.args, envOf(tc.env), io.Discard)
		if err != nil || !strings.HasPrefix(o.app.APIToken, token) || o.app.EventsSecret != secret || o.app.APIURL != "http://127.0.0.1:8083" {
			t.Errorf("%s: %+v %v", tc.name, o.app.APIURL, err)
		}
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"token twice", append([]string{"-api-token-file", tokenFile}, api...), map[string]string{"INTERNAL_API_TOKEN": token}, "both INTERNAL_API_TOKEN and -api-token-file"},
		{"secret twice", []string{"-events-secret-file", secretFile}, map[string]string{"EVENTS_SECRET": secret}, "both EVENTS_SECRET and -events-secret-file"},
		{"no token for the API", api, nil, "its token (INTERNAL_API_TOKEN) is not"},
		{"a file that is not there", []string{"-api-token-file", filepath.Join(dir, "nope")}, nil, "-api-token-file"},
		{"a secret without whsec_", nil, map[string]string{"EVENTS_SECRET": strings.TrimPrefix(secret, "whsec_")}, "does not start with whsec_"},
		{"an API URL with a password", []string{"-api-url", "http://app:" + token + "@127.0.0.1:8083"}, map[string]string{"INTERNAL_API_TOKEN": token}, "without user info"},
	} {
		var stderr strings.Builder
		code := run(context.Background(), tc.args, envOf(tc.env), io.Discard, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%s: exit %d, %q", tc.name, code, stderr.String())
		}
		if strings.Contains(stderr.String(), token) || strings.Contains(stderr.String(), "MfKQ9r8G") {
			t.Errorf("%s: a secret in %q", tc.name, stderr.String())
		}
	}
	// The start-up line names the API and the receiver, never the token or the secret.
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, api...), envOf(map[string]string{"INTERNAL_API_TOKEN": token, "EVENTS_SECRET": secret}), out, io.Discard)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "listening on"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no start-up line: %q", out.String())
		}
	}
	cancel()
	<-done
	line := out.String()
	if !strings.Contains(line, "platform API at http://127.0.0.1:8083") || !strings.Contains(line, "lifecycle events at POST /untis/events") ||
		strings.Contains(line, token) || strings.Contains(line, "MfKQ9r8G") {
		t.Errorf("start-up line %q", line)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
