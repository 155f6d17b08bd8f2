package operator

import (
	"strings"
	"testing"
)

// cheap keeps the hashes of these tests fast; CheckPassword reads the cost from the hash.
var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func TestPasswordHash(t *testing.T) {
	t.Parallel()
	h, err := cheap.Hash("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(h, "correct horse") {
		t.Fatalf("hash %q", h)
	}
	if h2, _ := cheap.Hash("correct horse battery"); h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not fresh")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{"correct horse battery", true},
		{"correct horse batter", false},
		{"Correct horse battery", false},
		{"", false},
	} {
		if ok, err := CheckPassword(h, tc.password); err != nil || ok != tc.want {
			t.Errorf("CheckPassword(%q) = %v, %v; want %v", tc.password, ok, err, tc.want)
		}
	}
	// The default cost is what `operator add` stores; a check reads it from the hash.
	if strings.Contains(h, "m=19456") || !strings.Contains(mustHash(t, DefaultParams, "x"), "m=19456,t=2,p=1") {
		t.Error("the cost is not taken from the parameters")
	}
}

func mustHash(t *testing.T, p Params, pw string) string {
	t.Helper()
	h, err := p.Hash(pw)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCheckPasswordRefusesMalformedHashes(t *testing.T) {
	t.Parallel()
	good := mustHash(t, cheap, "pw")
	parts := strings.Split(good, "$")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, "$")
	}
	for name, h := range map[string]string{
		"empty":              "",
		"bcrypt":             "$2a$10$abcdefghijklmnopqrstuuJ3xLxR4Qy2b3XkYm9bQ8n8oJ6wS2",
		"argon2i":            with(1, "argon2i"),
		"other version":      with(2, "v=16"),
		"no memory":          with(3, "m=0,t=1,p=1"),
		"absurd memory":      with(3, "m=99999999,t=1,p=1"),
		"absurd time":        with(3, "m=64,t=99,p=1"),
		"no threads":         with(3, "m=64,t=1,p=0"),
		"garbled parameters": with(3, "memory=64"),
		"bad salt":           with(4, "!!"),
		"bad key":            with(5, "!!"),
		"short key":          with(5, "AAAA"),
		"too few parts":      "$argon2id$v=19$m=64,t=1,p=1$c2FsdA",
	} {
		if ok, err := CheckPassword(h, "pw"); err == nil || ok {
			t.Errorf("%s: CheckPassword = %v, %v; want an error", name, ok, err)
		}
	}
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	if got := NormalizeEmail("  Ops@Example.COM \n"); got != "ops@example.com" {
		t.Errorf("NormalizeEmail = %q", got)
	}
}
