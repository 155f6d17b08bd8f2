package platformsim_test

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// receivedWebhook is one request the test partner got.
type receivedWebhook struct {
	path, contentType, auth, alg string
	body                         []byte
}

// receiver is a partner that verifies webhooks like the real server must:
// the raw body against the key from WebhookPublicKey.
type receiver struct {
	mu  sync.Mutex
	got []receivedWebhook
	pub *rsa.PublicKey
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	rc := &receiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, receivedWebhook{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), r.Header.Get("Algorithm"), body})
		pub := rc.pub
		rc.mu.Unlock()
		sig, err := base64.StdEncoding.DecodeString(r.Header.Get("Authorization"))
		sum := sha256.Sum256(body)
		if err != nil || r.Header.Get("Algorithm") != "SHA256withRSA" || rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) last() receivedWebhook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[len(rc.got)-1]
}

func parseWebhookKey(t *testing.T, b64 string) *rsa.PublicKey {
	t.Helper()
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return pub.(*rsa.PublicKey)
}

func TestWebhooks(t *testing.T) {
	t.Parallel()
	rc, partner := newReceiver(t)
	e := newEnv(t, platformsim.Config{PartnerURL: partner.URL})
	rc.pub = parseWebhookKey(t, e.sim.WebhookPublicKey())
	ctx := t.Context()
	clientID, secret0, password0, _ := e.sim.Credentials("1001")

	// CREATED carries the current credentials and every documented field.
	res, err := e.sim.Activate(ctx, "1001")
	if err != nil || res.Status != http.StatusOK {
		t.Fatalf("Activate: %v %+v", err, res)
	}
	got := rc.last()
	if got.path != "/webhooks/credentials" || got.contentType != "application/json; charset=utf-8" || got.alg != "SHA256withRSA" {
		t.Errorf("request = %+v", got)
	}
	var cred map[string]string
	if err := json.Unmarshal(got.body, &cred); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tenantId", "clientId", "secret", "password", "host", "country", "region", "language",
		"eventType", "activatorEmail", "activatorUsername", "schoolEmail", "schoolPhoneNumber"} {
		if cred[k] == "" {
			t.Errorf("credentials webhook lacks %s", k)
		}
	}
	if cred["eventType"] != "CREATED" || cred["tenantId"] != "1001" || cred["clientId"] != clientID ||
		cred["secret"] != secret0 || cred["password"] != password0 {
		t.Errorf("CREATED body = %v", cred)
	}
	if ti, _ := e.sim.Tenant("1001"); ti.Status != platformsim.StatusActive || ti.LastWebhook.Status != 200 {
		t.Errorf("tenant after activation = %+v", ti)
	}

	// RESET: new credentials, the old password stops working at once.
	if _, err := e.sim.Reset(ctx, "1001"); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(rc.last().body, &cred)
	if cred["eventType"] != "RESET" || cred["password"] == password0 || cred["secret"] == secret0 {
		t.Errorf("RESET body = %v", cred)
	}
	if resp, _ := e.clientCredentials("1001", clientID, password0); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("old password after RESET: %d", resp.StatusCode)
	}
	if resp, _ := e.clientCredentials("1001", clientID, cred["password"]); resp.StatusCode != http.StatusOK {
		t.Errorf("new password after RESET: %d", resp.StatusCode)
	}
	token := e.serverToken("1001")

	// Replay: the same bytes and headers again.
	before := rc.last()
	if res, err := e.sim.ReplayLastWebhook(ctx, "1001"); err != nil || !res.Replay || res.Status != 200 {
		t.Fatalf("replay: %v %+v", err, res)
	}
	if after := rc.last(); string(after.body) != string(before.body) || after.auth != before.auth {
		t.Error("replay changed the bytes or the signature")
	}

	// DEACTIVATION: credentials and tokens stop working.
	if _, err := e.sim.Deactivate(ctx, "1001", false); err != nil {
		t.Fatal(err)
	}
	var deact map[string]string
	got = rc.last()
	_ = json.Unmarshal(got.body, &deact)
	if got.path != "/webhooks/deactivation" || deact["eventType"] != "DEACTIVATION" || deact["tenantId"] != "1001" ||
		deact["reasonType"] != "NO_REASON" || deact["reasonText"] == "" {
		t.Errorf("DEACTIVATION = %s %v", got.path, deact)
	}
	if resp, _ := e.clientCredentials("1001", clientID, cred["password"]); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("password after DEACTIVATION: %d", resp.StatusCode)
	}
	if resp := e.oneRoster("/users", token, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("token after DEACTIVATION: %d", resp.StatusCode)
	}

	// REACTIVATED: fresh credentials that work; old tokens stay dead.
	if _, err := e.sim.Reactivate(ctx, "1001"); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(rc.last().body, &cred)
	if cred["eventType"] != "REACTIVATED" {
		t.Errorf("REACTIVATED body = %v", cred)
	}
	if resp, _ := e.clientCredentials("1001", clientID, cred["password"]); resp.StatusCode != http.StatusOK {
		t.Errorf("password after REACTIVATED: %d", resp.StatusCode)
	}
	if resp := e.oneRoster("/users", token, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("pre-deactivation token revived: %d", resp.StatusCode)
	}

	// DELETION with the legacy "type" field.
	if _, err := e.sim.DeactivateWith(ctx, "1001", platformsim.DeactivationOptions{Deletion: true, LegacyTypeField: true, ReasonType: "SCHOOL_DELETION"}); err != nil {
		t.Fatal(err)
	}
	deact = map[string]string{}
	_ = json.Unmarshal(rc.last().body, &deact)
	if deact["type"] != "DELETION" || deact["eventType"] != "" || deact["reasonType"] != "SCHOOL_DELETION" {
		t.Errorf("legacy DELETION = %v", deact)
	}
	if ti, _ := e.sim.Tenant("1001"); ti.Status != platformsim.StatusDeleted {
		t.Errorf("status = %s", ti.Status)
	}

	// Every delivery verified at the receiver.
	rc.mu.Lock()
	n := len(rc.got)
	rc.mu.Unlock()
	if st := e.sim.Stats(); st.WebhooksSent != n || n != 6 {
		t.Errorf("webhooks sent %d, received %d", st.WebhooksSent, n)
	}
}

func TestSignWebhook(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{})
	pub := parseWebhookKey(t, e.sim.WebhookPublicKey())
	body := []byte(`{"tenantId":"1","eventType":"CREATED"}`)
	auth, alg := e.sim.SignWebhook(body)
	sig, err := base64.StdEncoding.DecodeString(auth)
	if err != nil || alg != "SHA256withRSA" {
		t.Fatalf("auth %q alg %q: %v", auth, alg, err)
	}
	sum := sha256.Sum256(body)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		t.Fatal(err)
	}
	body[2] ^= 1
	sum = sha256.Sum256(body)
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil {
		t.Fatal("a changed body verifies")
	}
}

func TestWebhookDeliveryFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, platformsim.Config{PartnerURL: "http://127.0.0.1:1"})
	if _, err := e.sim.Activate(t.Context(), "1001"); err == nil {
		t.Fatal("delivery to a closed port succeeded")
	}
	ti, _ := e.sim.Tenant("1001")
	if ti.Status != platformsim.StatusActive || ti.LastWebhookError == "" {
		t.Errorf("tenant = %+v", ti)
	}
	if _, err := e.sim.ReplayLastWebhook(t.Context(), "1002"); err == nil {
		t.Error("replay without a webhook succeeded")
	}
}
