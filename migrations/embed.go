// Package migrations embeds the SQL schema migrations so the server binary is self-contained.
// The files follow golang-migrate's naming: NNNNNN_name.up.sql and NNNNNN_name.down.sql.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
