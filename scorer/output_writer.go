package scorer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/messages"
)

// OutputWriter writes the predictions of batches to one job's output table.
type OutputWriter struct {
	pool    *pgxpool.Pool
	columns []string // the key, then the prediction columns
	temp    string   // creates the batch's temporary table
	upsert  string
}

// tempTable holds one batch until the upsert; it is dropped at commit.
const tempTable = "pgtrain_scored_batch"

// NewOutputWriter prepares the statements for a prediction plan. Every name is quoted.
func NewOutputWriter(pool *pgxpool.Pool, plan *messages.Plan) (*OutputWriter, error) {
	pp := plan.Prediction
	if pp == nil || pp.OutputTable == "" || plan.Key == "" {
		return nil, fmt.Errorf("job %s: not a prediction plan with an output table: %w", plan.JobID, ErrBadPlan)
	}
	names, _ := pp.OutputColumns()
	cols := append([]string{plan.Key}, names...)
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	out := pgx.Identifier{pp.OutputSchema, pp.OutputTable}.Sanitize()
	list := strings.Join(quoted, ", ")
	var set []string
	for _, q := range quoted[1:] {
		set = append(set, q+" = excluded."+q)
	}
	return &OutputWriter{
		pool:    pool,
		columns: cols,
		temp:    "create temp table " + tempTable + " on commit drop as select " + list + " from " + out + " with no data",
		upsert: "insert into " + out + " (" + list + ") select " + list + " from " + tempTable +
			" on conflict (" + quoted[0] + ") do update set " + strings.Join(set, ", "),
	}, nil
}

// Write stores rows (each the key, then the prediction values) in one transaction: a
// batch written again replaces its own rows, so it never doubles one.
func (w *OutputWriter) Write(ctx context.Context, rows [][]any) error {
	return pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, w.temp); err != nil {
			return fmt.Errorf("creating the batch table: %w", err)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{tempTable}, w.columns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copying the batch: %w", err)
		}
		if _, err := tx.Exec(ctx, w.upsert); err != nil {
			return fmt.Errorf("upserting the batch: %w", err)
		}
		return nil
	})
}

// permanentWriteError reports a database error no retry fixes: the output table was
// dropped or changed under the job, or the role may not write it.
func permanentWriteError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code[:2] {
	case "42", "22", "23", "25": // syntax/undefined/privilege, data, constraint, read-only
		return true
	}
	return false
}
