package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/store"
)

func TestCheckTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, simSrv := simtest.NewServer(t, platformsim.Config{})
	if _, err := sim.AddTenant(platformsim.TenantSpec{ID: "5001", Name: "Gymnasium Nord", Teachers: 3, Students: 7, Admins: 1}); err != nil {
		t.Fatal(err)
	}
	clientID, secretValue, passwordValue, _ := sim.Credentials("5001")

	dbURL := pgtest.NewDatabase(t)
	keys := newKeySpec(t)
	st := openStoreWith(t, dbURL, keys)
	if err := st.UpsertTenant(ctx, "5001", store.StateActive, "Gymnasium Nord"); err != nil {
		t.Fatal(err)
	}
	if err := st.UpsertTenant(ctx, "5002", store.StatePendingSetup, ""); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DATABASE_URL": dbURL, "ENCRYPTION_KEYS": keys, "UNTIS_API_URL": simSrv.URL}
	check := func(tenantID string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, []string{"check-tenant", tenantID}, getenvFrom(env), nil, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if err != nil {
			out += "error: " + err.Error()
		}
		for _, s := range []string{secretValue, passwordValue, keyMaterial(keys), password(t, dbURL)} {
			if strings.Contains(out, s) {
				t.Errorf("check-tenant %s printed a secret:\n%s", tenantID, out)
			}
		}
		return out, err
	}
	addCredentials := func(pw string) {
		t.Helper()
		if _, err := st.AddCredentials(ctx, "5001", store.Credentials{ClientID: clientID, Secret: secretValue, Password: pw, Source: "manual"}); err != nil {
			t.Fatal(err)
		}
	}

	// The admin pasted the OIDC secret as the password: the command says so and marks it.
	addCredentials(secretValue)
	out, err := check("5001")
	if err == nil || !strings.Contains(out, "not the OIDC secret") || !strings.Contains(out, "version 1") {
		t.Errorf("with the secret as password: err = %v\n%s", err, out)
	}
	if tn, _ := st.Tenant(ctx, "5001"); tn.CredentialsFailingSince == nil {
		t.Error("the refusal did not mark the credentials failing")
	}

	// Fixed: everything works, the mark is shown once and then cleared.
	addCredentials(passwordValue)
	out, err = check("5001")
	if err != nil {
		t.Fatalf("check-tenant: %v\n%s", err, out)
	}
	for _, want := range []string{"state active", "version 2", "marked failing since", "token and OneRoster: ok", "school: Gymnasium Nord", "users: 12 (administrator 1, teacher 3, student 7, parent 1)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if tn, _ := st.Tenant(ctx, "5001"); tn.CredentialsFailingSince != nil {
		t.Error("the success did not clear the mark")
	}

	// A sign-in found the OIDC secret refused: the check proves the password only, says so, and
	// leaves that mark.
	if ok, err := st.MarkCredentialsFailing(ctx, "5001", 2, store.OIDCSecretRefused+": the token endpoint answered 401 invalid_client", time.Now()); !ok || err != nil {
		t.Fatalf("mark: %v %v", ok, err)
	}
	out, err = check("5001")
	if err != nil || !strings.Contains(out, "the OIDC secret was refused") || !strings.Contains(out, "OIDC secret stays marked as refused") {
		t.Errorf("check-tenant with the OIDC secret marked: %v\n%s", err, out)
	}
	if tn, _ := st.Tenant(ctx, "5001"); tn.CredentialsFailingSince == nil {
		t.Error("check-tenant cleared the mark of the OIDC secret, which it does not prove")
	}

	for tenantID, want := range map[string]string{
		"5002": "has no credentials stored",
		"5003": "is not known here",
	} {
		if out, err := check(tenantID); err == nil || !strings.Contains(out, want) {
			t.Errorf("check-tenant %s: err = %v, want %q\n%s", tenantID, err, want, out)
		}
	}
	if _, err := check(""); err == nil {
		t.Error("check-tenant with an empty id succeeded")
	}
	var stdout bytes.Buffer
	if err := run(ctx, []string{"check-tenant"}, getenvFrom(env), nil, &stdout, &stdout); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("check-tenant without an id: %v", err)
	}
}
