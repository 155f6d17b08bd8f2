package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/untis-partner/server/migrations"
)

// Migrator runs the embedded migrations. golang-migrate takes a PostgreSQL advisory lock, so
// several replicas starting at once migrate one after the other.
type Migrator struct {
	m      *migrate.Migrate
	db     *sql.DB
	ctx    context.Context
	closed chan struct{} // ends the goroutine that forwards ctx's cancellation
}

// NewMigrator connects a migrator to databaseURL (any connection string pgx accepts). The
// connection attempt gives up after 10 s unless the string sets its own connect_timeout, and
// cancelling ctx stops a running migration between two steps.
func NewMigrator(ctx context.Context, databaseURL string) (*Migrator, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, errors.New("migrate: DATABASE_URL is not a valid connection string")
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := stdlib.OpenDB(*cfg)
	pingCtx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	driver, err := migratepgx.WithInstance(db, &migratepgx.Config{})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	src, err := iofs.New(migrations.FS, ".")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: read embedded migrations: %w", err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", driver)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	g := &Migrator{m: m, db: db, ctx: ctx, closed: make(chan struct{})}
	go func() {
		select {
		case <-ctx.Done():
			select {
			case m.GracefulStop <- true:
			default:
			}
		case <-g.closed:
		}
	}()
	return g, nil
}

// Up applies every pending migration. No change is not an error.
func (g *Migrator) Up() error {
	if err := g.m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate up: %w", g.explain(err))
	}
	return nil
}

// Down rolls back n migrations. It refuses more steps than are applied, instead of rolling
// everything back and then failing.
func (g *Migrator) Down(n int) error {
	if n <= 0 {
		return errors.New("migrate down: N must be a positive number of steps")
	}
	applied, err := g.appliedSteps()
	if err != nil {
		return err
	}
	if n > applied {
		return fmt.Errorf("migrate down %d: only %d migration(s) are applied", n, applied)
	}
	if err := g.m.Steps(-n); err != nil {
		return fmt.Errorf("migrate down %d: %w", n, g.explain(err))
	}
	return nil
}

// Force sets the recorded schema version without running anything and clears the dirty flag:
// the way out after a migration failed half-way and an operator repaired the schema by hand.
func (g *Migrator) Force(version int) error {
	if version < 0 {
		return errors.New("migrate force: version must be 0 or more")
	}
	if version > 0 && !g.known(uint(version)) {
		return fmt.Errorf("migrate force: there is no migration %d", version)
	}
	v := version
	if v == 0 {
		v = -1 // golang-migrate's "no version"
	}
	if err := g.m.Force(v); err != nil {
		return fmt.Errorf("migrate force %d: %w", version, err)
	}
	return nil
}

// Version reports the current schema version; ok is false on an empty database.
func (g *Migrator) Version() (version uint, dirty, ok bool, err error) {
	v, d, err := g.m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, false, nil
	}
	if err != nil {
		return 0, false, false, fmt.Errorf("migrate version: %w", err)
	}
	return v, d, true, nil
}

// Close releases the migrator's connection.
func (g *Migrator) Close() error {
	close(g.closed)
	srcErr, dbErr := g.m.Close()
	return errors.Join(srcErr, dbErr, g.db.Close())
}

// appliedSteps counts the embedded migrations up to and including the current version.
func (g *Migrator) appliedSteps() (int, error) {
	v, dirty, ok, err := g.Version()
	if err != nil {
		return 0, err
	}
	if dirty {
		return 0, fmt.Errorf("migrate: the schema is dirty at version %d (a migration failed half-way); repair it, then run `migrate force %d`", v, v)
	}
	if !ok {
		return 0, nil
	}
	n := 0
	for _, mv := range embeddedVersions() {
		if mv <= v {
			n++
		}
	}
	return n, nil
}

func (g *Migrator) known(v uint) bool {
	for _, mv := range embeddedVersions() {
		if mv == v {
			return true
		}
	}
	return false
}

// explain adds the way out to golang-migrate's terse errors.
func (g *Migrator) explain(err error) error {
	var dirty migrate.ErrDirty
	if errors.As(err, &dirty) {
		return fmt.Errorf("%w: a migration failed half-way; repair the schema, then run `migrate force %d` (the last version that is complete)", err, dirty.Version)
	}
	if g.ctx.Err() != nil {
		return fmt.Errorf("%w (stopped: %v)", err, g.ctx.Err())
	}
	return err
}

// embeddedVersions lists the versions of the embedded up-migrations.
func embeddedVersions() []uint {
	names, _ := fs.Glob(migrations.FS, "*.up.sql")
	var out []uint
	for _, n := range names {
		num, _, _ := strings.Cut(n, "_")
		if v, err := strconv.ParseUint(num, 10, 64); err == nil {
			out = append(out, uint(v))
		}
	}
	return out
}
