package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

func keyring(t testing.TB, keys ...secret.Key) *secret.Keyring {
	t.Helper()
	if len(keys) == 0 {
		keys = []secret.Key{key("k1", 1)}
	}
	kr, err := secret.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func key(id string, seed byte) secret.Key {
	return secret.Key{ID: id, Secret: bytes.Repeat([]byte{seed}, secret.KeySize)}
}

func openStore(t testing.TB, url string, kr *secret.Keyring) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), url, kr, store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newStore(t testing.TB, kr *secret.Keyring) *store.Store {
	t.Helper()
	return openStore(t, pgtest.NewDatabase(t), kr)
}

func TestMigrationsGoUpAndDownCleanly(t *testing.T) {
	t.Parallel()
	url := pgtest.NewEmptyDatabase(t)
	m, err := store.NewMigrator(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	if _, _, ok, err := m.Version(); err != nil || ok {
		t.Fatalf("empty database: version ok=%v err=%v, want no version", ok, err)
	}
	for round := 0; round < 2; round++ {
		if err := m.Up(); err != nil {
			t.Fatalf("round %d: up: %v", round, err)
		}
		v, dirty, ok, err := m.Version()
		if err != nil || !ok || dirty || v < 1 {
			t.Fatalf("round %d: after up: v=%d dirty=%v ok=%v err=%v", round, v, dirty, ok, err)
		}
		if err := m.Up(); err != nil {
			t.Fatalf("round %d: second up must be a no-op: %v", round, err)
		}
		// Down counts migrations, not version numbers: the numbers may leave gaps (branches
		// merged in another order), so the steps are the embedded migration files.
		n := embeddedMigrations(t)
		if err := m.Down(n); err != nil {
			t.Fatalf("round %d: down %d (at version %d): %v", round, n, v, err)
		}
		if n := countTables(t, url); n != 1 { // only golang-migrate's schema_migrations remains
			t.Fatalf("round %d: %d tables left after down, want 1 (schema_migrations)", round, n)
		}
	}
	if err := m.Down(0); err == nil {
		t.Fatal("down 0 must be refused")
	}
}

func countTables(t *testing.T, url string) int {
	t.Helper()
	s := openStore(t, url, nil)
	var n int
	if err := s.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCredentialsAreSealedPerTenantAndColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	for _, id := range []string{"1001", "1002"} {
		if err := s.UpsertTenant(ctx, id, store.StateActive, "School "+id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.AddCredentials(ctx, "1001", store.Credentials{ClientID: "app", Secret: "secret-A", Password: "password-A", Source: "webhook"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddCredentials(ctx, "1002", store.Credentials{ClientID: "app", Secret: "secret-B", Password: "password-B", Source: "webhook"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CurrentCredentials(ctx, "1001")
	if err != nil {
		t.Fatal(err)
	}
	if got.Secret != "secret-A" || got.Password != "password-A" || got.Version != 1 {
		t.Fatalf("got %+v", got)
	}

	// Nothing readable at rest.
	var raw []byte
	if err := s.Pool().QueryRow(ctx, `SELECT secret_sealed FROM tenant_credentials WHERE tenant_id = '1001'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("secret-A")) {
		t.Fatal("the secret is stored in plain text")
	}

	// A ciphertext copied to another tenant's row, or to the other column, does not open.
	if _, err := s.Pool().Exec(ctx, `UPDATE tenant_credentials SET secret_sealed = $1 WHERE tenant_id = '1002'`, raw); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CurrentCredentials(ctx, "1002"); !errors.Is(err, secret.ErrOpen) {
		t.Fatalf("copied to another tenant: err = %v, want secret.ErrOpen", err)
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE tenant_credentials SET password_sealed = secret_sealed WHERE tenant_id = '1001'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CurrentCredentials(ctx, "1001"); !errors.Is(err, secret.ErrOpen) {
		t.Fatalf("copied to another column: err = %v, want secret.ErrOpen", err)
	}
	// Errors never carry the plaintext.
	if _, err := s.CurrentCredentials(ctx, "1001"); err != nil && bytes.Contains([]byte(err.Error()), []byte("secret-A")) {
		t.Fatal("error leaks the secret")
	}
}

func TestCredentialVersionsAndUnknownTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	if _, err := s.AddCredentials(ctx, "9999", store.Credentials{ClientID: "a", Secret: "s", Password: "p", Source: "webhook"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown tenant: err = %v, want ErrNotFound", err)
	}
	if _, err := s.CurrentCredentials(ctx, "9999"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown tenant: err = %v, want ErrNotFound", err)
	}
	if err := s.UpsertTenant(ctx, "1", store.StateActive, ""); err != nil {
		t.Fatal(err)
	}
	for i, pw := range []string{"p1", "p2", "p3"} {
		v, err := s.AddCredentials(ctx, "1", store.Credentials{ClientID: "a", Secret: "s", Password: pw, Source: "webhook"})
		if err != nil || v != i+1 {
			t.Fatalf("version %d: got %d, %v", i+1, v, err)
		}
	}
	c, err := s.CurrentCredentials(ctx, "1")
	if err != nil || c.Password != "p3" || c.Version != 3 {
		t.Fatalf("current = %+v, %v; want version 3", c, err)
	}
	if got := c.String(); bytes.Contains([]byte(got), []byte("p3")) {
		t.Fatalf("String() leaks the password: %s", got)
	}
}

func TestRotateKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	old := keyring(t, key("old", 1))
	s := openStore(t, url, old)
	const tenants = 7
	for i := 0; i < tenants; i++ {
		id := string(rune('a' + i))
		if err := s.UpsertTenant(ctx, id, store.StateActive, ""); err != nil {
			t.Fatal(err)
		}
		for v := 0; v < 2; v++ {
			if _, err := s.AddCredentials(ctx, id, store.Credentials{ClientID: "app", Secret: "s-" + id, Password: "p-" + id, Source: "webhook"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A flow row, so the third sealed column is covered too.
	sealed, err := old.Seal([]byte("verifier"), "a", store.ColFlowPKCEVerifier)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO auth_flows (id_hash, tenant_id, state, nonce, pkce_verifier_sealed, expires_at)
		VALUES ($1, 'a', 's', 'n', $2, now() + interval '10 minutes')`, bytes.Repeat([]byte{7}, 32), sealed); err != nil {
		t.Fatal(err)
	}

	// New active key first, old one still readable; a batch size of 3 forces several batches.
	both := keyring(t, key("new", 2), key("old", 1))
	rs := openStore(t, url, both)
	report, err := rs.RotateKeys(ctx, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"tenant_credentials.secret_sealed":   tenants * 2,
		"tenant_credentials.password_sealed": tenants * 2,
		"auth_flows.pkce_verifier_sealed":    1,
	}
	for _, c := range report.Columns {
		if c.Rotated != want[c.Column] || c.Scanned != want[c.Column] || c.Unreadable != 0 {
			t.Errorf("%s: %+v, want %d rotated", c.Column, c, want[c.Column])
		}
	}
	// A second run finds nothing to do: rotation is resumable and idempotent.
	again, err := rs.RotateKeys(ctx, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range again.Columns {
		if c.Rotated != 0 || c.Current != want[c.Column] {
			t.Errorf("second run %s: %+v", c.Column, c)
		}
	}

	// With the old key removed, every value still opens.
	onlyNew := openStore(t, url, keyring(t, key("new", 2)))
	for i := 0; i < tenants; i++ {
		id := string(rune('a' + i))
		c, err := onlyNew.CurrentCredentials(ctx, id)
		if err != nil || c.Secret != "s-"+id || c.Password != "p-"+id {
			t.Fatalf("tenant %s after rotation: %+v, %v", id, c, err)
		}
	}
	// And none opens with the removed key alone.
	onlyOld := openStore(t, url, keyring(t, key("old", 1)))
	if _, err := onlyOld.CurrentCredentials(ctx, "a"); !errors.Is(err, secret.ErrUnknownKey) {
		t.Fatalf("old key after rotation: err = %v, want ErrUnknownKey", err)
	}
	// A rotation with a keyring that lacks the values' key reports them as unreadable.
	third := openStore(t, url, keyring(t, key("third", 3)))
	r3, err := third.RotateKeys(ctx, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Unreadable() != tenants*4+1 {
		t.Fatalf("unreadable = %d, want %d\n%s", r3.Unreadable(), tenants*4+1, r3)
	}
}

// TestEverySealedColumnIsRotated walks the schema: a new sealed column that rotate-keys does not
// know would stay under an old key forever.
func TestEverySealedColumnIsRotated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	rows, err := s.Pool().Query(ctx, `SELECT table_name || '.' || column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND (column_name LIKE '%sealed%' OR data_type = 'bytea')
		AND column_name NOT IN ('id_hash', 'body_sha256', 'csrf_token')`)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string]) // checks rows.Err() as well
	if err != nil {
		t.Fatalf("reading the schema: %v", err)
	}
	report, err := s.RotateKeys(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, c := range report.Columns {
		known[c.Column] = true
	}
	for _, col := range cols {
		if !known[col] {
			t.Errorf("column %s holds bytes but rotate-keys does not rotate it (add it to sealedColumns, or to this test's list of non-secret bytea columns)", col)
		}
	}
	if len(cols) == 0 {
		t.Fatal("found no sealed columns at all")
	}
}
