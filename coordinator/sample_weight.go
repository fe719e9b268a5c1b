package coordinator

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// sampleWeight plans the spec's sample_weight_column: a numeric column read as it is (no
// impute, no scaling). One query counts the rows the job may read whose weight is NULL,
// negative, NaN or infinite; any is a 400 naming the column with the counts, so a job does
// not fail on its first bad row an hour in (a row changed after planning still fails its
// batch, naming the row key).
func sampleWeight(ctx context.Context, tx pgx.Tx, in *planInput, p *messages.Plan) error {
	name := in.spec.SampleWeightColumn
	if name == "" {
		return nil
	}
	col, ok := in.rel.cols[name]
	if !ok {
		return &messages.FieldError{Field: "sample_weight_column", Reason: fmt.Sprintf("no column %q in %s.%s", name, in.rel.schema, in.rel.name)}
	}
	if !col.numeric() {
		return &messages.FieldError{Field: "sample_weight_column", Reason: fmt.Sprintf("column %q is %s, not numeric", col.name, col.pgType)}
	}
	c := pgx.Identifier{col.name}.Sanitize()
	v := c + "::float8"
	sql := fmt.Sprintf(`select count(*) filter (where %s is null),
		count(*) filter (where %s < 0 and %s <> '-Infinity'),
		count(*) filter (where %s in ('NaN', 'Infinity', '-Infinity'))
		from %s`, c, v, v, v, in.sourceAs("weighed"))
	var nulls, negative, nonFinite int64
	if err := tx.QueryRow(ctx, sql).Scan(&nulls, &negative, &nonFinite); err != nil {
		return fmt.Errorf("checking the sample weights in %q: %w", col.name, err)
	}
	if nulls+negative+nonFinite > 0 {
		return &messages.FieldError{Field: "sample_weight_column", Reason: fmt.Sprintf(
			"column %q holds %d NULL, %d negative and %d NaN or infinite weights: every weight must be a finite number >= 0",
			col.name, nulls, negative, nonFinite)}
	}
	p.SampleWeight = &messages.ColumnPlan{Name: col.name, PGType: col.pgType, Kind: messages.KindNumeric, Type: messages.TypeNumber,
		Factor: 1, NonFinite: messages.NonFiniteError}
	return nil
}
