package wallet

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	parlor "github.com/parlor-dev/parlor"
)

// Discrepancy is one row a reconciliation query returned: an invariant the ledger breaks.
type Discrepancy struct {
	Problem string
	Fields  map[string]any
}

// String is the problem followed by its fields as name=value, sorted by name so the same
// discrepancy always prints the same: ids as UUIDs, times in UTC, text quoted when it has
// spaces, NULL as null.
func (d Discrepancy) String() string {
	names := make([]string, 0, len(d.Fields))
	for k := range d.Fields {
		if k != "problem" {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var b strings.Builder
	b.WriteString(d.Problem)
	for _, k := range names {
		fmt.Fprintf(&b, " %s=%s", k, formatValue(d.Fields[k]))
	}
	return b.String()
}

// formatValue renders a value pgx.RowToMap returned.
func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case [16]byte:
		return uuid.UUID(v).String()
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case string:
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			return strconv.Quote(v)
		}
		return v
	default:
		return fmt.Sprint(v)
	}
}

// Reconcile runs scripts/ledger-reconciliation.sql in one read-only snapshot and returns
// every discrepancy it finds, in the script's order: none when every transaction sums to
// zero, every balance equals the sum of its entries, no wallet is below its floor, every
// transaction's cause exists and fits it, every paid top-up is minted exactly once with
// exactly its credits into its buyer's wallet (and no unpaid one is), every refunded top-up
// is clawed back exactly once (and no other one is), and every tip and room entry moves the
// amount it should between the wallets it should.
func Reconcile(ctx context.Context, pool *pgxpool.Pool) ([]Discrepancy, error) {
	var out []Discrepancy
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		out, err = reconcileIn(ctx, tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile the ledger: %w", err)
	}
	return out, nil
}

// reconcileIn runs the reconciliation script in tx, which must be a repeatable-read
// transaction (one snapshot for every query).
func reconcileIn(ctx context.Context, tx pgx.Tx) ([]Discrepancy, error) {
	var out []Discrepancy
	for _, stmt := range statements(parlor.LedgerReconciliationSQL) {
		rows, err := tx.Query(ctx, stmt)
		if err != nil {
			return nil, err
		}
		maps, err := pgx.CollectRows(rows, pgx.RowToMap)
		if err != nil {
			return nil, err
		}
		for _, m := range maps {
			problem, _ := m["problem"].(string)
			out = append(out, Discrepancy{Problem: problem, Fields: m})
		}
	}
	return out, nil
}

// JSONFields are d's fields (without problem) as JSON values: ids as UUID strings, times
// in UTC RFC 3339, numbers as numbers, NULL as null.
func (d Discrepancy) JSONFields() map[string]any {
	out := make(map[string]any, len(d.Fields))
	for k, v := range d.Fields {
		if k == "problem" {
			continue
		}
		switch v := v.(type) {
		case time.Time:
			out[k] = v.UTC().Format(time.RFC3339Nano)
		case [16]byte:
			out[k] = uuid.UUID(v).String()
		case nil, string, bool, int16, int32, int64, float32, float64, json.Marshaler:
			out[k] = v // numeric sums (pgtype.Numeric) marshal as numbers
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
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
