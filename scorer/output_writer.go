package scorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/messages"
)

// OutputWriter writes the predictions of batches to one job's output table.
//
// When the plan names a ledger (modes create and replace), the output table has no key
// yet: each batch is one transaction that records the batch (its range and page) in the
// ledger, then copies its rows. A batch delivered again finds its ledger row and writes
// nothing; a delivery racing the first waits on its uncommitted ledger row and does the
// same once it commits. Every key is written once, into a table without an index to
// maintain; the coordinator adds the primary key when the job finishes.
//
// Without a ledger (mode append) a batch is copied straight into the output table: one COPY, its own transaction. The
// table's primary key is the ledger of what is written: a batch delivered again (its
// scorer died after the commit, or its acknowledgement was lost) finds its first key there,
// the COPY fails with a unique violation and nothing is written; a delivery racing the
// first waits on its uncommitted keys and fails the same way once it commits. On that
// violation the batch goes through the upsert instead, which writes the same values again:
// no row is doubled and a row's values are those of the last write of its batch. After a
// few such batches (mode append over rows already there, not a redelivery) the job's later
// batches go straight to the upsert.
//
// A typed key's values arrive as their key text (messages.KeyColumn.TextSQL): the batch is
// copied in COPY's text format straight into the output table, so that PostgreSQL reads
// each key's text with its column type's input function, which is what the cast of a range
// bound does; a timestamptz key's text is in UTC, so the transaction's time zone is UTC.
// The upsert copies the batch into a temporary table with the key columns as text and
// casts each back to its column's type from there.
type OutputWriter struct {
	pool    *pgxpool.Pool
	output  pgx.Identifier
	columns []string // the key's columns, then the prediction columns
	temp    string   // creates the batch's temporary table
	upsert  string
	// copyText copies a typed key's batch in text format; "" for an integer key, whose
	// batches are copied in binary.
	copyText string
	// utc is set when a key column is a timestamptz, whose text is in UTC.
	utc bool
	// claim records a batch in the ledger; "" when the plan has none.
	claim string
	// conflicts counts the COPYs that met a key already written.
	conflicts atomic.Int64
}

// upsertAfter is how many COPYs may meet keys already written before the writer stops
// trying: more than the few batches a killed scorer leaves written and unacknowledged.
const upsertAfter = 8

// tempTable holds one batch until the upsert; it is dropped at commit.
const tempTable = "pgtrain_scored_batch"

// NewOutputWriter prepares the statements for a prediction plan. Every name is quoted.
func NewOutputWriter(pool *pgxpool.Pool, plan *messages.Plan) (*OutputWriter, error) {
	pp := plan.Prediction
	if pp == nil || pp.OutputTable == "" || plan.Key == "" {
		return nil, fmt.Errorf("job %s: not a prediction plan with an output table: %w", plan.JobID, ErrBadPlan)
	}
	if len(plan.KeyColumns) > messages.MaxKeyColumns {
		return nil, fmt.Errorf("job %s: a key of %d columns: %w", plan.JobID, len(plan.KeyColumns), ErrBadPlan)
	}
	keys := []string{plan.Key}
	if plan.KeyColumns != nil {
		keys = keys[:0]
		for _, c := range plan.KeyColumns {
			if !messages.ValidKeyType(c.Type) {
				return nil, fmt.Errorf("job %s: key column %q has type %q: %w", plan.JobID, c.Name, c.Type, ErrBadPlan)
			}
			keys = append(keys, c.Name)
		}
	}
	names, types := pp.OutputColumns()
	cols := append(slices.Clone(keys), names...)
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgx.Identifier{c}.Sanitize()
	}
	output := pgx.Identifier{pp.OutputSchema, pp.OutputTable}
	out := output.Sanitize()
	list := strings.Join(quoted, ", ")
	var set []string
	for _, q := range quoted[len(keys):] {
		set = append(set, q+" = excluded."+q)
	}
	conflict := " on conflict (" + strings.Join(quoted[:len(keys)], ", ") + ") do update set " + strings.Join(set, ", ")
	claim := ""
	if pp.Ledger != "" {
		claim = "insert into " + pgx.Identifier{pp.OutputSchema, pp.Ledger}.Sanitize() +
			" (range_no, page_no) values ($1, $2) on conflict do nothing"
	}
	w := &OutputWriter{
		claim:   claim,
		pool:    pool,
		output:  output,
		columns: cols,
		temp:    "create temp table " + tempTable + " on commit drop as select " + list + " from " + out + " with no data",
		upsert:  "insert into " + out + " (" + list + ") select " + list + " from " + tempTable + conflict,
	}
	if plan.KeyColumns != nil {
		defs := make([]string, len(cols))
		sel := slices.Clone(quoted)
		for i, q := range quoted {
			if i < len(keys) {
				defs[i] = q + " text"
				sel[i] = plan.KeyColumns[i].CastSQL(q)
			} else {
				defs[i] = q + " " + types[i-len(keys)] // OutputColumns' own types
			}
		}
		w.temp = "create temp table " + tempTable + " (" + strings.Join(defs, ", ") + ") on commit drop"
		w.upsert = "insert into " + out + " (" + list + ") select " + strings.Join(sel, ", ") + " from " + tempTable + conflict
		w.copyText = "copy " + out + " (" + list + ") from stdin"
		for _, c := range plan.KeyColumns {
			w.utc = w.utc || c.Form == messages.KeyFormTimestamptz
		}
	}
	return w, nil
}

// Write stores the rows of batch b (each the key, then the prediction values) in one
// transaction: a batch written again never doubles a row.
func (w *OutputWriter) Write(ctx context.Context, b messages.BatchID, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if w.claim != "" {
		return w.writeOnce(ctx, b, rows)
	}
	if w.conflicts.Load() < upsertAfter {
		var err error
		if w.copyText == "" {
			if _, err = w.pool.CopyFrom(ctx, w.output, w.columns, pgx.CopyFromRows(rows)); err != nil {
				err = fmt.Errorf("copying the batch: %w", err)
			}
		} else {
			err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error { return w.copyRows(ctx, tx, rows) })
		}
		if !uniqueViolation(err) {
			return err
		}
		w.conflicts.Add(1)
	}
	return w.upsertRows(ctx, rows)
}

// errLedgerGone reports that the job's ledger was dropped: the job has finished (every
// batch is written) or ended. It is not the batch's fault, so the batch is handed back,
// and the job's end takes it off SCORE.
var errLedgerGone = errors.New("the job's ledger of written batches is gone (the job has ended)")

// writeOnce records the batch in the ledger and copies its rows, in one transaction; a
// batch the ledger holds already is written.
func (w *OutputWriter) writeOnce(ctx context.Context, b messages.BatchID, rows [][]any) error {
	return pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, w.claim, b.Range, b.Page)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
			return fmt.Errorf("recording batch %s: %w", b, errLedgerGone)
		}
		if err != nil {
			return fmt.Errorf("recording batch %s in the ledger: %w", b, err)
		}
		if tag.RowsAffected() == 0 {
			return nil // written by an earlier delivery
		}
		return w.copyRows(ctx, tx, rows)
	})
}

// copyRows copies rows into the output table in tx: in binary for an integer key, in text
// for a typed key.
func (w *OutputWriter) copyRows(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	if w.copyText == "" {
		if _, err := tx.CopyFrom(ctx, w.output, w.columns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copying the batch: %w", err)
		}
		return nil
	}
	var text []byte
	for _, row := range rows {
		var err error
		if text, err = appendCopyRow(text, row); err != nil {
			return fmt.Errorf("encoding the batch for COPY: %w", err)
		}
	}
	if w.utc {
		if _, err := tx.Exec(ctx, "set local timezone = 'UTC'"); err != nil {
			return fmt.Errorf("reading timestamptz keys in UTC: %w", err)
		}
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(text), w.copyText); err != nil {
		return fmt.Errorf("copying the batch: %w", err)
	}
	return nil
}

// upsertRows copies rows into a temporary table and upserts them from there.
func (w *OutputWriter) upsertRows(ctx context.Context, rows [][]any) error {
	return pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error { return w.viaTemp(ctx, tx, rows, w.upsert) })
}

// viaTemp copies rows into the batch's temporary table and runs stmt, which writes them
// from there into the output table.
func (w *OutputWriter) viaTemp(ctx context.Context, tx pgx.Tx, rows [][]any, stmt string) error {
	if _, err := tx.Exec(ctx, w.temp); err != nil {
		return fmt.Errorf("creating the batch table: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{tempTable}, w.columns, pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("copying the batch: %w", err)
	}
	if _, err := tx.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("writing the batch: %w", err)
	}
	return nil
}

// uniqueViolation reports a unique violation: a key of the batch is in the table already.
func uniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
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
