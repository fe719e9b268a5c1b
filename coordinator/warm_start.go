package coordinator

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
	"pgtrain/model"
)

// initModel reads the stored model a spec starts from (init_from) and checks, before any
// planning, what needs no database: the model carries its training state, the backend,
// the feature and label columns (and with preprocessing "reuse" their transforms), the
// layers and the optimizer. Each mismatch is a 400 naming the field.
func (c *Coordinator) initModel(ctx context.Context, spec messages.JobSpec, ms *model.Spec) (*messages.ModelMeta, error) {
	tm, err := c.modelMeta(ctx, "init_from", spec.InitFrom)
	if err != nil {
		return nil, err
	}
	if err := checkStart(spec, ms, &tm); err != nil {
		return nil, err
	}
	return &tm, nil
}

func checkStart(spec messages.JobSpec, ms *model.Spec, tm *messages.ModelMeta) error {
	id := tm.JobID
	if tm.TrainingState == "" {
		return &messages.FieldError{Field: "init_from", Reason: fmt.Sprintf("model %s was stored without its training state (by an older pgtrain), so it cannot be continued", id)}
	}
	if spec.Backend != tm.Spec.Backend {
		return &messages.FieldError{Field: "backend", Reason: fmt.Sprintf("%q, model %s was trained on %q: a training state belongs to the backend that wrote it", spec.Backend, id, tm.Spec.Backend)}
	}
	if spec.Since == messages.SinceLast {
		if spec.Source != tm.Source {
			return &messages.FieldError{Field: "source", Reason: fmt.Sprintf("%q, model %s was trained on source %q: since \"last\" continues the stored model's table", spec.Source, id, tm.Source)}
		}
		if key := storedKey(tm); spec.Key.String() != key {
			return &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%q, model %s read the keys of %q: since \"last\" continues after its last key", spec.Key, id, key)}
		}
	}
	if len(spec.Features) != len(tm.Features) {
		return &messages.FieldError{Field: "features", Reason: fmt.Sprintf("%d columns, model %s reads %d (%s)", len(spec.Features), id, len(tm.Features), featureNames(tm))}
	}
	for i, f := range spec.Features {
		field := fmt.Sprintf("features[%d]", i)
		sf := tm.Features[i]
		if f.Column != sf.Name {
			return &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("%q, input %d of model %s is %q (its inputs in order: %s)", f.Column, i, id, sf.Name, featureNames(tm))}
		}
		if (f.Encode == messages.EncodeOneHot) != (sf.Kind == messages.KindCategorical) {
			return &messages.FieldError{Field: field + ".encode", Reason: fmt.Sprintf("%q, model %s reads column %q as %s", f.Encode, id, f.Column, sf.Kind)}
		}
		if spec.Preprocessing == messages.PreprocessingReuse && i < len(tm.Spec.Features) && !sameTransform(f, tm.Spec.Features[i]) {
			return &messages.FieldError{Field: field, Reason: fmt.Sprintf("the transform of %q differs from model %s's; with preprocessing \"reuse\" the stored one applies: give the same, or preprocessing \"recompute\"", f.Column, id)}
		}
	}
	if spec.Label.Column != tm.Label.Name {
		return &messages.FieldError{Field: "label", Reason: fmt.Sprintf("%q, model %s predicts %q", spec.Label.Column, id, tm.Label.Name)}
	}
	if spec.Label.Encode != tm.Spec.Label.Encode {
		return &messages.FieldError{Field: "label.encode", Reason: fmt.Sprintf("%q, model %s encodes its label %q", spec.Label.Encode, id, tm.Spec.Label.Encode)}
	}
	from, err := model.ParseSpec(tm.Spec.Model)
	if err != nil {
		return &messages.FieldError{Field: "init_from", Reason: fmt.Sprintf("model %s: its model document: %v", id, err)}
	}
	if fe := model.CheckStart(from, model.CompileOf(tm.Spec), ms, model.CompileOf(spec)); fe != nil {
		return &messages.FieldError{Field: fe.Field, Reason: fmt.Sprintf("%s (starting from model %s)", fe.Reason, id)}
	}
	return nil
}

// storedKey is the key a stored model was read by, its columns as a spec lists them.
func storedKey(tm *messages.ModelMeta) string {
	if tm.KeyColumns == nil {
		return tm.Key
	}
	names := make(messages.KeyColumns, len(tm.KeyColumns))
	for i, c := range tm.KeyColumns {
		names[i] = c.Name
	}
	return names.String()
}

// sameTransform reports whether two feature specs of one column transform it alike.
func sameTransform(a, b messages.FeatureSpec) bool {
	sameValue := (a.ImputeValue == nil) == (b.ImputeValue == nil) && (a.ImputeValue == nil || *a.ImputeValue == *b.ImputeValue)
	return a.Impute == b.Impute && sameValue && a.Scale == b.Scale && a.Encode == b.Encode && a.VocabSize == b.VocabSize
}

// startFrom sets the plan's WarmStart and, with since "last", limits the job to the keys
// after the stored model's last key. done is true when no key follows it: the plan then
// has no ranges and the job ends as nothing_new.
func startFrom(ctx context.Context, tx pgx.Tx, in *planInput, p *messages.Plan, from *messages.ModelMeta) (done bool, err error) {
	spec := in.spec
	p.WarmStart = &messages.WarmStart{
		InitFrom:      from.JobID,
		Preprocessing: spec.Preprocessing,
		Since:         spec.Since,
		InitialEpoch:  from.EpochsTrained(),
		RowsBefore:    from.Rows,
	}
	if spec.Since != messages.SinceLast {
		return false, nil
	}
	if p.Schema != from.Schema || p.Table != from.Table {
		return false, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("%s.%s, model %s was trained on %s.%s: since \"last\" continues the stored model's table",
			p.Schema, p.Table, from.JobID, from.Schema, from.Table)}
	}
	if err := sameKey(in, from); err != nil {
		return false, err
	}
	if in.keyCols != nil {
		in.afterText, p.WarmStart.AfterKeyText = from.LastKeyText, from.LastKeyText
		if err := setAfter(ctx, tx, in.afterText); err != nil {
			return false, err
		}
	} else {
		after := from.LastKey
		in.after, p.WarmStart.AfterKey = &after, after
	}
	var any bool
	if err := tx.QueryRow(ctx, "select exists (select 1 from "+in.source()+")").Scan(&any); err != nil {
		return false, fmt.Errorf("looking for keys after %s: %w", messages.FormatKey(from.LastKey, from.LastKeyText), err)
	}
	return !any, nil
}

// sameKey checks that the table's key is the one the stored model read by, column for
// column with its type, text form and collation: since "last" casts the stored key's text
// back to the table's key types and compares in their order. A typed key's last key must be recorded.
func sameKey(in *planInput, from *messages.ModelMeta) error {
	describe := func(cols []messages.KeyColumn, key string) string {
		if cols == nil {
			return fmt.Sprintf("%q (one integer column)", key)
		}
		parts := make([]string, len(cols))
		for i, c := range cols {
			parts[i] = fmt.Sprintf("%q %s", c.Name, c.Type)
			if c.Collation != "" {
				parts[i] += " collate " + c.Collation
			}
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	table, stored := describe(in.keyCols, in.key.name), describe(from.KeyColumns, from.Key)
	if in.keyCols != nil && from.KeyColumns == nil {
		// An integer key then, or a typed key stored before models recorded its columns.
		return &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%s.%s's key is %s, model %s records the integer key %q and no typed key or last key of it: since \"last\" cannot continue after it",
			in.rel.schema, in.rel.name, table, from.JobID, from.Key)}
	}
	if !slices.Equal(in.keyCols, from.KeyColumns) || (in.keyCols == nil && in.key.name != from.Key) {
		return &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%s.%s's key is %s, model %s read the key %s: since \"last\" continues after its last key in that key's order",
			in.rel.schema, in.rel.name, table, from.JobID, stored)}
	}
	if in.keyCols != nil && len(from.LastKeyText) != len(in.keyCols) {
		return &messages.FieldError{Field: "init_from", Reason: fmt.Sprintf("model %s does not record the last key it read (stored by an older pgtrain), so since \"last\" cannot continue after it: leave out since", from.JobID)}
	}
	return nil
}

// nothingNew reports whether a plan is that of a since "last" job that found no new key,
// and says so.
func nothingNew(p *messages.Plan) (string, bool) {
	ws := p.WarmStart
	if ws == nil || len(p.Ranges) > 0 {
		return "", false
	}
	key := p.Key
	if p.KeyColumns != nil {
		key = "(" + messages.KeyList(p.KeyColumns) + ")"
	}
	return fmt.Sprintf("nothing new: %s.%s has no row with %s after %s, the last key model %s read; that model stays current",
		p.Schema, p.Table, key, messages.FormatKey(ws.AfterKey, ws.AfterKeyText), ws.InitFrom), true
}

// reuseTransforms plans a job with preprocessing "reuse": the stored model's features and
// label (their types this table's, which say how the fetchers read them), no statistics,
// and the key ranges of the job's rows. A classifier's label must take no value outside
// the stored classes.
func reuseTransforms(ctx context.Context, pc planConns, in *planInput, p *messages.Plan, from *messages.ModelMeta) (map[string]float64, []messages.KeyRange, []messages.KeyChecksum, error) {
	var texts []string
	p.Features = make([]messages.ColumnPlan, len(from.Features))
	for i, f := range from.Features {
		f.PGType = in.features[i].pgType
		f.Vocabulary = slices.Clone(f.Vocabulary)
		p.Features[i] = f
		if f.Kind == messages.KindCategorical {
			texts = append(texts, f.Name)
		}
	}
	p.Label = from.Label
	p.Label.PGType = in.label.pgType
	p.Label.Vocabulary = slices.Clone(from.Label.Vocabulary)
	if p.Label.Kind == messages.KindCategorical {
		texts = append(texts, p.Label.Name)
		q := pgx.Identifier{in.label.name}.Sanitize()
		var unseen string
		err := pc.tx.QueryRow(ctx, "select "+q+"::text from "+in.source()+" where "+q+" is not null and not ("+q+"::text = any($1)) limit 1",
			p.Label.Vocabulary).Scan(&unseen)
		switch {
		case err == nil:
			return nil, nil, nil, &messages.FieldError{Field: "label", Reason: fmt.Sprintf("value %q of %q is not a class of model %s (%d classes): use preprocessing \"recompute\" and a new model, or leave out init_from",
				unseen, in.label.name, from.JobID, len(p.Label.Vocabulary))}
		case err != pgx.ErrNoRows:
			return nil, nil, nil, fmt.Errorf("checking the label's classes: %w", err)
		}
	}
	avgText, err := textWidths(ctx, pc.tx, in, texts)
	if err != nil {
		return nil, nil, nil, err
	}
	split, err := splitKeysInParts(ctx, pc, in)
	if err != nil {
		return nil, nil, nil, err
	}
	split.addKeyWidths(avgText)
	p.LastKeyText = split.last
	return avgText, split.bounds, split.sums, nil
}

// checkStartPlan checks a planned warm start against the stored model: the input and
// label widths, and with recomputed statistics the vocabularies and classes, whose slots
// the stored weights are tied to. It fills the warm start's row count.
func checkStartPlan(p *messages.Plan, from *messages.ModelMeta) error {
	id := from.JobID
	for i, f := range p.Features {
		sf := from.Features[i]
		if f.Kind == messages.KindCategorical && !slices.Equal(f.Vocabulary, sf.Vocabulary) {
			return &messages.FieldError{Field: fmt.Sprintf("features[%d].vocab_size", i), Reason: fmt.Sprintf("the recomputed vocabulary of %q (%d values) differs from model %s's (%d values): its one-hot inputs would change meaning; use preprocessing \"reuse\"",
				f.Name, len(f.Vocabulary), id, len(sf.Vocabulary))}
		}
	}
	if p.InputDim != from.InputDim {
		return &messages.FieldError{Field: "features", Reason: fmt.Sprintf("the inputs are %d wide, model %s's %d", p.InputDim, id, from.InputDim)}
	}
	if !slices.Equal(p.Label.Vocabulary, from.Label.Vocabulary) || p.LabelDim != from.LabelDim {
		return &messages.FieldError{Field: "label", Reason: fmt.Sprintf("the classes of %q are %q, model %s's %q", p.Label.Name, p.Label.Vocabulary, id, from.Label.Vocabulary)}
	}
	p.WarmStart.Rows = p.Expected.Rows + p.ExpectedValid.Rows
	return nil
}
