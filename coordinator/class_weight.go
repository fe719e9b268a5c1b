package coordinator

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// classWeights resolves the spec's class_weight to one weight per class index of the label,
// after the ranges are assigned: "balanced" counts the training rows' classes in SQL, in the
// planning snapshot, and weighs each n_samples / (n_classes × count) as scikit-learn does.
func classWeights(ctx context.Context, tx pgx.Tx, in *planInput, p *messages.Plan) error {
	cw := in.spec.ClassWeight
	if cw == nil {
		return nil
	}
	classes := p.Label.Vocabulary
	if in.spec.Label.Encode == messages.EncodeNone {
		classes = []string{"0", "1"} // a 0/1 label: Keras's class is the rounded value
	}
	if !cw.Balanced {
		for k := range cw.Weights {
			if !slices.Contains(classes, k) {
				return &messages.FieldError{Field: "class_weight", Reason: fmt.Sprintf("%q is not a class of the label column %q (its classes: %s)", k, in.label.name, classList(classes))}
			}
		}
		p.ClassWeights = make([]float64, len(classes))
		for i, c := range classes {
			w, ok := cw.Weights[c]
			if !ok {
				return &messages.FieldError{Field: "class_weight", Reason: fmt.Sprintf("class %q of the label column %q has no weight", c, in.label.name)}
			}
			p.ClassWeights[i] = w
		}
		return nil
	}
	counts, err := trainingClassCounts(ctx, tx, in, p)
	if err != nil {
		return err
	}
	var n int64
	for _, c := range classes {
		n += counts[c]
	}
	p.ClassWeights = make([]float64, len(classes))
	for i, c := range classes {
		if counts[c] == 0 {
			return &messages.FieldError{Field: "class_weight", Reason: fmt.Sprintf("\"balanced\": class %q of the label column %q has no training row", c, in.label.name)}
		}
		p.ClassWeights[i] = float64(n) / (float64(len(classes)) * float64(counts[c]))
	}
	for _, v := range slices.Sorted(maps.Keys(counts)) {
		if !slices.Contains(classes, v) {
			return &messages.FieldError{Field: "class_weight", Reason: fmt.Sprintf("the label column %q holds %s, which is not a class (its classes: %s)", in.label.name, v, classList(classes))}
		}
	}
	return nil
}

// trainingClassCounts counts the label's values over the training ranges (keys up to the
// last training range's end), as text: the value itself for a categorical label, the
// rounded value for a 0/1 label.
func trainingClassCounts(ctx context.Context, tx pgx.Tx, in *planInput, p *messages.Plan) (map[string]int64, error) {
	l := pgx.Identifier{in.label.name}.Sanitize()
	v := l + "::text"
	if in.spec.Label.Encode == messages.EncodeNone {
		v = "round(" + l + "::float8)::bigint::text"
	}
	// Keys up to the last training range's end: validation ranges follow it.
	cond, args := "true", []any{maxLabelClasses + 1}
	if train := p.TrainingRanges(); train > 0 && train < len(p.Ranges) {
		last := p.Ranges[train-1]
		if in.keyCols != nil {
			cond, _ = messages.KeysThroughSQL(p.KeyColumns, 2)
			for _, t := range last.Through {
				args = append(args, t)
			}
		} else {
			cond = pgx.Identifier{in.key.name}.Sanitize() + " <= $2::bigint"
			args = append(args, last.Hi)
		}
	}
	sql := fmt.Sprintf(`select %s, count(*) from %s where %s is not null and %s group by 1 limit $1`, v, in.sourceAs("counted"), l, cond)
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("counting the classes of %q: %w", in.label.name, err)
	}
	counts := map[string]int64{}
	for rows.Next() {
		var c string
		var n int64
		if err := rows.Scan(&c, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("counting the classes of %q: %w", in.label.name, err)
		}
		counts[c] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting the classes of %q: %w", in.label.name, err)
	}
	return counts, nil
}

func classList(classes []string) string {
	const show = 10
	s := fmt.Sprintf("%q", classes[:min(len(classes), show)])
	if len(classes) > show {
		s += fmt.Sprintf(" and %d more", len(classes)-show)
	}
	return s
}
