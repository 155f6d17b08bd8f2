package onboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/discovery"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/web"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	good := Credentials{TenantID: "1001", ClientID: "app", Secret: "s3cret", Password: "pa55"}
	for _, tc := range []struct {
		name string
		in   Credentials
		bad  []string // fields with a problem
	}{
		{"good", good, nil},
		{"pasted with spaces and a line break", Credentials{TenantID: " 1001\n", ClientID: "app ", Secret: "\ts3cret", Password: "pa55\r\n"}, nil},
		{"all missing", Credentials{}, []string{FieldTenantID, FieldClientID, FieldSecret, FieldPassword}},
		{"tenant with a path", Credentials{TenantID: "../1001", ClientID: "app", Secret: "s", Password: "p"}, []string{FieldTenantID}},
		{"tenant too long", Credentials{TenantID: strings.Repeat("1", 65), ClientID: "app", Secret: "s", Password: "p"}, []string{FieldTenantID}},
		{"control character inside", Credentials{TenantID: "1001", ClientID: "a\x00pp", Secret: "s", Password: "p\x1bq"}, []string{FieldClientID, FieldPassword}},
		{"not UTF-8", Credentials{TenantID: "1001", ClientID: "app\xff", Secret: "s\xc3", Password: "p"}, []string{FieldClientID, FieldSecret}},
		{"absurdly long secret", Credentials{TenantID: "1001", ClientID: "app", Secret: strings.Repeat("x", 1025), Password: "p"}, []string{FieldSecret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, err := Check(tc.in)
			var ie *InputError
			if len(tc.bad) == 0 {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				if out != good {
					t.Fatalf("Check = %+v, want the values trimmed to %+v", out, good)
				}
				return
			}
			if !errors.As(err, &ie) || len(ie.Problems) != len(tc.bad) {
				t.Fatalf("Check = %v, want problems with %v", err, tc.bad)
			}
			for _, f := range tc.bad {
				if ie.Problems[f].IsZero() {
					t.Errorf("no problem reported for %s: %v", f, ie.Problems)
				}
			}
			for _, p := range ie.Problems {
				msg := english.MustLocalize(p)
				if strings.Contains(msg, "s3cret") || strings.Contains(msg, "pa55") {
					t.Errorf("a problem quotes a value: %q", msg)
				}
			}
		})
	}
}

// english renders catalog messages as a reader of English sees them.
var english = i18n.English(web.Locales())

// proofService is a Service whose store holds one school with client id "known-app" (one
// platform application usually has one client id for every school).
func proofService(t *testing.T) *Service {
	t.Helper()
	ctx := context.Background()
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, pgtest.NewDatabase(t), kr, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if err := st.UpsertTenant(ctx, "1002", store.StateActive, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddCredentials(ctx, "1002", store.Credentials{ClientID: "known-app", Secret: "s", Password: "p", Source: store.SourceWebhook}); err != nil {
		t.Fatal(err)
	}
	return New(st, nil, nil, nil)
}

func TestProofErrorNamesTheRefusedPart(t *testing.T) {
	t.Parallel()
	s := proofService(t)
	rejected := func(status int, code string) error {
		return &platform.TokenError{Kind: platform.ErrCredentialsRejected, TenantID: "1001", Status: status, Code: code}
	}
	for _, tc := range []struct {
		name      string
		clientID  string
		err       error
		wantField string
		wantWords []string
		marked    []string // the fields the form marks
	}{
		{"swapped", "app", &platform.SwappedError{TenantID: "1001", Err: rejected(400, "invalid_grant")}, FieldSecret,
			[]string{"swapped"}, []string{FieldSecret, FieldPassword}},
		{"OIDC secret as password", "app", rejected(400, "invalid_grant"), FieldPassword,
			[]string{"refused the password", "WebUntis administrator of your school"}, []string{FieldPassword}},
		{"unknown tenant", "app", rejected(404, ""), FieldTenantID, []string{"does not know this tenant"}, []string{FieldTenantID}},
		// The platform's invalid_client does not say which part it refused. The client id this app
		// uses for another school is right: the password is the cause, and the page says so and
		// who can fix it, without marking the client id.
		{"wrong password, client id in use", "known-app", rejected(401, "invalid_client"), FieldPassword,
			[]string{"refused the password", "the client id is right", "WebUntis administrator of your school", "reset"}, []string{FieldPassword}},
		{"wrong password or client id", "other-app", rejected(401, "invalid_client"), FieldPassword,
			[]string{"client id or the password", "does not say which", "WebUntis administrator of your school"}, []string{FieldClientID, FieldPassword}},
		{"rate limited", "app", &platform.TokenError{Kind: platform.ErrRateLimited, Status: 429}, "", []string{"slow down"}, nil},
		{"bad request", "app", &platform.TokenError{Kind: platform.ErrBadRequest, Status: 400, Code: "invalid_scope"}, "", []string{"permission"}, nil},
		{"unreachable", "app", &platform.TokenError{Kind: platform.ErrUnavailable, Err: context.DeadlineExceeded}, "", []string{"could not be reached"}, nil},
		{"discovery off UNTIS_API_URL", "app", &platform.TokenError{Kind: platform.ErrUnavailable, Err: fmt.Errorf("x: %w", discovery.ErrUntrusted)}, "",
			[]string{"sign-in configuration", "provider of this app"}, nil},
		{"discovery without a usable client authentication", "app", &platform.TokenError{Kind: platform.ErrUnavailable, Err: discovery.ErrAuthMethodUnsupported}, "",
			[]string{"sign-in configuration", "nothing was stored"}, nil},
		{"anything else", "app", errors.New("boom"), "", []string{"could not be reached"}, nil},
	} {
		var pe *ProofError
		c := Credentials{TenantID: "1001", ClientID: tc.clientID, Secret: "s3cret", Password: "pa55"}
		if !errors.As(s.proofError(context.Background(), c, tc.err), &pe) {
			t.Fatalf("%s: not a *ProofError", tc.name)
		}
		if pe.Field != tc.wantField {
			t.Errorf("%s: field %q, want %q", tc.name, pe.Field, tc.wantField)
		}
		msg := english.MustLocalize(pe.Message)
		for _, w := range tc.wantWords {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: message %q does not say %q", tc.name, msg, w)
			}
		}
		var marked []string
		for f := range pe.Problems {
			marked = append(marked, f)
		}
		slices.Sort(marked)
		want := slices.Clone(tc.marked)
		slices.Sort(want)
		if !slices.Equal(marked, want) {
			t.Errorf("%s: marked fields %v, want %v", tc.name, marked, want)
		}
		if strings.Contains(msg, "s3cret") || strings.Contains(msg, "pa55") {
			t.Errorf("%s: the message quotes a value", tc.name)
		}
		if !errors.Is(pe, tc.err) {
			t.Errorf("%s: the platform's error is not wrapped", tc.name)
		}
	}
}
