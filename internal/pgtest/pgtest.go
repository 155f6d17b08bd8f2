// Package pgtest gives each test its own PostgreSQL database, cloned from a template database
// that is migrated once (per schema version, across every test binary of a `go test` run), like
// peterldowns/pgtestdb. Tests never share mutable rows.
//
// The server to use comes from DATABASE_URL. When it is unset, pgtest starts the repo's private
// cluster with scripts/pg.sh (as `make test` does), so `go test ./...` works on its own too.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/migrations"
)

var (
	setupOnce sync.Once
	setupErr  error
	adminURL  *url.URL // the server's maintenance database (postgres)
	template  string   // name of the migrated template database
)

// NewDatabase creates a fresh, migrated database for t and returns its URL. It is dropped when
// the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := testDBName("t")
	conn, err := pgx.Connect(ctx, adminURL.String())
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %q TEMPLATE %q`, name, template)); err != nil {
		t.Fatalf("pgtest: clone template: %v", err)
	}
	// Test databases need no durability: a lost commit only matters to a test that already ended.
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q SET synchronous_commit = off`, name)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL.String())
		if err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name)); err != nil {
			t.Logf("pgtest: drop %s: %v", name, err)
		}
	})
	return withDatabase(adminURL, name)
}

// NewEmptyDatabase creates a database without any schema (for migration tests) and returns its URL.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	ctx := context.Background()
	name := testDBName("e")
	conn, err := pgx.Connect(ctx, adminURL.String())
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %q`, name)); err != nil {
		t.Fatalf("pgtest: create: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), adminURL.String())
		if err == nil {
			defer conn.Close(context.Background())
			_, _ = conn.Exec(context.Background(), fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name))
		}
	})
	return withDatabase(adminURL, name)
}

// ServerURL returns the URL of the server's maintenance database, starting the private cluster
// if needed. Tests that stop and start a database use it to find the server.
func ServerURL(t testing.TB) string {
	t.Helper()
	setupOnce.Do(func() { setupErr = setup() })
	if setupErr != nil {
		t.Fatalf("pgtest: %v", setupErr)
	}
	return adminURL.String()
}

// HasTable says whether the public schema of the database at databaseURL has table, read over a
// connection of its own (so it sees only committed state).
func HasTable(t testing.TB, databaseURL, table string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, "public."+table).Scan(&ok); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return ok
}

func setup() error {
	raw := os.Getenv("DATABASE_URL")
	if raw == "" {
		var err error
		if raw, err = startPrivateCluster(); err != nil {
			return err
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("DATABASE_URL is not a URL")
	}
	adminURL = withDatabaseURL(u, "postgres")

	sum, err := migrationsHash()
	if err != nil {
		return err
	}
	template = "tmpl_" + sum[:16]
	if err := ensureTemplate(template); err != nil {
		return err
	}
	sweepLeftovers()
	return nil
}

// testDBName makes a database name that carries its creation time, so sweepLeftovers can tell
// a database left behind by a killed test binary from one a running test still uses.
func testDBName(prefix string) string {
	return fmt.Sprintf("%s_%d_%s", prefix, time.Now().Unix(), randomHex(6))
}

// sweepLeftovers drops test databases older than an hour: a test binary that was killed never
// ran its cleanups. Failures are ignored; the next run tries again.
func sweepLeftovers() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL.String())
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname ~ '^[te]_[0-9]+_[0-9a-f]+$'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-time.Hour).Unix()
	for _, n := range names {
		var created int64
		if _, err := fmt.Sscanf(strings.SplitN(n, "_", 3)[1], "%d", &created); err != nil || created > cutoff {
			continue
		}
		_, _ = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, n))
	}
}

// ensureTemplate creates and migrates the template once per schema version. Test binaries run
// in parallel processes, so an advisory lock serialises the creation.
func ensureTemplate(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL.String())
	if err != nil {
		return fmt.Errorf("connect to %s: %w (is PostgreSQL running? `make test` starts it)", adminURL.Redacted(), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), `SELECT pg_advisory_unlock(727274)`) //nolint:errcheck

	var ready bool
	err = conn.QueryRow(ctx, `SELECT datistemplate FROM pg_database WHERE datname = $1`, name).Scan(&ready)
	if err == nil && ready {
		return nil
	}
	// A half-made template (a crashed earlier run) is dropped and made again.
	if _, err := conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, name)); err != nil {
		return fmt.Errorf("drop stale template: %w", err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE DATABASE %q`, name)); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	m, err := store.NewMigrator(ctx, withDatabase(adminURL, name))
	if err != nil {
		return err
	}
	if err := m.Up(); err != nil {
		m.Close()
		return err
	}
	if err := m.Close(); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q WITH IS_TEMPLATE true`, name)); err != nil {
		return fmt.Errorf("mark template: %w", err)
	}
	// Templates of earlier schemas are dead weight on a developer's long-lived cluster.
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'tmpl\_%' AND datname <> $1`, name)
	if err == nil {
		if old, err := pgx.CollectRows(rows, pgx.RowTo[string]); err == nil {
			for _, n := range old {
				_, _ = conn.Exec(ctx, fmt.Sprintf(`ALTER DATABASE %q WITH IS_TEMPLATE false`, n))
				_, _ = conn.Exec(ctx, fmt.Sprintf(`DROP DATABASE IF EXISTS %q WITH (FORCE)`, n))
			}
		}
	}
	return nil
}

func startPrivateCluster() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is unset and %w", err)
	}
	script := filepath.Join(root, "scripts", "pg.sh")
	cmd := exec.Command("bash", script, "up")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is unset and %s failed: %w", script, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// moduleRoot walks up from the working directory (go test runs in the package's directory) to
// the go.mod, so it works under -trimpath too.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory, so scripts/pg.sh cannot be found")
		}
		dir = parent
	}
}

// migrationsHash names the template after the schema, so a changed migration gets a new template.
func migrationsHash() (string, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b, err := fs.ReadFile(migrations.FS, n)
		if err != nil {
			return "", err
		}
		h.Write([]byte(n))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func withDatabase(u *url.URL, name string) string { return withDatabaseURL(u, name).String() }

func withDatabaseURL(u *url.URL, name string) *url.URL {
	c := *u
	c.Path = "/" + name
	return &c
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
