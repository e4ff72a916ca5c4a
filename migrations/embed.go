// Package migrations embeds Parlor's goose SQL migrations into the binary.
// Never edit a migration that has been applied anywhere; add a new one.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
