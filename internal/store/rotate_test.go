package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

const (
	colSecret   = "tenant_credentials.secret_sealed"
	colPassword = "tenant_credentials.password_sealed"
	colFlow     = "auth_flows.pkce_verifier_sealed"
)

// waitFor polls cond until it holds or a generous deadline passes (slow 2-core CI machines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seedCredentials stores versions credential versions for each of tenants tenants, sealed
// under the store's keyring.
// rotationResult is what a RotateKeys run started by rotateUntilBlocked returns.
type rotationResult struct {
	report store.RotationReport
	err    error
}

// rotateUntilBlocked starts RotateKeys (batches of 10) and returns once it waits for a row lock
// that the test holds in an open transaction; observer is a second store on the same database.
func rotateUntilBlocked(t *testing.T, ctx context.Context, rs, observer *store.Store) <-chan rotationResult {
	t.Helper()
	done := make(chan rotationResult, 1)
	go func() {
		r, err := rs.RotateKeys(ctx, 10, nil)
		done <- rotationResult{r, err}
	}()
	waitFor(t, "rotate-keys to wait for the row lock", func() bool {
		select {
		case r := <-done:
			t.Fatalf("rotate-keys finished while a row was locked: %+v %v", r.report, r.err)
		default:
		}
		var waiting int
		if err := observer.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		return waiting > 0
	})
	return done
}

func seedCredentials(t *testing.T, s *store.Store, tenants, versions int) {
	t.Helper()
	ctx := context.Background()
	for i := range tenants {
		id := fmt.Sprintf("t%02d", i)
		if err := s.UpsertTenant(ctx, id, store.StateActive, ""); err != nil {
			t.Fatal(err)
		}
		for v := range versions {
			c := store.Credentials{ClientID: "app", Secret: fmt.Sprintf("s-%s-%d", id, v), Password: fmt.Sprintf("p-%s-%d", id, v), Source: "webhook"}
			if _, err := s.AddCredentials(ctx, id, c); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// keyCounts counts the values of each sealed column by the id of the key that sealed them.
func keyCounts(t *testing.T, s *store.Store) map[string]map[string]int {
	t.Helper()
	out := map[string]map[string]int{}
	for _, col := range []struct{ name, query string }{
		{colSecret, `SELECT secret_sealed FROM tenant_credentials`},
		{colPassword, `SELECT password_sealed FROM tenant_credentials`},
		{colFlow, `SELECT pkce_verifier_sealed FROM auth_flows`},
	} {
		rows, err := s.Pool().Query(context.Background(), col.query)
		if err != nil {
			t.Fatal(err)
		}
		values, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			t.Fatal(err)
		}
		out[col.name] = map[string]int{}
		for _, v := range values {
			id, err := secret.KeyID(v)
			if err != nil {
				t.Fatalf("%s: %v", col.name, err)
			}
			out[col.name][id]++
		}
	}
	return out
}

func byColumn(r store.RotationReport) map[string]store.ColumnRotation {
	m := map[string]store.ColumnRotation{}
	for _, c := range r.Columns {
		m[c.Column] = c
	}
	return m
}

// An interrupted rotation keeps every committed batch, reports only what committed, and the next
// run finishes the rest.
func TestRotateKeysResumesAfterInterruption(t *testing.T) {
	t.Parallel()
	const tenants, versions, batch = 7, 2, 3
	const rows = tenants * versions // per credentials column
	tests := []struct {
		name string
		// stopAt says, from a progress report, when to cancel the run.
		stopAt func(c store.ColumnRotation) bool
		// what the interrupted run reports and leaves rotated, per column
		wantRotated map[string]int
	}{
		{"after the first batch", func(store.ColumnRotation) bool { return true },
			map[string]int{colSecret: batch}},
		{"after two batches", func(c store.ColumnRotation) bool { return c.Scanned >= 2*batch },
			map[string]int{colSecret: 2 * batch}},
		{"in the second column", func(c store.ColumnRotation) bool { return c.Column == colPassword },
			map[string]int{colSecret: rows, colPassword: batch}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dbURL := pgtest.NewDatabase(t)
			seedCredentials(t, openStore(t, dbURL, keyring(t, key("old", 1))), tenants, versions)
			rs := openStore(t, dbURL, keyring(t, key("new", 2), key("old", 1)))

			runCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			report, err := rs.RotateKeys(runCtx, batch, func(c store.ColumnRotation) {
				if tt.stopAt(c) {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted run: err = %v, want context.Canceled", err)
			}
			got := byColumn(report)
			for _, col := range []string{colSecret, colPassword, colFlow} {
				want := tt.wantRotated[col]
				if c := got[col]; c.Rotated != want || c.Scanned != want {
					t.Errorf("interrupted run reports %s as %+v, want %d scanned and rotated (committed batches only)", col, c, want)
				}
			}
			counts := keyCounts(t, rs)
			for col, ids := range counts {
				if ids["new"] != tt.wantRotated[col] {
					t.Errorf("after the interruption %s has %d values under the new key, want %d (%v)", col, ids["new"], tt.wantRotated[col], ids)
				}
			}

			// The next run picks up where the first stopped.
			report, err = rs.RotateKeys(ctx, batch, nil)
			if err != nil {
				t.Fatal(err)
			}
			got = byColumn(report)
			total := map[string]int{colSecret: rows, colPassword: rows, colFlow: 0}
			for col, n := range total {
				c := got[col]
				done := tt.wantRotated[col]
				if c.Scanned != n || c.Rotated != n-done || c.Current != done || c.Unreadable != 0 || c.Raced != 0 {
					t.Errorf("second run %s: %+v, want %d scanned, %d rotated, %d current", col, c, n, n-done, done)
				}
			}
			for col, ids := range keyCounts(t, rs) {
				if ids["old"] != 0 || ids["new"] != total[col] {
					t.Errorf("after the second run %s: %v, want all %d under the new key", col, ids, total[col])
				}
			}
			// And every value still opens, with the old key gone.
			onlyNew := openStore(t, dbURL, keyring(t, key("new", 2)))
			for i := range tenants {
				id := fmt.Sprintf("t%02d", i)
				c, err := onlyNew.CurrentCredentials(ctx, id)
				if want := fmt.Sprintf("s-%s-%d", id, versions-1); err != nil || c.Secret != want {
					t.Errorf("tenant %s: %q, %v; want %q", id, c.Secret, err, want)
				}
			}
		})
	}
}

// A value rewritten while rotate-keys works on it (say, a RESET webhook storing new credentials)
// is left as the writer wrote it and counted as raced, not overwritten with a re-sealed stale
// value. The race is made deterministic with a row lock: the writer updates the row in an open
// transaction, rotate-keys reads the old committed value and blocks on the row, and the writer
// commits.
func TestRotateKeysLeavesAConcurrentWriteAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	old := keyring(t, key("old", 1))
	seedCredentials(t, openStore(t, dbURL, old), 1, 1) // tenant t00, version 1
	both := keyring(t, key("new", 2), key("old", 1))
	rs := openStore(t, dbURL, both)
	observer := openStore(t, dbURL, nil)

	writer, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close(ctx)
	tx, err := writer.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	reset, err := both.Seal([]byte("s-reset"), "t00", store.ColCredentialSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE tenant_credentials SET secret_sealed = $1 WHERE tenant_id = 't00' AND version = 1`, reset); err != nil {
		t.Fatal(err)
	}

	done := rotateUntilBlocked(t, ctx, rs, observer)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var res rotationResult
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("rotate-keys did not finish after the writer committed")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	got := byColumn(res.report)
	if c := got[colSecret]; c.Scanned != 1 || c.Raced != 1 || c.Rotated != 0 {
		t.Errorf("%s: %+v, want the one value counted as raced", colSecret, c)
	}
	if c := got[colPassword]; c.Scanned != 1 || c.Rotated != 1 || c.Raced != 0 {
		t.Errorf("%s: %+v, want the untouched column rotated", colPassword, c)
	}
	if s := res.report.String(); !strings.Contains(s, "changed-meanwhile=1") {
		t.Errorf("report does not show the raced value:\n%s", s)
	}
	// The writer's value survived, and the rest rotated.
	c, err := openStore(t, dbURL, keyring(t, key("new", 2))).CurrentCredentials(ctx, "t00")
	if err != nil || c.Secret != "s-reset" || c.Password != "p-t00-0" {
		t.Fatalf("after the race: %+v, %v; want the writer's secret and the rotated password", c, err)
	}
	// The next run finds the writer's value already current.
	again, err := rs.RotateKeys(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := byColumn(again)[colSecret]; c.Current != 1 || c.Raced != 0 || c.Rotated != 0 {
		t.Errorf("second run %s: %+v", colSecret, c)
	}
}

// A batch interrupted half-way is rolled back as a whole, and the report counts none of it: a
// row lock stops rotate-keys on the batch's second row, after it updated the first, and the run
// is then cancelled.
func TestRotateKeysCountsOnlyCommittedBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	seedCredentials(t, openStore(t, dbURL, keyring(t, key("old", 1))), 1, 2) // t00 versions 1 and 2
	rs := openStore(t, dbURL, keyring(t, key("new", 2), key("old", 1)))
	observer := openStore(t, dbURL, nil)

	locker, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, `SELECT 1 FROM tenant_credentials WHERE tenant_id = 't00' AND version = 2 FOR UPDATE`); err != nil {
		t.Fatal(err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := rotateUntilBlocked(t, runCtx, rs, observer)
	cancel()
	var res rotationResult
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("rotate-keys did not stop when cancelled")
	}
	if res.err == nil {
		t.Fatal("the cancelled run reported success")
	}
	if c := byColumn(res.report)[colSecret]; c.Scanned != 0 || c.Rotated != 0 {
		t.Errorf("the rolled-back batch is counted: %+v", c)
	}
	if ids := keyCounts(t, observer)[colSecret]; ids["old"] != 2 || ids["new"] != 0 {
		t.Errorf("after the rolled-back batch: %v, want both values still under the old key", ids)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	report, err := rs.RotateKeys(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := byColumn(report)[colSecret]; c.Scanned != 2 || c.Rotated != 2 {
		t.Errorf("rerun: %+v, want both rotated", c)
	}
}
