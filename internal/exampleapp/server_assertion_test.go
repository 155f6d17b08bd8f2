package exampleapp

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/assertion"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

// The app verifies what the server itself signs (internal/assertion) against the JWKS the server
// serves: the two agree on algorithm, key ids, sub and claim names.
func TestVerifiesTheServersAssertions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, pgtest.NewDatabase(t), kr, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	signer, err := assertion.New(ctx, assertion.Config{Store: st, Issuer: testIssuer, Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	jwks := httptest.NewServer(signer)
	defer jwks.Close()
	tok, _, err := signer.Sign(assertion.Identity{
		TenantID: jurgen.tenant, UserID: jurgen.sub, Role: jurgen.role, GivenName: jurgen.given, FamilyName: jurgen.family,
		Email: jurgen.email, SchoolName: jurgen.school, Launch: jurgen.launch, Setup: jurgen.setup,
	})
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{jwks: jwks}
	_, srv := newApp(t, g)
	_, _, page := get(t, srv.URL+"/", headers(jurgen, tok))
	txt := text(page)
	for _, want := range []string{"✓ identity verified", "signed by the gateway's key " + signer.KeyID(), "sub 1001/t-4711", "given_name Jürgen"} {
		if !strings.Contains(txt, want) {
			t.Errorf("page lacks %q:\n%s", want, txt)
		}
	}
	if strings.Contains(txt, "say something else") {
		t.Errorf("the headers disagree with the server's token:\n%s", txt)
	}
}
