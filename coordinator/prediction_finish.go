package coordinator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/workloop"
	"pgtrain/messages"
)

// An output table of mode create or replace is written without its primary key: inserting
// into a table with no index costs PostgreSQL about half the CPU of inserting into a keyed
// one, and building the key once at the end is cheaper than maintaining it. The scorers
// write each batch once, recording it in the job's ledger in the same transaction; when
// every range is written the coordinator adds the primary key, which also proves that
// every key is there once, and drops the ledger. Mode append writes into a table that is
// keyed already and keeps the upsert.

// ledgerPrefix starts the name of a job's ledger table, next to its output table. A job
// id is at most 29 characters, so the name stays under PostgreSQL's 63.
const ledgerPrefix = "pgtrain_ledger_"

// createLedger creates the ledger of a job whose output table is created without its key,
// in the transaction that creates the output table, and names it in the plan.
func createLedger(ctx context.Context, tx pgx.Tx, p *messages.Plan) error {
	pp := p.Prediction
	pp.Ledger = ledgerPrefix + p.JobID
	_, err := tx.Exec(ctx, "create table "+pgx.Identifier{pp.OutputSchema, pp.Ledger}.Sanitize()+
		" (range_no integer, page_no integer, primary key (range_no, page_no))")
	return err
}

// outputKeyLater reports whether a new output table is created without its key, to be
// keyed when the job finishes; the plan then names the ledger, which says so from then on.
func outputKeyLater(pp *messages.PredictionPlan) bool {
	return pp.OutputTable != "" && pp.Mode != messages.OutputAppend
}

// finishOutput adds the output table's primary key and drops the ledger, in the
// background, then ends the job: done, or failed when the key cannot be added. It runs
// once at a time per job; a coordinator killed meanwhile runs it again when it restarts.
// Callers hold c.mu.
func (c *Coordinator) finishOutput(j *job) {
	if j.finishing {
		return
	}
	j.finishing = true
	id, plan := j.rec.ID, j.plan
	pool := c.sources[plan.Spec.Source]
	c.log.Info("every batch is written; adding the output table's primary key", "job_id", id, "output", outputName(plan.Prediction))
	c.bg.Go(func() {
		ctx := c.bgCtx
		backoff := &workloop.Backoff{Min: time.Second, Max: 30 * time.Second}
		var failure error
		if pool == nil {
			failure = fmt.Errorf("source %q is not configured on this coordinator", plan.Spec.Source)
		}
		for failure == nil {
			started := time.Now()
			err := keyOutput(ctx, pool, plan)
			if err == nil {
				c.log.Info("output table keyed", "job_id", id, "took", time.Since(started).Round(time.Millisecond))
				break
			}
			if permanentOutputError(err) {
				failure = err
				break
			}
			if ctx.Err() != nil {
				return // stopping: the next coordinator finishes the job
			}
			c.log.Warn("adding the output table's primary key failed; retrying", "job_id", id, "error", err, "retry_in", backoff.Next())
			backoff.Wait(ctx)
		}
		for {
			c.mu.Lock()
			if c.jobs[id] != j || j.rec.ended() {
				j.finishing = false
				c.mu.Unlock()
				return
			}
			err := c.endPrediction(ctx, j, failure)
			if err == nil {
				j.finishing = false
			}
			c.mu.Unlock()
			if err == nil || ctx.Err() != nil {
				return
			}
			c.log.Warn("recording a finished prediction job failed; retrying", "job_id", id, "error", err, "retry_in", backoff.Next())
			backoff.Wait(ctx)
		}
	})
}

// keyOutput adds the output table's primary key unless it has one (a previous
// coordinator added it before it died), and drops the ledger, in one transaction. The
// table is locked first, so a statement of a dead coordinator still running commits or
// aborts before the key is looked for.
func keyOutput(ctx context.Context, pool *pgxpool.Pool, p *messages.Plan) error {
	pp := p.Prediction
	out := pgx.Identifier{pp.OutputSchema, pp.OutputTable}.Sanitize()
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "lock table "+out+" in access exclusive mode"); err != nil {
			return fmt.Errorf("locking the output table %s: %w", out, err)
		}
		var keyed bool
		if err := tx.QueryRow(ctx, `select exists (select 1 from pg_catalog.pg_index where indrelid = $1::regclass and indisprimary)`,
			out).Scan(&keyed); err != nil {
			return fmt.Errorf("looking up the primary key of %s: %w", out, err)
		}
		if !keyed {
			if _, err := tx.Exec(ctx, "alter table "+out+" add primary key ("+messages.KeyList(outputKey(p))+")"); err != nil {
				return fmt.Errorf("adding the primary key of the output table %s: %w", out, err)
			}
		}
		if pp.Ledger != "" {
			if _, err := tx.Exec(ctx, "drop table if exists "+pgx.Identifier{pp.OutputSchema, pp.Ledger}.Sanitize()); err != nil {
				return fmt.Errorf("dropping the ledger of the output table %s: %w", out, err)
			}
		}
		return nil
	})
}

// permanentOutputError reports an error no retry of keyOutput fixes: a key written twice
// (a bug), the table dropped or changed, a privilege missing.
func permanentOutputError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch pe.Code[:2] {
	case "23", "42", "25": // integrity (a duplicate key), undefined/privilege, read-only
		return true
	}
	return false
}

// dropLedger drops an ended job's ledger when the job did not finish its output table
// (it failed), so that no ledger outlives its job.
func (c *Coordinator) dropLedger(ctx context.Context, p *messages.Plan) error {
	if p == nil || p.Prediction == nil || p.Prediction.Ledger == "" {
		return nil
	}
	pool := c.sources[p.Spec.Source]
	if pool == nil {
		return nil
	}
	ledger := pgx.Identifier{p.Prediction.OutputSchema, p.Prediction.Ledger}.Sanitize()
	if _, err := pool.Exec(ctx, "drop table if exists "+ledger); err != nil {
		return fmt.Errorf("dropping the ledger %s: %w", ledger, err)
	}
	return nil
}

// finishFailure is the job's error when its output table cannot be keyed.
func finishFailure(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return fmt.Sprintf("the output table holds a key more than once, so its primary key cannot be added (%s); "+
			"every batch is written once, so this is a bug: please report it (%v)", pe.Detail, err)
	}
	return "keying the output table: " + err.Error()
}
