package wallet

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	parlor "github.com/parlor-dev/parlor"
)

// Discrepancy is one row a reconciliation query returned: an invariant the ledger breaks.
type Discrepancy struct {
	Problem string
	Fields  map[string]any
}

func (d Discrepancy) String() string {
	var b strings.Builder
	b.WriteString(d.Problem)
	for k, v := range d.Fields {
		if k != "problem" {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
	}
	return b.String()
}

// Reconcile runs scripts/ledger-reconciliation.sql in one read-only snapshot and returns
// every discrepancy it finds: none when every transaction sums to zero, every balance equals
// the sum of its entries and no user balance is negative.
func Reconcile(ctx context.Context, pool *pgxpool.Pool) ([]Discrepancy, error) {
	var out []Discrepancy
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, stmt := range statements(parlor.LedgerReconciliationSQL) {
			rows, err := tx.Query(ctx, stmt)
			if err != nil {
				return err
			}
			maps, err := pgx.CollectRows(rows, pgx.RowToMap)
			if err != nil {
				return err
			}
			for _, m := range maps {
				problem, _ := m["problem"].(string)
				out = append(out, Discrepancy{Problem: problem, Fields: m})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile the ledger: %w", err)
	}
	return out, nil
}

// statements splits a SQL script of plain statements (no semicolons inside strings) and
// drops comment lines.
func statements(script string) []string {
	var lines []string
	for _, l := range strings.Split(script, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	for _, s := range strings.Split(strings.Join(lines, "\n"), ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
