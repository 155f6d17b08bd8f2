package onboard

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platform"
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
				if ie.Problems[f] == "" {
					t.Errorf("no problem reported for %s: %v", f, ie.Problems)
				}
			}
			for _, msg := range ie.Problems {
				if strings.Contains(msg, "s3cret") || strings.Contains(msg, "pa55") {
					t.Errorf("a problem quotes a value: %q", msg)
				}
			}
		})
	}
}

func TestProofErrorNamesTheRefusedPart(t *testing.T) {
	t.Parallel()
	rejected := func(status int, code string) error {
		return &platform.TokenError{Kind: platform.ErrCredentialsRejected, TenantID: "1001", Status: status, Code: code}
	}
	for _, tc := range []struct {
		name      string
		err       error
		wantField string
		wantWords string
	}{
		{"swapped", &platform.SwappedError{TenantID: "1001", Err: rejected(400, "invalid_grant")}, FieldSecret, "swapped"},
		{"wrong password", rejected(400, "invalid_grant"), FieldPassword, "refused the password"},
		{"unknown tenant", rejected(404, ""), FieldTenantID, "does not know this tenant"},
		{"wrong client", rejected(401, "invalid_client"), FieldClientID, "client id or the password"},
		{"rate limited", &platform.TokenError{Kind: platform.ErrRateLimited, Status: 429}, "", "slow down"},
		{"bad request", &platform.TokenError{Kind: platform.ErrBadRequest, Status: 400, Code: "invalid_scope"}, "", "permission"},
		{"unreachable", &platform.TokenError{Kind: platform.ErrUnavailable, Err: context.DeadlineExceeded}, "", "could not be reached"},
		{"anything else", errors.New("boom"), "", "could not be reached"},
	} {
		var pe *ProofError
		if !errors.As(proofError(tc.err), &pe) {
			t.Fatalf("%s: not a *ProofError", tc.name)
		}
		if pe.Field != tc.wantField || !strings.Contains(pe.Message, tc.wantWords) {
			t.Errorf("%s: field %q, message %q; want field %q and %q", tc.name, pe.Field, pe.Message, tc.wantField, tc.wantWords)
		}
		if !errors.Is(pe, tc.err) {
			t.Errorf("%s: the platform's error is not wrapped", tc.name)
		}
	}
}
