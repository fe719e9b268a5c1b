package transform

import (
	"errors"
	"fmt"
	"math"

	"pgtrain/messages"
)

// ErrPlan reports a plan that cannot drive a transform (a bug or a version skew between
// the coordinator and this build), as opposed to a bad row.
var ErrPlan = errors.New("invalid plan")

// ErrBatch reports a raw batch whose columns do not match the plan.
var ErrBatch = errors.New("raw batch does not match the plan")

// RowError is a row the plan cannot encode: a NULL with no imputation, or a label value
// outside the label vocabulary. The job cannot go on past it.
type RowError struct {
	Key int64
	// KeyText is a typed key's text, which names the row instead of its hash.
	KeyText []string
	Column  string
	Reason  string
}

func (e *RowError) Error() string {
	return fmt.Sprintf("row key %s: column %q %s", messages.FormatKey(e.Key, e.KeyText), e.Column, e.Reason)
}

// Label encodings, as in JobSpec.Label.Encode.
const (
	labelNumeric = iota
	labelOneHot
	labelIndex
)

// feature is one raw column's transform: a column of the plan, or one element of an array
// column (name is then the raw column's, "col[j]").
type feature struct {
	name        string
	categorical bool
	hashed      bool // categorical by hash into width buckets
	cyclical    bool // a number of seconds as the six cyclical inputs
	hasImpute   bool
	impute      float64
	offset      float64
	factor      float64
	nonFinite   string
	min, max    float64 // what NonFiniteClip clips to
	vocab       map[string]int
	width       int // floats this feature writes per row
	at          int // its first float in a row
}

// Transformer is a compiled plan. It is safe for concurrent use.
type Transformer struct {
	features []feature
	label    feature
	labelEnc int
	hasLabel bool
	inputDim int
	labelDim int
	// weight is the sample weight column, read as it is, when hasWeight.
	weight     feature
	hasWeight  bool
	wantByName map[string]int // column name -> index in features, len(features) for the label, one more for the weight
	// keyText passes a typed key's text on: a prediction job writes it.
	keyText bool
}

// InputDim and LabelDim are the widths of a ready row.
func (t *Transformer) InputDim() int { return t.inputDim }
func (t *Transformer) LabelDim() int { return t.labelDim }

// Compile checks that the plan describes a transform this build can run and prepares it.
func Compile(plan *messages.Plan) (*Transformer, error) {
	if plan == nil {
		return nil, fmt.Errorf("nil plan: %w", ErrPlan)
	}
	t := &Transformer{wantByName: make(map[string]int, len(plan.Features)+1),
		keyText: plan.Kind == messages.JobKindPrediction && plan.KeyColumns != nil}
	at := 0
	for i, c := range plan.Features {
		fs, err := compileColumn(c)
		if err != nil {
			return nil, fmt.Errorf("feature %d: %w", i, err)
		}
		for _, f := range fs {
			if _, dup := t.wantByName[f.name]; dup {
				return nil, fmt.Errorf("feature column %q is listed twice: %w", f.name, ErrPlan)
			}
			t.wantByName[f.name] = len(t.features)
			f.at = at
			at += f.width
			t.features = append(t.features, f)
		}
	}
	t.inputDim = at
	if plan.InputDim != at {
		return nil, fmt.Errorf("input_dim is %d but the features are %d wide: %w", plan.InputDim, at, ErrPlan)
	}

	if !plan.HasLabel() {
		// A prediction plan on a table without the label: features only.
		if plan.LabelDim != 0 {
			return nil, fmt.Errorf("label_dim is %d but the plan has no label: %w", plan.LabelDim, ErrPlan)
		}
		return t, nil
	}
	t.hasLabel = true
	lc := plan.Label
	if _, dup := t.wantByName[lc.Name]; dup || lc.Name == "" {
		return nil, fmt.Errorf("label column %q is empty or also a feature: %w", lc.Name, ErrPlan)
	}
	t.wantByName[lc.Name] = len(t.features)
	switch plan.Spec.Label.Encode {
	case messages.EncodeNone:
		if lc.Kind != messages.KindNumeric {
			return nil, fmt.Errorf("label %q: kind %q without an encoding (want numeric, or encode onehot or index): %w", lc.Name, lc.Kind, ErrPlan)
		}
		t.labelEnc, t.labelDim = labelNumeric, 1
	case messages.EncodeOneHot, messages.EncodeIndex:
		if lc.Kind != messages.KindCategorical {
			return nil, fmt.Errorf("label %q: encoding %q needs a categorical column, not %q: %w", lc.Name, plan.Spec.Label.Encode, lc.Kind, ErrPlan)
		}
		if len(lc.Vocabulary) == 0 {
			return nil, fmt.Errorf("label %q: empty vocabulary: %w", lc.Name, ErrPlan)
		}
		t.labelEnc, t.labelDim = labelIndex, 1
		if plan.Spec.Label.Encode == messages.EncodeOneHot {
			t.labelEnc, t.labelDim = labelOneHot, len(lc.Vocabulary)
		}
	default:
		return nil, fmt.Errorf("label %q: unknown encoding %q: %w", lc.Name, plan.Spec.Label.Encode, ErrPlan)
	}
	if plan.LabelDim != t.labelDim {
		return nil, fmt.Errorf("label_dim is %d but the label %q encodes to %d: %w", plan.LabelDim, lc.Name, t.labelDim, ErrPlan)
	}
	t.label = feature{name: lc.Name, categorical: lc.Kind == messages.KindCategorical, vocab: vocabIndex(lc.Vocabulary)}
	if len(t.label.vocab) != len(lc.Vocabulary) {
		return nil, fmt.Errorf("label %q: the vocabulary repeats a value: %w", lc.Name, ErrPlan)
	}
	if plan.WeightDim() == 0 {
		return t, nil
	}
	wc := plan.SampleWeight
	if _, dup := t.wantByName[wc.Name]; dup || wc.Name == "" || wc.Kind != messages.KindNumeric || wc.IsArray() {
		return nil, fmt.Errorf("sample weight column %q: empty, not one number, or also a feature or the label: %w", wc.Name, ErrPlan)
	}
	t.wantByName[wc.Name] = len(t.features) + 1
	t.weight, t.hasWeight = feature{name: wc.Name}, true
	return t, nil
}

// compileColumn is the features of one planned column: one, or one per array element.
func compileColumn(c messages.ColumnPlan) ([]feature, error) {
	f := feature{name: c.Name}
	if c.Name == "" {
		return nil, fmt.Errorf("empty column name: %w", ErrPlan)
	}
	switch c.Kind {
	case messages.KindNumeric:
		switch c.NonFinite {
		case messages.NonFiniteError, messages.NonFiniteNull, messages.NonFiniteClip:
			f.nonFinite = c.NonFinite
		default:
			return nil, fmt.Errorf("column %q: unknown nonfinite option %q: %w", c.Name, c.NonFinite, ErrPlan)
		}
		f.width = 1
		switch {
		case c.IsArray():
			if c.Encode != messages.EncodeNone || len(c.Elements) == 0 {
				return nil, fmt.Errorf("array column %q: encoding %q with %d elements: %w", c.Name, c.Encode, len(c.Elements), ErrPlan)
			}
			out := make([]feature, len(c.Elements))
			for j, e := range c.Elements {
				out[j] = f
				out[j].name = messages.RawName(c.Name, j)
				out[j].hasImpute, out[j].impute = e.HasImpute, e.Impute
				out[j].offset, out[j].factor = e.Offset, e.Factor
				out[j].min, out[j].max = e.Stats.Min, e.Stats.Max
			}
			return out, nil
		case c.Encode == messages.EncodeCyclical:
			switch c.Type {
			case messages.TypeDate, messages.TypeTimestamp, messages.TypeTimestampTZ:
			default:
				return nil, fmt.Errorf("column %q: cyclical encoding of type %q (want a date or timestamp): %w", c.Name, c.Type, ErrPlan)
			}
			f.cyclical, f.width = true, messages.CyclicalWidth
		case c.Encode != messages.EncodeNone:
			return nil, fmt.Errorf("numeric column %q: unknown encoding %q: %w", c.Name, c.Encode, ErrPlan)
		}
		f.hasImpute, f.impute = c.HasImpute, c.Impute
		f.offset, f.factor = c.Offset, c.Factor
		f.min, f.max = c.Stats.Min, c.Stats.Max
	case messages.KindCategorical:
		f.categorical = true
		switch c.Encode {
		case messages.EncodeHash:
			if c.Buckets < 1 || len(c.Vocabulary) > 0 {
				return nil, fmt.Errorf("hashed column %q: %d buckets and a vocabulary of %d: %w", c.Name, c.Buckets, len(c.Vocabulary), ErrPlan)
			}
			f.hashed, f.width = true, c.Buckets
			return []feature{f}, nil
		case messages.EncodeNone:
		default:
			return nil, fmt.Errorf("categorical column %q: unknown encoding %q: %w", c.Name, c.Encode, ErrPlan)
		}
		f.vocab = vocabIndex(c.Vocabulary)
		if len(f.vocab) != len(c.Vocabulary) {
			return nil, fmt.Errorf("column %q: the vocabulary repeats a value: %w", c.Name, ErrPlan)
		}
		f.width = len(c.Vocabulary) + 1 // the last slot is out of vocabulary (and NULL)
	default:
		return nil, fmt.Errorf("column %q: unknown kind %q: %w", c.Name, c.Kind, ErrPlan)
	}
	return []feature{f}, nil
}

func vocabIndex(v []string) map[string]int {
	m := make(map[string]int, len(v))
	for i, s := range v {
		m[s] = i
	}
	return m
}

// Apply transforms raw with plan. It compiles the plan on every call; a caller that
// transforms many batches of one job keeps the Transformer from Compile instead.
func Apply(plan *messages.Plan, raw *messages.RawBatch) (*messages.ReadyBatch, error) {
	t, err := Compile(plan)
	if err != nil {
		return nil, err
	}
	return t.Apply(raw)
}

// Apply transforms one raw batch. Errors are *RowError for a row the plan cannot encode,
// or wrap ErrBatch when the batch's columns do not match the plan.
func (t *Transformer) Apply(raw *messages.RawBatch) (*messages.ReadyBatch, error) {
	out := &messages.ReadyBatch{BatchID: raw.BatchID, Last: raw.Last, InputDim: t.inputDim, LabelDim: t.labelDim}
	if err := t.ApplyInto(raw, out); err != nil {
		return nil, err
	}
	return out, nil
}

// ApplyInto is Apply writing into out, reusing its slices when they are large enough.
func (t *Transformer) ApplyInto(raw *messages.RawBatch, out *messages.ReadyBatch) error {
	rows := raw.Rows()
	cols, err := t.match(raw)
	if err != nil {
		return err
	}
	out.BatchID, out.Last, out.InputDim, out.LabelDim = raw.BatchID, raw.Last, t.inputDim, t.labelDim
	out.Keys = append(out.Keys[:0], raw.Keys...)
	out.KeyText = nil
	if t.keyText {
		out.KeyText = raw.KeyText
	}
	out.X = resize(out.X, rows*t.inputDim)
	out.Y = resize(out.Y, rows*t.labelDim)
	clear(out.X)
	clear(out.Y)
	if !t.hasWeight {
		out.W = nil
	}

	// Column by column: each inner loop touches one raw column and one stride of X.
	for fi := range t.features {
		f := &t.features[fi]
		c := cols[fi]
		if f.hashed {
			for r := 0; r < rows; r++ {
				if !c.IsNull(r) { // NULL sets no slot
					out.X[r*t.inputDim+f.at+int(Hash(c.Text[r])%uint32(f.width))] = 1
				}
			}
			continue
		}
		if f.categorical {
			for r := 0; r < rows; r++ {
				slot := f.width - 1
				if !c.IsNull(r) {
					if i, ok := f.vocab[c.Text[r]]; ok {
						slot = i
					}
				}
				out.X[r*t.inputDim+f.at+slot] = 1
			}
			continue
		}
		var err error
		if c.Kind == messages.ColumnFloat32 {
			err = scaleInto(out.X, t.inputDim, c.Float32, c, f, raw)
		} else {
			err = scaleInto(out.X, t.inputDim, c.Float64, c, f, raw)
		}
		if err != nil {
			return err
		}
	}

	if !t.hasLabel {
		return nil
	}
	c := cols[len(t.features)]
	l := &t.label
	for r := 0; r < rows; r++ {
		if c.IsNull(r) {
			return rowError(raw, r, l.name, "is NULL (the label cannot be imputed)")
		}
		switch t.labelEnc {
		case labelNumeric:
			if c.Kind == messages.ColumnFloat32 {
				out.Y[r] = c.Float32[r]
			} else {
				out.Y[r] = float32(c.Float64[r])
			}
		default:
			i, ok := l.vocab[c.Text[r]]
			if !ok {
				return rowError(raw, r, l.name, fmt.Sprintf("has value %q, which is not in the label vocabulary", c.Text[r]))
			}
			if t.labelEnc == labelIndex {
				out.Y[r] = float32(i)
			} else {
				out.Y[r*t.labelDim+i] = 1
			}
		}
	}
	if t.hasWeight {
		return t.sampleWeights(raw, cols[len(t.features)+1], out)
	}
	return nil
}

// sampleWeights writes each row's sample weight to out.W: a finite number >= 0, as the
// planner checked; a row changed since is an error naming its key.
func (t *Transformer) sampleWeights(raw *messages.RawBatch, c *messages.RawColumn, out *messages.ReadyBatch) error {
	// Never nil, even for no rows: the batch says it carries weights.
	out.W = resize(out.W, raw.Rows())
	if out.W == nil {
		out.W = []float32{}
	}
	for r := range out.W {
		var w float32
		if c.Kind == messages.ColumnFloat32 {
			w = c.Float32[r]
		} else {
			w = float32(c.Float64[r])
		}
		switch {
		case c.IsNull(r):
			return &RowError{Key: raw.Keys[r], Column: t.weight.name, Reason: "is NULL (a sample weight must be a finite number >= 0)"}
		case !(w >= 0) || math.IsInf(float64(w), 0):
			return &RowError{Key: raw.Keys[r], Column: t.weight.name, Reason: fmt.Sprintf("is %v (a sample weight must be a finite number >= 0)", w)}
		}
		out.W[r] = w
	}
	return nil
}

// scaleInto writes (x - offset) * factor of row r into the feature's slot of dst's row r
// (or x's six cyclical inputs). The arithmetic is float64 whatever the column carries:
// widening a float32 is exact, so a real column gives the same features whether it travels
// as float32 or as float64.
func scaleInto[T float32 | float64](dst []float32, stride int, vals []T, c *messages.RawColumn, f *feature, raw *messages.RawBatch) error {
	for r, v := range vals {
		x := float64(v)
		null := c.IsNull(r)
		if x-x != 0 { // NaN or ±Inf (a NULL is 0)
			switch {
			case f.nonFinite == messages.NonFiniteNull || f.nonFinite == messages.NonFiniteClip && x != x:
				null = true
			case f.nonFinite == messages.NonFiniteClip && x > 0:
				x = f.max
			case f.nonFinite == messages.NonFiniteClip:
				x = f.min
			default:
				return rowError(raw, r, f.name, fmt.Sprintf("is %v (nonfinite \"error\": choose null or clip)", x))
			}
		}
		if null {
			if !f.hasImpute {
				return rowError(raw, r, f.name, "is NULL and has no imputation")
			}
			x = f.impute
		}
		if f.cyclical {
			Cyclical(dst[r*stride+f.at:r*stride+f.at+messages.CyclicalWidth], x)
			continue
		}
		dst[r*stride+f.at] = float32((x - f.offset) * f.factor)
	}
	return nil
}

// rowError is the error of row r of raw, named by its key.
func rowError(raw *messages.RawBatch, r int, column, reason string) *RowError {
	return &RowError{Key: raw.Keys[r], KeyText: messages.RowKeyText(raw.KeyText, r), Column: column, Reason: reason}
}

// match finds, for each feature and then the label, its raw column, checking kinds and
// lengths so that the loops above can index without bounds surprises.
func (t *Transformer) match(raw *messages.RawBatch) ([]*messages.RawColumn, error) {
	rows := raw.Rows()
	want := len(t.features)
	if t.hasLabel {
		want++
	}
	if t.hasWeight {
		want++
	}
	cols := make([]*messages.RawColumn, want)
	if len(raw.KeyText) > messages.MaxKeyColumns {
		return nil, fmt.Errorf("batch %s: a key of %d columns: %w", raw.BatchID, len(raw.KeyText), ErrBatch)
	}
	for i, kt := range raw.KeyText {
		if len(kt) != rows {
			return nil, fmt.Errorf("batch %s: key column %d has %d values for %d rows: %w", raw.BatchID, i, len(kt), rows, ErrBatch)
		}
	}
	for i := range raw.Columns {
		c := &raw.Columns[i]
		at, ok := t.wantByName[c.Name]
		if !ok {
			return nil, fmt.Errorf("batch %s: column %q is not in the plan: %w", raw.BatchID, c.Name, ErrBatch)
		}
		if cols[at] != nil {
			return nil, fmt.Errorf("batch %s: column %q appears twice: %w", raw.BatchID, c.Name, ErrBatch)
		}
		f := &t.label
		if at < len(t.features) {
			f = &t.features[at]
		} else if at > len(t.features) {
			f = &t.weight
		}
		// A numeric column may travel as either float kind (see ColumnPlan.RawKind).
		var n int
		switch {
		case f.categorical && c.Kind == messages.ColumnText:
			n = len(c.Text)
		case !f.categorical && c.Kind == messages.ColumnFloat64:
			n = len(c.Float64)
		case !f.categorical && c.Kind == messages.ColumnFloat32:
			n = len(c.Float32)
		default:
			want := "float64 or float32"
			if f.categorical {
				want = "text"
			}
			return nil, fmt.Errorf("batch %s: column %q has raw kind %s, the plan wants %s: %w",
				raw.BatchID, c.Name, kindName(c.Kind), want, ErrBatch)
		}
		if n != rows || len(c.Nulls) > (rows+7)/8 {
			return nil, fmt.Errorf("batch %s: column %q has %d values and a %d-byte null bitmap for %d rows: %w",
				raw.BatchID, c.Name, n, len(c.Nulls), rows, ErrBatch)
		}
		cols[at] = c
	}
	for i, c := range cols {
		if c == nil {
			name := t.label.name
			if i < len(t.features) {
				name = t.features[i].name
			} else if i > len(t.features) {
				name = t.weight.name
			}
			return nil, fmt.Errorf("batch %s: column %q is missing: %w", raw.BatchID, name, ErrBatch)
		}
	}
	return cols, nil
}

func kindName(k uint8) string {
	switch k {
	case messages.ColumnFloat64:
		return "float64"
	case messages.ColumnFloat32:
		return "float32"
	case messages.ColumnText:
		return "text"
	}
	return fmt.Sprintf("unknown(%d)", k)
}

func resize(s []float32, n int) []float32 {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]float32, n)
}
