package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/platformsim/simtest"
	"github.com/untis-partner/server/internal/store"
)

// TestCommandsAgainstAnotherOP: `server activate` and `server check-tenant` work for schools
// whose platform behaves like another OpenID Provider (token endpoint at another path, the
// documented one answering 404; only client_secret_post): they use the token endpoint and the
// client authentication the school's discovery names.
func TestCommandsAgainstAnotherOP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, simSrv := simtest.NewServer(t, platformsim.Config{})
	dbURL := pgtest.NewDatabase(t)
	keys := newKeySpec(t)
	st := openStoreWith(t, dbURL, keys)
	env := getenvFrom(map[string]string{"DATABASE_URL": dbURL, "ENCRYPTION_KEYS": keys, "UNTIS_API_URL": simSrv.URL})
	for i, o := range []platformsim.InteropOptions{
		{AlternativeEndpoints: true},
		{PostAuthOnly: true},
		{AlternativeEndpoints: true, PostAuthOnly: true},
	} {
		tid := fmt.Sprintf("560%d", i)
		if _, err := sim.AddTenant(platformsim.TenantSpec{ID: tid, Name: "School " + tid, Teachers: 2, Students: 3}); err != nil {
			t.Fatal(err)
		}
		if err := sim.SetInterop(tid, o); err != nil {
			t.Fatal(err)
		}
		clientID, sec, pw, _ := sim.Credentials(tid)
		var stdout, stderr bytes.Buffer
		in := fmt.Sprintf(`{"clientId":%q,"secret":%q,"password":%q}`, clientID, sec, pw)
		if err := run(ctx, []string{"activate", tid}, env, strings.NewReader(in), &stdout, &stderr); err != nil {
			t.Fatalf("%+v: activate: %v\n%s%s", o, err, stdout.String(), stderr.String())
		}
		if c, err := st.ActiveCredentials(ctx, tid); err != nil || c.Password != pw {
			t.Fatalf("%+v: activate stored %v", o, err)
		}
		stdout.Reset()
		stderr.Reset()
		err := run(ctx, []string{"check-tenant", tid}, env, nil, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if err != nil || !strings.Contains(out, "token and OneRoster: ok") || !strings.Contains(out, "school: School "+tid) {
			t.Errorf("%+v: check-tenant: %v\n%s", o, err, out)
		}
		if strings.Contains(out, pw) || strings.Contains(out, sec) {
			t.Errorf("%+v: check-tenant printed a secret:\n%s", o, out)
		}
		if tn, _ := st.Tenant(ctx, tid); tn.State != store.StateActive || tn.CredentialsFailingSince != nil {
			t.Errorf("%+v: state %s, failing mark %q", o, tn.State, tn.CredentialsFailureReason)
		}
	}
}
