package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// sealedColumn describes one column of sealed values, for rotate-keys. Every sealed column must
// be listed here; TestEverySealedColumnIsRotated walks the schema to make sure.
type sealedColumn struct {
	table  string
	column string   // the bytea column
	ad     string   // the column name used as additional data (Col* constants)
	key    []string // primary key columns, used for keyset paging
	// tenant is the SQL expression of the tenant id the value is sealed for: tenant_id, or ''
	// for values that belong to no school.
	tenant string
}

var sealedColumns = []sealedColumn{
	{table: "tenant_credentials", column: "secret_sealed", ad: ColCredentialSecret, key: []string{"tenant_id", "version"}},
	{table: "tenant_credentials", column: "password_sealed", ad: ColCredentialPassword, key: []string{"tenant_id", "version"}},
	{table: "auth_flows", column: "pkce_verifier_sealed", ad: ColFlowPKCEVerifier, key: []string{"id_hash"}},
	{table: "signing_keys", column: "private_key_sealed", ad: ColSigningKey, key: []string{"kid"}, tenant: "''"},
}

// RotationReport counts what rotate-keys did, per column.
type RotationReport struct {
	Columns []ColumnRotation
}

// ColumnRotation is one column's part of a RotationReport.
type ColumnRotation struct {
	Column     string // table.column
	Scanned    int
	Rotated    int
	Current    int // already under the active key
	Unreadable int // sealed under a key that is no longer configured, or damaged
	Raced      int // changed by someone else while we worked; the next run looks again
}

func (r RotationReport) String() string {
	var b strings.Builder
	for _, c := range r.Columns {
		fmt.Fprintf(&b, "%s: scanned=%d rotated=%d current=%d unreadable=%d changed-meanwhile=%d\n",
			c.Column, c.Scanned, c.Rotated, c.Current, c.Unreadable, c.Raced)
	}
	return b.String()
}

// Unreadable is the total of values rotate-keys could not open.
func (r RotationReport) Unreadable() int {
	n := 0
	for _, c := range r.Columns {
		n += c.Unreadable
	}
	return n
}

// RotateKeys re-seals every sealed value that is not under the keyring's active key, in batches
// of batchSize rows, one transaction per batch. It is resumable: an interrupted run leaves every
// committed batch rotated, and the next run skips values already under the active key. Each
// update is conditional on the old ciphertext, so a value rewritten concurrently (say, a RESET
// webhook storing new credentials) is never overwritten with a stale one.
func (s *Store) RotateKeys(ctx context.Context, batchSize int, progress func(ColumnRotation)) (RotationReport, error) {
	if s.keyring == nil {
		return RotationReport{}, errors.New("rotate-keys: no encryption keyring configured")
	}
	if batchSize <= 0 {
		batchSize = 500
	}
	var report RotationReport
	for _, col := range sealedColumns {
		cr, err := s.rotateColumn(ctx, col, batchSize, progress)
		report.Columns = append(report.Columns, cr)
		if err != nil {
			return report, err
		}
	}
	return report, nil
}

func (s *Store) rotateColumn(ctx context.Context, col sealedColumn, batchSize int, progress func(ColumnRotation)) (ColumnRotation, error) {
	cr := ColumnRotation{Column: col.table + "." + col.column}
	keyList := strings.Join(col.key, ", ")
	placeholders := make([]string, len(col.key))
	for i := range col.key {
		placeholders[i] = fmt.Sprintf("$%d", i+1)
	}
	tenant := col.tenant
	if tenant == "" {
		tenant = "tenant_id"
	}
	first := fmt.Sprintf(`SELECT %s, %s, %s FROM %s ORDER BY %s LIMIT %d`,
		keyList, tenant, col.column, col.table, keyList, batchSize)
	next := fmt.Sprintf(`SELECT %s, %s, %s FROM %s WHERE (%s) > (%s) ORDER BY %s LIMIT %d`,
		keyList, tenant, col.column, col.table, keyList, strings.Join(placeholders, ", "), keyList, batchSize)
	where := make([]string, len(col.key))
	for i, k := range col.key {
		where[i] = fmt.Sprintf("%s = $%d", k, i+3)
	}
	update := fmt.Sprintf(`UPDATE %s SET %s = $1 WHERE %s = $2 AND %s`,
		col.table, col.column, col.column, strings.Join(where, " AND "))

	var last []any
	for {
		type row struct {
			key      []any
			tenantID string
			sealed   []byte
		}
		var batch []row
		query, args := first, []any(nil)
		if last != nil {
			query, args = next, last
		}
		rows, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			return cr, fmt.Errorf("rotate %s: read batch: %w", cr.Column, err)
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				rows.Close()
				return cr, fmt.Errorf("rotate %s: scan: %w", cr.Column, err)
			}
			n := len(col.key)
			tenantID, _ := vals[n].(string)
			sealed, _ := vals[n+1].([]byte)
			batch = append(batch, row{key: vals[:n], tenantID: tenantID, sealed: sealed})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return cr, fmt.Errorf("rotate %s: read batch: %w", cr.Column, err)
		}
		if len(batch) == 0 {
			return cr, nil
		}
		// Count into a batch tally, added to the report only once the batch has committed.
		var b ColumnRotation
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			b = ColumnRotation{}
			for _, r := range batch {
				b.Scanned++
				need, err := s.keyring.NeedsRotation(r.sealed)
				if err != nil {
					b.Unreadable++
					continue
				}
				if !need {
					b.Current++
					continue
				}
				resealed, err := s.keyring.Reseal(r.sealed, r.tenantID, col.ad)
				if err != nil {
					b.Unreadable++
					continue
				}
				args := append([]any{resealed, r.sealed}, r.key...)
				tag, err := tx.Exec(ctx, update, args...)
				if err != nil {
					return fmt.Errorf("update: %w", err)
				}
				if tag.RowsAffected() == 1 {
					b.Rotated++
				} else {
					b.Raced++
				}
			}
			return nil
		})
		if err != nil {
			return cr, fmt.Errorf("rotate %s: %w", cr.Column, err)
		}
		cr.Scanned += b.Scanned
		cr.Rotated += b.Rotated
		cr.Current += b.Current
		cr.Unreadable += b.Unreadable
		cr.Raced += b.Raced
		if progress != nil {
			progress(cr)
		}
		last = batch[len(batch)-1].key
		if len(batch) < batchSize {
			return cr, nil
		}
	}
}
