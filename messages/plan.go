package messages

import (
	"fmt"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
)

// Column kinds in a plan.
const (
	KindNumeric     = "numeric"
	KindCategorical = "categorical"
)

// Plan is what the coordinator derives from a JobSpec and the database: the checked columns
// with their statistics, the key ranges, and the sizes every role agrees on. It is written
// once, before any range is leased, and never changes.
type Plan struct {
	Version int     `msgpack:"v" json:"version"`
	JobID   string  `msgpack:"job" json:"job_id"`
	Spec    JobSpec `msgpack:"spec" json:"spec"`
	// Kind is JobKindTraining or JobKindPrediction; trainers take only training jobs.
	Kind string `msgpack:"kind,omitempty" json:"kind,omitempty"`
	// Prediction is set on a prediction plan: its Features are the model's as trained (no
	// new statistics) and its Label is the model's when the table holds it, else empty.
	Prediction *PredictionPlan `msgpack:"prediction,omitempty" json:"prediction,omitempty"`
	// Table is the schema-qualified relation the fetchers read.
	Schema string `msgpack:"schema" json:"schema"`
	Table  string `msgpack:"table" json:"table"`
	Key    string `msgpack:"key_col" json:"key"`
	// KeyColumns is set for a typed key (any key but one integer column): its columns in
	// order, whose text forms bound the ranges and whose hash the checksums sum. Key is
	// then its first column.
	KeyColumns []KeyColumn `msgpack:"key_columns,omitempty" json:"key_columns,omitempty"`
	// LastKeyText is, for a typed key, the text of the greatest key of the job's rows: the
	// last key the model reads, which since "last" continues after. An integer key's is
	// noted by the trainer as it reads (ModelMeta.LastKey).
	LastKeyText []string `msgpack:"last_key_text,omitempty" json:"last_key_text,omitempty"`
	// Where is the spec's filters resolved: every read of the table applies them.
	Where []PlannedFilter `msgpack:"where,omitempty" json:"where,omitempty"`
	// Features in spec order, then the label.
	Features []ColumnPlan `msgpack:"features" json:"features"`
	Label    ColumnPlan   `msgpack:"label" json:"label"`
	InputDim int          `msgpack:"input_dim" json:"input_dim"`
	// LabelDim is the width of a label row after encoding (1, or the classes for one-hot).
	LabelDim int `msgpack:"label_dim" json:"label_dim"`
	// SampleWeight is the spec's sample_weight_column as a numeric column read as it is (no
	// impute, no scaling), nil without one.
	SampleWeight *ColumnPlan `msgpack:"sample_weight,omitempty" json:"sample_weight,omitempty"`
	// ClassWeights is the spec's class_weight resolved to one weight per class index (the
	// label's classes in order; for a 0/1 label, classes 0 and 1), or nil.
	ClassWeights []float64 `msgpack:"class_weights,omitempty" json:"class_weights,omitempty"`
	// Ranges in key order. Validation ranges are the last ValidationRanges of them.
	Ranges           []KeyRange `msgpack:"ranges" json:"ranges"`
	ValidationRanges int        `msgpack:"validation_ranges" json:"validation_ranges"`
	PageRows         int        `msgpack:"page_rows" json:"page_rows"`
	// Replay is true when READY can hold a whole epoch: only epoch 0 is read from
	// PostgreSQL and later epochs read the same READY batches again.
	Replay bool `msgpack:"replay" json:"replay"`
	// Window is how many ranges, in the trainer's order, may be leased ahead of it.
	Window int `msgpack:"window" json:"window"`
	// WarmStart is set when the job starts from a stored model (Spec.InitFrom).
	WarmStart *WarmStart `msgpack:"warm_start,omitempty" json:"warm_start,omitempty"`
	// Snapshot is the exported snapshot id fetchers join, when Spec.Consistency is snapshot.
	Snapshot string `msgpack:"snapshot" json:"snapshot,omitempty"`
	// Expected is what SQL says the trainer must see per epoch (training ranges only, and
	// validation ranges separately).
	Expected      KeyChecksum `msgpack:"expected" json:"expected"`
	ExpectedValid KeyChecksum `msgpack:"expected_valid" json:"expected_validation"`
	// Variant is set only on the plan a trainer derives for one variant of a sweep
	// (ForVariant). Never stored.
	Variant *PlanVariant `msgpack:"-" json:"-"`
	// Omitted says what the coordinator left out of a plan it returned over HTTP to a
	// caller that may not see the data; never stored.
	Omitted string `msgpack:"-" json:"omitted,omitempty"`
}

// ColumnPlan is one column with the statistics and transforms the preprocessors apply.
type ColumnPlan struct {
	Name   string `msgpack:"name" json:"name"`
	PGType string `msgpack:"pg_type" json:"pg_type"`
	Kind   string `msgpack:"kind" json:"kind"`
	// Impute is the value that replaces NULL for a numeric column; HasImpute false means
	// NULL is an error naming the row key and the column.
	HasImpute bool    `msgpack:"has_impute" json:"has_impute"`
	Impute    float64 `msgpack:"impute" json:"impute"`
	// A numeric value x becomes (x - Offset) * Factor.
	Offset float64 `msgpack:"offset" json:"offset"`
	Factor float64 `msgpack:"factor" json:"factor"`
	// Vocabulary for one-hot and index encoding; a categorical feature has one more slot
	// for everything else (and NULL). A categorical label has no such slot.
	Vocabulary []string `msgpack:"vocab" json:"vocabulary,omitempty"`
	Stats      Stats    `msgpack:"stats" json:"stats"`
	// Type says how a numeric column's values become numbers: TypeNumber, or one of the
	// types below. Elements holds the per-element transforms of a fixed-length array.
	Type     string        `msgpack:"type,omitempty" json:"type,omitempty"`
	Elements []ElementPlan `msgpack:"elements,omitempty" json:"elements,omitempty"`
	// Encode is EncodeCyclical (a date or timestamp as six inputs) or EncodeHash (a
	// categorical column as Buckets one-hot slots, by FNV-1a); "" otherwise.
	Encode  string `msgpack:"encode,omitempty" json:"encode,omitempty"`
	Buckets int    `msgpack:"buckets,omitempty" json:"buckets,omitempty"`
	// NonFinite is what NaN and ±Infinity become (NonFiniteError, NonFiniteNull or
	// NonFiniteClip); clipping takes Stats.Min and Stats.Max (or each element's).
	NonFinite string `msgpack:"nonfinite,omitempty" json:"nonfinite,omitempty"`
}

// Value types of a numeric column (ColumnPlan.Type). Dates and timestamps are seconds since
// 1970-01-01 00:00 UTC: a timestamptz is the instant, a timestamp and a date are their
// wall-clock time read as UTC. A boolean is 0 or 1.
const (
	TypeNumber      = ""
	TypeBoolean     = "boolean"
	TypeDate        = "date"
	TypeTimestamp   = "timestamp"
	TypeTimestampTZ = "timestamptz"
	TypeFloat4Array = "real[]"
	TypeFloat8Array = "float8[]"
)

// ElementPlan is the transform of one element of a fixed-length array column, as a
// ColumnPlan's of a scalar one.
type ElementPlan struct {
	HasImpute bool    `msgpack:"has_impute" json:"has_impute"`
	Impute    float64 `msgpack:"impute" json:"impute"`
	Offset    float64 `msgpack:"offset" json:"offset"`
	Factor    float64 `msgpack:"factor" json:"factor"`
	Stats     Stats   `msgpack:"stats" json:"stats"`
}

// IsArray reports whether the column is a fixed-length array.
func (c ColumnPlan) IsArray() bool { return c.Type == TypeFloat4Array || c.Type == TypeFloat8Array }

// CyclicalWidth is how many inputs a cyclical column takes: sine and cosine of the hour
// of day, the day of week and the day of year.
const CyclicalWidth = 6

// Width is the number of floats the column contributes to a feature row.
func (c ColumnPlan) Width() int {
	switch {
	case c.Encode == EncodeHash:
		return c.Buckets
	case c.Kind == KindCategorical:
		return len(c.Vocabulary) + 1
	case c.Encode == EncodeCyclical:
		return CyclicalWidth
	case c.IsArray():
		return len(c.Elements)
	}
	return 1
}

// RawName is the name of the raw column that carries element j (0-based) of an array
// column: "name[j+1]", as PostgreSQL subscripts it.
func RawName(column string, j int) string { return column + "[" + strconv.Itoa(j+1) + "]" }

// RawKind is the raw column kind the column travels as on RAW, which the fetchers and the
// page sizing agree on: text for a categorical column; for a numeric one float32 when its
// type is real or smallint (every value is a float32 exactly), otherwise float64. PGType is
// what format_type names the column's type: a domain goes by its own name and so as float64.
func (c ColumnPlan) RawKind() uint8 {
	if c.Kind == KindCategorical {
		return ColumnText
	}
	switch c.Type {
	case TypeBoolean, TypeFloat4Array:
		return ColumnFloat32
	case TypeNumber:
		switch c.PGType {
		case "real", "smallint":
			return ColumnFloat32
		}
	}
	return ColumnFloat64
}

// Stats are computed by SQL aggregates in one pass over the table.
type Stats struct {
	Count  int64   `msgpack:"count" json:"count"`
	Nulls  int64   `msgpack:"nulls" json:"nulls"`
	Mean   float64 `msgpack:"mean" json:"mean"`
	StdDev float64 `msgpack:"stddev" json:"stddev"`
	Min    float64 `msgpack:"min" json:"min"`
	Max    float64 `msgpack:"max" json:"max"`
	Median float64 `msgpack:"median" json:"median"`
	// NonFinite counts the NaN and ±Infinity values, which the other statistics leave out
	// (Count counts the finite values only).
	NonFinite int64 `msgpack:"nonfinite,omitempty" json:"nonfinite,omitempty"`
}

// KeyRange is the closed key interval [Lo, Hi]. The first range starts at the smallest
// int64 and the last ends at the largest, so rows inserted outside the planned bounds still
// belong to exactly one range.
type KeyRange struct {
	Index int   `msgpack:"i" json:"index"`
	Lo    int64 `msgpack:"lo" json:"lo"`
	Hi    int64 `msgpack:"hi" json:"hi"`
	// After and Through bound a range of a typed key instead: the keys after After (none for
	// the first range) up to and including Through (none for the last), as key text.
	After   []string `msgpack:"after,omitempty" json:"after,omitempty"`
	Through []string `msgpack:"through,omitempty" json:"through,omitempty"`
	// Rows is the planned row count (exact when the plan was computed).
	Rows int64 `msgpack:"rows" json:"rows"`
}

// KeyChecksum is an order-independent summary of a set of keys: the count, and the sums of
// the keys and of their squares modulo 2^64. SQL computes the same numbers with numeric.
type KeyChecksum struct {
	Rows  int64  `msgpack:"rows" json:"rows"`
	Sum   uint64 `msgpack:"sum" json:"sum"`
	SumSq uint64 `msgpack:"sum_sq" json:"sum_sq"`
}

// Add folds one key into the checksum: an integer key itself, a typed key its KeyHash.
func (c *KeyChecksum) Add(key int64) {
	c.Rows++
	c.Sum += uint64(key)
	c.SumSq += uint64(key) * uint64(key)
}

// Merge folds another checksum into c.
func (c *KeyChecksum) Merge(o KeyChecksum) {
	c.Rows += o.Rows
	c.Sum += o.Sum
	c.SumSq += o.SumSq
}

// TrainingRanges is the number of ranges that are trained on (the rest validate).
func (p *Plan) TrainingRanges() int { return len(p.Ranges) - p.ValidationRanges }

// Passes is how many times the ranges are read from PostgreSQL.
func (p *Plan) Passes() int {
	if p.Replay {
		return 1
	}
	return p.Spec.Epochs
}

// PassOf maps a training epoch to the read pass whose READY batches it consumes.
func (p *Plan) PassOf(epoch int) int {
	if p.Replay {
		return 0
	}
	return epoch
}

// EncodePlan and DecodePlan are the plan's msgpack form (stored in the JetStream KV bucket).
func EncodePlan(p *Plan) ([]byte, error) {
	p.Version = SchemaVersion
	return msgpack.Marshal(p)
}

func DecodePlan(b []byte) (*Plan, error) {
	if err := CheckLengths(b); err != nil {
		return nil, fmt.Errorf("decoding plan: %w", err)
	}
	var p Plan
	if err := msgpack.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decoding plan: %w", err)
	}
	if err := checkVersion("plan", p.Version); err != nil {
		return nil, err
	}
	return &p, nil
}

// WeightDim is the number of sample weights a READY row carries: 1 for a training job with
// a sample weight column, else 0.
func (p *Plan) WeightDim() int {
	if p.SampleWeight != nil && p.Kind != JobKindPrediction {
		return 1
	}
	return 0
}

// HasLabel reports whether the plan reads a label: always for training, and for prediction
// only when the scored table holds the model's label column.
func (p *Plan) HasLabel() bool { return p.Kind != JobKindPrediction || p.Label.Name != "" }
