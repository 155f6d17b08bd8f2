package main

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/store"
)

func TestOperatorAdd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, dbURL, nil, store.Options{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	env := map[string]string{"DATABASE_URL": dbURL}

	// operatorAdd runs `server operator add` with stdin and returns everything it printed (and
	// its error), failing the test if a password given shows up anywhere in that.
	operatorAdd := func(t *testing.T, args []string, stdin io.Reader, env map[string]string, passwords ...string) (string, error) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		err := run(ctx, append([]string{"operator"}, args...), getenvFrom(env), stdin, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if err != nil {
			out += "error: " + err.Error()
		}
		for _, p := range passwords {
			if p != "" && strings.Contains(out, p) {
				t.Errorf("operator %v printed the password:\n%s", args, out)
			}
		}
		return out, err
	}
	hashOf := func(t *testing.T, email string) string {
		t.Helper()
		op, err := st.OperatorByEmail(ctx, email)
		if err != nil {
			t.Fatalf("operator %s: %v", email, err)
		}
		return op.PasswordHash
	}
	operators := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := st.Pool().QueryRow(ctx, `SELECT count(*) FROM operators`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// holdBack makes the console's sign-in limit hold an account back on a network, as failed
	// attempts from there do; heldBack says whether it does.
	holdBack := func(t *testing.T, email, network string) {
		t.Helper()
		for range operator.AccountLimit.Burst {
			if _, err := st.Attempt(ctx, operator.AccountLimit, email, network, time.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// (heldBack is an attempt itself, and counts as one.)
	heldBack := func(t *testing.T, email, network string) bool {
		t.Helper()
		wait, err := st.Attempt(ctx, operator.AccountLimit, email, network, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return wait > 0
	}

	const email = "ops@partner.example"
	const first, second = "first long password 1", "Second-Long-Password-2"

	t.Run("add", func(t *testing.T) {
		out, err := operatorAdd(t, []string{"add", " Ops@Partner.EXAMPLE"}, strings.NewReader(first+"\n"), env, first)
		if err != nil || !strings.Contains(out, "operator "+email+" added") {
			t.Fatalf("add: %v\n%s", err, out)
		}
		hash := hashOf(t, email)
		p := operator.DefaultParams
		prefix := "$argon2id$v=19$m=" + strconv.Itoa(int(p.Memory)) + ",t=" + strconv.Itoa(int(p.Time)) + ",p=" + strconv.Itoa(int(p.Threads)) + "$"
		if !strings.HasPrefix(hash, prefix) || strings.Count(hash, "$") != 5 || strings.Contains(hash, first) {
			t.Errorf("stored hash %q, want an argon2id PHC string starting %q", hash, prefix)
		}
		if ok, err := operator.CheckPassword(hash, first); !ok || err != nil {
			t.Errorf("the password does not verify: %v, %v", ok, err)
		}
		if ok, _ := operator.CheckPassword(hash, first+"x"); ok {
			t.Error("another password verifies")
		}
		trail, err := st.AuditTrail(ctx, "", 10)
		if err != nil || len(trail) != 1 || trail[0].Action != "operator.added" || trail[0].Actor != "cli" {
			t.Errorf("audit %+v, %v", trail, err)
		}
	})

	t.Run("reset", func(t *testing.T) {
		op, err := st.OperatorByEmail(ctx, email)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		if err := st.CreateOperatorSession(ctx, store.OperatorSession{IDHash: store.HashID("console-session-of-" + email),
			OperatorID: op.ID, CSRFToken: []byte("csrf"), LastSeenAt: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		holdBack(t, email, "192.0.2.1")
		// A Windows line ending is not part of the password.
		out, err := operatorAdd(t, []string{"add", email}, strings.NewReader(second+"\r\nignored second line\n"), env, first, second)
		if err != nil || !strings.Contains(out, "password reset") || !strings.Contains(out, "sessions ended") {
			t.Fatalf("reset: %v\n%s", err, out)
		}
		hash := hashOf(t, email)
		if ok, _ := operator.CheckPassword(hash, second); !ok {
			t.Error("the new password does not verify")
		}
		if ok, _ := operator.CheckPassword(hash, first); ok {
			t.Error("the old password still verifies")
		}
		if _, err := st.OperatorSessionByID(ctx, store.HashID("console-session-of-"+email), now); err == nil {
			t.Error("the operator's console session survived the reset")
		}
		if heldBack(t, email, "192.0.2.1") {
			t.Error("the reset kept the account's sign-in limit")
		}
		if operators(t) != 1 {
			t.Errorf("%d operators", operators(t))
		}
	})

	t.Run("unlock", func(t *testing.T) {
		const other = "other@partner.example"
		if _, err := operatorAdd(t, []string{"add", other}, strings.NewReader(second+"\n"), env, second); err != nil {
			t.Fatal(err)
		}
		// Failed sign-ins from two networks hold the account back, and another account too.
		holdBack(t, email, "192.0.2.1")
		holdBack(t, email, "2001:db8:1:2::/64")
		holdBack(t, other, "192.0.2.1")
		hash := hashOf(t, email)
		out, err := operatorAdd(t, []string{"unlock", " OPS@partner.example"}, nil, env)
		if err != nil || !strings.Contains(out, "operator "+email+" unlocked") || !strings.Contains(out, "2 network(s)") {
			t.Fatalf("unlock: %v\n%s", err, out)
		}
		for _, network := range []string{"192.0.2.1", "2001:db8:1:2::/64"} {
			if heldBack(t, email, network) {
				t.Errorf("after the unlock, %s still holds the account back", network)
			}
		}
		if !heldBack(t, other, "192.0.2.1") {
			t.Error("unlocking one operator unlocked another")
		}
		// The password and the console sessions stay; the audit trail says who did it.
		if hashOf(t, email) != hash {
			t.Error("unlock changed the password")
		}
		trail, err := st.AuditTrail(ctx, "", 1)
		if err != nil || len(trail) != 1 || trail[0].Action != "operator.unlocked" || trail[0].Actor != "cli" || trail[0].Detail["operator"] != email {
			t.Errorf("audit %+v, %v", trail, err)
		}
		// Nothing to unlock is said so; an unknown operator and a bad address are errors.
		if _, err := st.ClearAttempts(ctx, operator.AccountLimit.Scope, email); err != nil {
			t.Fatal(err)
		}
		if out, err := operatorAdd(t, []string{"unlock", email}, nil, env); err != nil || !strings.Contains(out, "no sign-in limit") {
			t.Errorf("unlock with nothing held: %v\n%s", err, out)
		}
		if out, err := operatorAdd(t, []string{"unlock", "nobody@partner.example"}, nil, env); err == nil || !strings.Contains(out, "no operator nobody@partner.example") {
			t.Errorf("unlock of an unknown operator: %v\n%s", err, out)
		}
		if out, err := operatorAdd(t, []string{"unlock", "operator"}, nil, env); err == nil || !strings.Contains(out, "not an e-mail address") {
			t.Errorf("unlock of a non-address: %v\n%s", err, out)
		}
		if out, err := operatorAdd(t, []string{"unlock", email}, nil, map[string]string{}); err == nil || !strings.Contains(out, "DATABASE_URL") {
			t.Errorf("unlock without a database: %v\n%s", err, out)
		}
		if out, err := operatorAdd(t, []string{"unlock"}, nil, env); err == nil || !strings.Contains(out, "usage") {
			t.Errorf("unlock without an address: %v\n%s", err, out)
		}
	})

	t.Run("refused", func(t *testing.T) {
		before := operators(t)
		hash := hashOf(t, email)
		const argvPassword = "password-given-in-argv"
		for _, tc := range []struct {
			name  string
			args  []string
			stdin io.Reader
			env   map[string]string
			want  string
		}{
			{"no subcommand", []string{}, strings.NewReader(first + "\n"), env, "usage"},
			{"unknown subcommand", []string{"remove", email}, strings.NewReader(first + "\n"), env, "usage"},
			{"no e-mail", []string{"add"}, strings.NewReader(first + "\n"), env, "usage"},
			{"password in argv", []string{"add", "new@partner.example", argvPassword}, strings.NewReader(""), env, "usage"},
			{"not an e-mail", []string{"add", "operator"}, strings.NewReader(first + "\n"), env, "not an e-mail address"},
			{"display name", []string{"add", "Ops <new@partner.example>"}, strings.NewReader(first + "\n"), env, "not an e-mail address"},
			{"too short", []string{"add", "new@partner.example"}, strings.NewReader("short pw 11\n"), env, "at least 12"},
			{"empty stdin", []string{"add", "new@partner.example"}, strings.NewReader(""), env, "at least 12"},
			{"no stdin", []string{"add", "new@partner.example"}, nil, env, "stdin"},
			{"too long", []string{"add", "new@partner.example"}, strings.NewReader(strings.Repeat("p", operator.MaxPasswordLen+1) + "\n"), env, "at most"},
			{"no database", []string{"add", "new@partner.example"}, strings.NewReader(first + "\n"), map[string]string{}, "DATABASE_URL"},
		} {
			out, err := operatorAdd(t, tc.args, tc.stdin, tc.env, first, argvPassword, strings.Repeat("p", 40))
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("%s: %v, want an error saying %q\n%s", tc.name, err, tc.want, out)
			}
		}
		if operators(t) != before || hashOf(t, email) != hash {
			t.Error("a refused command changed the operators")
		}
	})
}
