package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/store"
)

func TestActivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, simSrv := simtest.NewServer(t, platformsim.Config{})
	if _, err := sim.AddTenant(platformsim.TenantSpec{ID: "5101", Name: "Realschule Süd"}); err != nil {
		t.Fatal(err)
	}
	clientID, secretValue, passwordValue, _ := sim.Credentials("5101")
	dbURL := pgtest.NewDatabase(t)
	keys := newKeySpec(t)
	st := openStoreWith(t, dbURL, keys)
	env := map[string]string{"DATABASE_URL": dbURL, "ENCRYPTION_KEYS": keys, "UNTIS_API_URL": simSrv.URL}
	activateWith := func(tenantID, stdin string, extraEnv ...string) (string, error) {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		for i := 0; i+1 < len(extraEnv); i += 2 {
			e[extraEnv[i]] = extraEnv[i+1]
		}
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"activate", tenantID}, getenvFrom(e), strings.NewReader(stdin), &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if err != nil {
			out += "error: " + err.Error()
		}
		for _, s := range []string{secretValue, passwordValue, keyMaterial(keys)} {
			if strings.Contains(out, s) {
				t.Errorf("activate printed a secret:\n%s", out)
			}
		}
		return out, err
	}
	creds := func(c, s, p string) string {
		return fmt.Sprintf(`{"clientId":%q,"secret":%q,"password":%q}`, c, s, p)
	}
	stored := func() int {
		var n int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM tenant_credentials WHERE tenant_id = '5101'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	for _, tc := range []struct {
		name, stdin, want string
	}{
		{"wrong password", creds(clientID, secretValue, "nope"), "refused the client id or the password"},
		{"swapped", creds(clientID, passwordValue, secretValue), "swapped"},
		{"wrong client id", creds("other-app", secretValue, passwordValue), "refused the client id or the password"},
		{"not JSON", "clientId=" + clientID + " secret=" + secretValue, "not the expected JSON"},
		{"unknown field", `{"clientId":"a","secret":"b","password":"c","host":"evil.example"}`, "not the expected JSON"},
		{"missing password", creds(clientID, secretValue, ""), "password: Please fill this in"},
	} {
		out, err := activateWith("5101", tc.stdin)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: err = %v, want %q\n%s", tc.name, err, tc.want, out)
		}
		if n := stored(); n != 0 {
			t.Fatalf("%s: %d credentials stored", tc.name, n)
		}
	}
	if _, err := activateWith("../5101", creds(clientID, secretValue, passwordValue)); err == nil {
		t.Error("a malformed tenant id was accepted")
	}

	out, err := activateWith("5101", creds(clientID, secretValue, passwordValue))
	if err != nil || !strings.Contains(out, "state active") {
		t.Fatalf("activate: %v\n%s", err, out)
	}
	got, err := st.ActiveCredentials(ctx, "5101")
	if err != nil || got.ClientID != clientID || got.Secret != secretValue || got.Password != passwordValue || got.Source != "operator" {
		t.Errorf("stored %v, %v", got, err)
	}
	var audit int
	if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE tenant_id = '5101' AND action = 'credentials.stored'
		AND detail::text NOT LIKE '%'||$1||'%' AND detail::text NOT LIKE '%'||$2||'%'`, secretValue, passwordValue).Scan(&audit); err != nil || audit != 1 {
		t.Errorf("audit events without secrets: %d, %v", audit, err)
	}
	// With setup fields configured a new school waits for its setup, but new credentials for a
	// school that is already active keep it active.
	out, err = activateWith("5101", creds(clientID, secretValue, passwordValue), "SETUP_FIELDS_FILE", writeSetupFields(t))
	if err != nil || !strings.Contains(out, "state "+store.StateActive) || !strings.Contains(out, "version 2") {
		t.Errorf("activate with setup fields: %v\n%s", err, out)
	}
	if _, err := sim.AddTenant(platformsim.TenantSpec{ID: "5102"}); err != nil {
		t.Fatal(err)
	}
	c2, s2, p2, _ := sim.Credentials("5102")
	out, err = activateWith("5102", creds(c2, s2, p2), "SETUP_FIELDS_FILE", writeSetupFields(t))
	if err != nil || !strings.Contains(out, "state "+store.StatePendingSetup) {
		t.Errorf("new school with setup fields: %v\n%s", err, out)
	}
}

func writeSetupFields(t *testing.T) string {
	t.Helper()
	p := t.TempDir() + "/setup.json"
	if err := os.WriteFile(p, []byte(`[{"name": "district", "label": "District", "type": "text", "required": true}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
