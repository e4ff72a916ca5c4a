package postgres_test

import (
	"io/fs"

	"github.com/parlor-dev/parlor/migrations"
)

func migrationFiles() (int, error) {
	names, err := fs.Glob(migrations.FS, "*.sql")
	return len(names), err
}
