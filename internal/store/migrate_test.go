package store_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/migrations"
)

// embeddedMigrations is how many up-migrations the binary carries (and a migrated test
// database has applied), so the tests keep working as migrations are added.
func embeddedMigrations(t *testing.T) int {
	t.Helper()
	names, err := fs.Glob(migrations.FS, "*.up.sql")
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded migrations: %v", err)
	}
	return len(names)
}

func newMigrator(t *testing.T, databaseURL string) *store.Migrator {
	t.Helper()
	m, err := store.NewMigrator(context.Background(), databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func execSQL(t *testing.T, databaseURL, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Down refuses more steps than are applied, instead of rolling everything back and then
// failing; nothing is rolled back.
func TestMigratorDownRefusesMoreThanApplied(t *testing.T) {
	t.Parallel()
	n := embeddedMigrations(t)
	tests := []struct {
		name     string
		migrated bool
		steps    int
		wantErr  string
	}{
		{"one more than applied", true, n + 1, fmt.Sprintf("only %d migration(s) are applied", n)},
		{"far more than applied", true, n + 4, fmt.Sprintf("only %d migration(s) are applied", n)},
		{"one on an empty database", false, 1, "only 0 migration(s) are applied"},
		{"zero", true, 0, "positive number"},
		{"negative", true, -1, "positive number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var dbURL string
			if tt.migrated {
				dbURL = pgtest.NewDatabase(t)
			} else {
				dbURL = pgtest.NewEmptyDatabase(t)
			}
			m := newMigrator(t, dbURL)
			err := m.Down(tt.steps)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Down(%d) = %v, want an error saying %q", tt.steps, err, tt.wantErr)
			}
			v, dirty, ok, err := m.Version()
			if err != nil {
				t.Fatal(err)
			}
			if tt.migrated {
				if !ok || dirty || int(v) < n || !pgtest.HasTable(t, dbURL, "tenants") {
					t.Errorf("after the refused Down: version %d ok=%v dirty=%v, tenants table %v; want everything intact",
						v, ok, dirty, pgtest.HasTable(t, dbURL, "tenants"))
				}
			} else if ok {
				t.Errorf("empty database has version %d after the refused Down", v)
			}
		})
	}
}

// A migration that failed half-way leaves the schema dirty: Up and Down refuse and say how to
// get out; Force records a version without running anything.
func TestMigratorDirtyAndForce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewEmptyDatabase(t)
	m := newMigrator(t, dbURL)
	if err := m.Up(); err != nil {
		t.Fatal(err)
	}
	latest, _, _, err := m.Version()
	if err != nil {
		t.Fatal(err)
	}
	// Simulate the failure: golang-migrate marks the version dirty before it runs a migration.
	execSQL(t, dbURL, `UPDATE schema_migrations SET dirty = true`)

	version := func() string {
		t.Helper()
		v, dirty, ok, err := m.Version()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "none"
		}
		return fmt.Sprintf("%d dirty=%v", v, dirty)
	}
	clean := fmt.Sprintf("%d dirty=false", latest)
	steps := []struct {
		name        string
		do          func() error
		wantErr     string // "" = success
		wantVersion string // after the step
	}{
		{"up on a dirty schema", m.Up, fmt.Sprintf("migrate force %d", latest), fmt.Sprintf("%d dirty=true", latest)},
		{"down on a dirty schema", func() error { return m.Down(1) }, "migrate force", fmt.Sprintf("%d dirty=true", latest)},
		{"force an unknown version", func() error { return m.Force(99) }, "there is no migration 99", fmt.Sprintf("%d dirty=true", latest)},
		{"force a negative version", func() error { return m.Force(-1) }, "0 or more", fmt.Sprintf("%d dirty=true", latest)},
		{"force the last complete version", func() error { return m.Force(int(latest)) }, "", clean},
		{"up works again", m.Up, "", clean},
		{"force 0 records no version", func() error { return m.Force(0) }, "", "none"},
		{"force back", func() error { return m.Force(int(latest)) }, "", clean},
	}
	for _, s := range steps {
		err := s.do()
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", s.name, err)
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("%s: error %v, want one saying %q", s.name, err, s.wantErr)
		}
		if got := version(); got != s.wantVersion {
			t.Fatalf("%s: version %s, want %s", s.name, got, s.wantVersion)
		}
		// Force never runs a migration: the schema itself is untouched throughout.
		if !pgtest.HasTable(t, dbURL, "tenants") {
			t.Fatalf("%s: the tenants table is gone", s.name)
		}
	}
	// Clean again, the whole way down works.
	if err := m.Down(embeddedMigrations(t)); err != nil {
		t.Fatal(err)
	}
	if pgtest.HasTable(t, dbURL, "tenants") {
		t.Error("tenants table still there after migrating all the way down")
	}
}

// The migrator takes any connection string pgx does, like config, and honours its context.
func TestNewMigratorConnectionStrings(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := u.User.Password()
	quote := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace
	keyword := fmt.Sprintf("host=%s port=%s user=%s password='%s' dbname=%s sslmode=disable",
		u.Hostname(), u.Port(), u.User.Username(), quote(pw), strings.TrimPrefix(u.Path, "/"))
	m := newMigrator(t, keyword)
	if v, dirty, ok, err := m.Version(); err != nil || !ok || dirty || v < 1 {
		t.Errorf("keyword form: version %d dirty=%v ok=%v err=%v", v, dirty, ok, err)
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	const secretPw = "NeverPrintThisPassw0rd"
	refused := []struct{ name, conn string }{
		{"not a connection string", "postgres://app:" + secretPw + "@db:port/x"},
		{"nothing listening", "postgres://app:" + secretPw + "@127.0.0.1:1/x?connect_timeout=5"},
	}
	for _, r := range refused {
		m, err := store.NewMigrator(context.Background(), r.conn)
		if err == nil {
			m.Close()
			t.Errorf("%s: NewMigrator succeeded", r.name)
			continue
		}
		if strings.Contains(err.Error(), secretPw) {
			t.Errorf("%s: the error names the password: %v", r.name, err)
		}
	}
	if m, err := store.NewMigrator(cancelled, dbURL); err == nil {
		m.Close()
		t.Error("NewMigrator with a cancelled context succeeded")
	}
}
