package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Consistency modes for reading the source table.
const (
	ConsistencyNone     = ""         // each range is read in its own transaction
	ConsistencySnapshot = "snapshot" // every fetcher joins one exported snapshot
)

// Transform names accepted in a FeatureSpec.
const (
	ImputeNone     = ""
	ImputeMean     = "mean"
	ImputeMedian   = "median"
	ImputeConstant = "constant"

	ScaleNone     = ""
	ScaleStandard = "standard"
	ScaleMinMax   = "minmax"

	EncodeNone   = ""
	EncodeOneHot = "onehot"
	EncodeIndex  = "index" // labels only: the class index as one float (sparse categorical)
	// EncodeCyclical turns a date or timestamp into the sine and cosine of its hour of day,
	// day of week and day of year (six inputs).
	EncodeCyclical = "cyclical"
	// EncodeHash sends a value's text to one of Buckets one-hot slots by its FNV-1a hash.
	EncodeHash = "hash"

	// What a NaN or an infinite value of a numeric feature becomes.
	NonFiniteError = ""     // refused (spelled "error" in a spec)
	NonFiniteNull  = "null" // NULL, then imputed
	NonFiniteClip  = "clip" // ±Infinity becomes the column's finite max or min; NaN becomes NULL
)

// Warm-start modes (JobSpec.Preprocessing and JobSpec.Since).
const (
	PreprocessingReuse     = "reuse"
	PreprocessingRecompute = "recompute"
	SinceLast              = "last"
)

// JobSpec is what a client submits: where the rows are, how to turn them into features, and
// what to train on them. It never holds credentials: Source names a database that the
// coordinator was configured with.
type JobSpec struct {
	Version int    `json:"version,omitempty" msgpack:"v"`
	Source  string `json:"source,omitempty" msgpack:"source"`
	Table   string `json:"table" msgpack:"table"`
	// Key is the column (or up to MaxKeyColumns columns) that orders and identifies rows.
	Key KeyColumns `json:"key" msgpack:"key"`
	// Where keeps the rows every filter matches, for statistics, ranges and reads alike.
	Where     []Filter        `json:"where,omitempty" msgpack:"where,omitempty"`
	Features  []FeatureSpec   `json:"features" msgpack:"features"`
	Label     LabelSpec       `json:"label" msgpack:"label"`
	Model     json.RawMessage `json:"model" msgpack:"model"`
	Optimizer OptimizerSpec   `json:"optimizer,omitempty" msgpack:"optimizer"`
	// Loss may be left out when the model document names one (Keras 3 compile_config,
	// tf.keras 2 training_config, TF.js trainingConfig); so may Metrics and Optimizer.
	Loss string `json:"loss,omitempty" msgpack:"loss"`
	// FromLogits tells a crossentropy loss that the model outputs logits, not probabilities.
	FromLogits bool     `json:"from_logits,omitempty" msgpack:"from_logits"`
	Metrics    []string `json:"metrics,omitempty" msgpack:"metrics"`
	Epochs     int      `json:"epochs,omitempty" msgpack:"epochs"`
	BatchSize  int      `json:"batch_size,omitempty" msgpack:"batch_size"`
	Seed       int64    `json:"seed,omitempty" msgpack:"seed"`
	// ValidationSplit holds out the last fraction of the key ranges (in key order) for
	// validation, evaluated after each epoch.
	ValidationSplit float64 `json:"validation_split,omitempty" msgpack:"validation_split"`
	// Consistency is "" (each range sees the table as of its own read) or "snapshot".
	Consistency string `json:"consistency,omitempty" msgpack:"consistency"`
	// RangeRows is the target number of rows per key range; 0 lets the coordinator choose.
	RangeRows int `json:"range_rows,omitempty" msgpack:"range_rows"`
	// PageRows caps the rows per page (and per message); 0 lets the coordinator size pages
	// from the row width and the bus's max payload.
	PageRows int `json:"page_rows,omitempty" msgpack:"page_rows"`
	// Backend selects the model engine: "go" (default) or "tensorflow".
	Backend string `json:"backend,omitempty" msgpack:"backend"`
	// InitFrom names a finished training job whose stored model the job starts from: its
	// weights, optimizer state and random streams, and its epoch count.
	InitFrom string `json:"init_from,omitempty" msgpack:"init_from,omitempty"`
	// Preprocessing, with InitFrom, is "reuse" (the stored model's transforms, no new
	// statistics; the default) or "recompute" (statistics of the rows this job reads).
	Preprocessing string `json:"preprocessing,omitempty" msgpack:"preprocessing,omitempty"`
	// Since, with InitFrom, is "last": read only the keys after the last key the stored
	// model read.
	Since string `json:"since,omitempty" msgpack:"since,omitempty"`
	// Training controls (training_controls.go): Keras's callbacks and class weights.
	EarlyStopping     *EarlyStoppingSpec     `json:"early_stopping,omitempty" msgpack:"early_stopping,omitempty"`
	ModelCheckpoint   *ModelCheckpointSpec   `json:"model_checkpoint,omitempty" msgpack:"model_checkpoint,omitempty"`
	ReduceLROnPlateau *ReduceLROnPlateauSpec `json:"reduce_lr_on_plateau,omitempty" msgpack:"reduce_lr_on_plateau,omitempty"`
	ClassWeight       *ClassWeightSpec       `json:"class_weight,omitempty" msgpack:"class_weight,omitempty"`
	// SampleWeightColumn names a numeric column whose value weighs each row's loss, as
	// Keras's fit(sample_weight=...); with ClassWeight the two multiply.
	SampleWeightColumn string `json:"sample_weight_column,omitempty" msgpack:"sample_weight_column,omitempty"`
	// Sweep trains one model per variant on one read of the data (sweep.go); SweepMonitor
	// and SweepMode choose the best variant, as a Keras callback's monitor and mode.
	Sweep        SweepVariants `json:"sweep,omitempty" msgpack:"sweep,omitempty"`
	SweepMonitor string        `json:"sweep_monitor,omitempty" msgpack:"sweep_monitor,omitempty"`
	SweepMode    string        `json:"sweep_mode,omitempty" msgpack:"sweep_mode,omitempty"`
}

// FeatureSpec says how one column becomes one or more input features.
type FeatureSpec struct {
	Column      string   `json:"column" msgpack:"column"`
	Impute      string   `json:"impute,omitempty" msgpack:"impute"`
	ImputeValue *float64 `json:"impute_value,omitempty" msgpack:"impute_value"`
	Scale       string   `json:"scale,omitempty" msgpack:"scale"`
	Encode      string   `json:"encode,omitempty" msgpack:"encode"`
	// VocabSize caps a one-hot vocabulary to the most frequent values; every other value
	// (and NULL) goes to one extra out-of-vocabulary slot.
	VocabSize int `json:"vocab_size,omitempty" msgpack:"vocab_size"`
	// Buckets is the number of one-hot slots of a hashed column.
	Buckets int `json:"buckets,omitempty" msgpack:"buckets,omitempty"`
	// NonFinite says what NaN and ±Infinity become: "error" (the default), "null" or "clip".
	NonFinite string `json:"nonfinite,omitempty" msgpack:"nonfinite,omitempty"`
}

// NonFiniteMode is NonFinite with "error" spelled as NonFiniteError.
func (f FeatureSpec) NonFiniteMode() string {
	if f.NonFinite == "error" {
		return NonFiniteError
	}
	return f.NonFinite
}

// LabelSpec names the target column. Encode is "" for a numeric target, "onehot" for
// categorical crossentropy, "index" for sparse categorical crossentropy.
type LabelSpec struct {
	Column    string `json:"column" msgpack:"column"`
	Encode    string `json:"encode,omitempty" msgpack:"encode"`
	VocabSize int    `json:"vocab_size,omitempty" msgpack:"vocab_size"`
}

// UnmarshalJSON accepts either "column" or {"column": ..., "encode": ...}.
func (l *LabelSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &l.Column)
	}
	type plain LabelSpec
	return json.Unmarshal(b, (*plain)(l))
}

// OptimizerSpec configures the optimizer; zero fields take the Keras defaults.
type OptimizerSpec struct {
	Name         string  `json:"name,omitempty" msgpack:"name"`
	LearningRate float64 `json:"learning_rate,omitempty" msgpack:"learning_rate"`
	Momentum     float64 `json:"momentum,omitempty" msgpack:"momentum"`
	Nesterov     bool    `json:"nesterov,omitempty" msgpack:"nesterov"`
	Beta1        float64 `json:"beta_1,omitempty" msgpack:"beta_1"`
	Beta2        float64 `json:"beta_2,omitempty" msgpack:"beta_2"`
	Epsilon      float64 `json:"epsilon,omitempty" msgpack:"epsilon"`
	Rho          float64 `json:"rho,omitempty" msgpack:"rho"`
	WeightDecay  float64 `json:"weight_decay,omitempty" msgpack:"weight_decay"`
	ClipNorm     float64 `json:"clipnorm,omitempty" msgpack:"clipnorm"`
	// Schedule varies the learning rate with the step (Keras's learning-rate schedules).
	Schedule *ScheduleSpec `json:"schedule,omitempty" msgpack:"schedule,omitempty"`
}

// Defaults applied by WithDefaults.
const (
	DefaultEpochs    = 5
	DefaultBatchSize = 256
	DefaultRangeRows = 50_000
)

// FieldError names the spec field that is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ParseJobSpec decodes a JSON job spec strictly (unknown fields are errors) and checks what
// can be checked without a database.
func ParseJobSpec(b []byte) (JobSpec, error) {
	var s JobSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		if fe := (*FieldError)(nil); errors.As(err, &fe) {
			return JobSpec{}, fe // a sweep variant names itself
		}
		return JobSpec{}, &FieldError{Field: "spec", Reason: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return JobSpec{}, &FieldError{Field: "spec", Reason: "trailing data after the JSON object"}
	}
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return JobSpec{}, err
	}
	return s, nil
}

// WithDefaults returns a copy with unset fields filled in.
func (s JobSpec) WithDefaults() JobSpec {
	if s.Version == 0 {
		s.Version = SchemaVersion
	}
	if s.Epochs == 0 {
		s.Epochs = DefaultEpochs
	}
	if s.BatchSize == 0 {
		s.BatchSize = DefaultBatchSize
	}
	if s.RangeRows == 0 {
		s.RangeRows = DefaultRangeRows
	}
	if s.Backend == "" {
		s.Backend = "go"
	}
	if s.Optimizer.Name == "" {
		s.Optimizer.Name = "adam"
	}
	if s.InitFrom != "" && s.Preprocessing == "" {
		s.Preprocessing = PreprocessingReuse
	}
	return s.withControlDefaults().withSweepDefaults()
}

// Validate checks the spec on its own; the coordinator checks names against the database.
func (s JobSpec) Validate() error {
	if err := checkVersion("job spec", s.Version); err != nil {
		return &FieldError{Field: "version", Reason: err.Error()}
	}
	if strings.TrimSpace(s.Table) == "" {
		return &FieldError{Field: "table", Reason: "is required"}
	}
	if err := s.Key.Check(); err != nil {
		return err
	}
	if err := CheckWhere(s.Where, 0, 0); err != nil {
		return err
	}
	if len(s.Features) == 0 {
		return &FieldError{Field: "features", Reason: "at least one feature column is required"}
	}
	seen := map[string]bool{}
	for i, f := range s.Features {
		field := fmt.Sprintf("features[%d]", i)
		if strings.TrimSpace(f.Column) == "" {
			return &FieldError{Field: field + ".column", Reason: "is required"}
		}
		if seen[f.Column] {
			return &FieldError{Field: field + ".column", Reason: fmt.Sprintf("column %q is listed twice", f.Column)}
		}
		seen[f.Column] = true
		switch f.Impute {
		case ImputeNone, ImputeMean, ImputeMedian:
		case ImputeConstant:
			if f.ImputeValue == nil && f.Encode == EncodeNone {
				return &FieldError{Field: field + ".impute_value", Reason: "is required with impute \"constant\""}
			}
		default:
			return &FieldError{Field: field + ".impute", Reason: fmt.Sprintf("unknown imputation %q (want mean, median or constant)", f.Impute)}
		}
		switch f.Scale {
		case ScaleNone, ScaleStandard, ScaleMinMax:
		default:
			return &FieldError{Field: field + ".scale", Reason: fmt.Sprintf("unknown scaling %q (want standard or minmax)", f.Scale)}
		}
		switch f.Encode {
		case EncodeNone, EncodeCyclical:
			if f.Encode == EncodeCyclical && f.Scale != ScaleNone {
				return &FieldError{Field: field + ".scale", Reason: "cannot scale a cyclical column: its sines and cosines are in [-1, 1]"}
			}
		case EncodeOneHot, EncodeHash:
			if f.Scale != ScaleNone {
				return &FieldError{Field: field + ".scale", Reason: fmt.Sprintf("cannot scale a %s encoded column", f.Encode)}
			}
			if f.Impute == ImputeMean || f.Impute == ImputeMedian {
				return &FieldError{Field: field + ".impute", Reason: fmt.Sprintf("a %s column encodes NULL itself; mean and median do not apply", f.Encode)}
			}
		default:
			return &FieldError{Field: field + ".encode", Reason: fmt.Sprintf("unknown encoding %q (want onehot, hash or cyclical)", f.Encode)}
		}
		if f.VocabSize < 0 {
			return &FieldError{Field: field + ".vocab_size", Reason: "must not be negative"}
		}
		switch {
		case f.Encode == EncodeHash && f.Buckets < 1:
			return &FieldError{Field: field + ".buckets", Reason: "is required with encode \"hash\" (at least 1)"}
		case f.Encode != EncodeHash && f.Buckets != 0:
			return &FieldError{Field: field + ".buckets", Reason: "applies only to encode \"hash\""}
		case f.Encode == EncodeHash && f.VocabSize != 0:
			return &FieldError{Field: field + ".vocab_size", Reason: "a hashed column has buckets, not a vocabulary"}
		}
		switch f.NonFinite {
		case NonFiniteError, "error", NonFiniteNull, NonFiniteClip:
		default:
			return &FieldError{Field: field + ".nonfinite", Reason: fmt.Sprintf("unknown option %q (want error, null or clip)", f.NonFinite)}
		}
		if f.NonFiniteMode() != NonFiniteError && (f.Encode == EncodeOneHot || f.Encode == EncodeHash) {
			return &FieldError{Field: field + ".nonfinite", Reason: fmt.Sprintf("applies to numeric columns, not to a %s encoded one", f.Encode)}
		}
	}
	if strings.TrimSpace(s.Label.Column) == "" {
		return &FieldError{Field: "label", Reason: "is required"}
	}
	if slices.Contains(s.Key, s.Label.Column) || seen[s.Label.Column] {
		return &FieldError{Field: "label", Reason: fmt.Sprintf("column %q is also the key or a feature", s.Label.Column)}
	}
	if s.Label.VocabSize < 0 {
		return &FieldError{Field: "label.vocab_size", Reason: "must not be negative"}
	}
	if c := s.SampleWeightColumn; c != "" && (slices.Contains(s.Key, c) || seen[c] || c == s.Label.Column) {
		return &FieldError{Field: "sample_weight_column", Reason: fmt.Sprintf("column %q is also the key, a feature or the label", c)}
	}
	switch s.Label.Encode {
	case EncodeNone, EncodeOneHot, EncodeIndex:
	default:
		return &FieldError{Field: "label.encode", Reason: fmt.Sprintf("unknown encoding %q (want onehot or index)", s.Label.Encode)}
	}
	if len(bytes.TrimSpace(s.Model)) == 0 {
		return &FieldError{Field: "model", Reason: "is required (a layer list or a Keras model.to_json() document)"}
	}
	if s.Epochs < 1 {
		return &FieldError{Field: "epochs", Reason: "must be at least 1"}
	}
	if s.BatchSize < 1 {
		return &FieldError{Field: "batch_size", Reason: "must be at least 1"}
	}
	if s.ValidationSplit < 0 || s.ValidationSplit >= 1 {
		return &FieldError{Field: "validation_split", Reason: "must be in [0, 1)"}
	}
	switch s.Consistency {
	case ConsistencyNone, ConsistencySnapshot:
	default:
		return &FieldError{Field: "consistency", Reason: fmt.Sprintf("unknown mode %q (want snapshot or leave it out)", s.Consistency)}
	}
	if s.RangeRows < 1 {
		return &FieldError{Field: "range_rows", Reason: "must be positive"}
	}
	if s.PageRows < 0 {
		return &FieldError{Field: "page_rows", Reason: "must not be negative"}
	}
	switch s.Backend {
	case "go", "tensorflow":
	default:
		return &FieldError{Field: "backend", Reason: fmt.Sprintf("unknown backend %q (want go or tensorflow)", s.Backend)}
	}
	if err := s.validateWarmStart(); err != nil {
		return err
	}
	if err := s.validateControls(); err != nil {
		return err
	}
	return s.validateSweep()
}

// validateWarmStart checks init_from, preprocessing and since on their own; the coordinator
// checks them against the stored model.
func (s JobSpec) validateWarmStart() error {
	if s.InitFrom == "" {
		switch {
		case s.Since != "":
			return &FieldError{Field: "since", Reason: "needs init_from: the keys after the last key of which stored model?"}
		case s.Preprocessing != "":
			return &FieldError{Field: "preprocessing", Reason: "needs init_from: it says whose preprocessing the job reuses"}
		}
		return nil
	}
	if err := ValidJobID(s.InitFrom); err != nil {
		return &FieldError{Field: "init_from", Reason: err.Error()}
	}
	switch s.Preprocessing {
	case PreprocessingReuse, PreprocessingRecompute:
	default:
		return &FieldError{Field: "preprocessing", Reason: fmt.Sprintf("unknown mode %q (want reuse or recompute)", s.Preprocessing)}
	}
	switch s.Since {
	case "", SinceLast:
	default:
		return &FieldError{Field: "since", Reason: fmt.Sprintf("unknown value %q (want last, or leave it out to read every row)", s.Since)}
	}
	return nil
}

// SpecLimits are upper bounds a coordinator puts on the numbers of a spec, so one request
// cannot make it (or the workers) allocate without bound. Zero means no bound.
type SpecLimits struct {
	Epochs    int
	BatchSize int
	PageRows  int
	VocabSize int
	// Filters bounds the filters of `where`, InValues the values of one "in" list.
	Filters  int
	InValues int
	// ClassWeights bounds the entries of class_weight, ScheduleBoundaries those of a
	// PiecewiseConstantDecay schedule.
	ClassWeights       int
	ScheduleBoundaries int
	// SweepVariants bounds the variants of sweep.
	SweepVariants int
}

// CheckLimits refuses a field over its bound, naming the field and the bound. Call it on a
// spec after WithDefaults.
func (s JobSpec) CheckLimits(l SpecLimits) error {
	over := func(field string, v, limit int) error {
		if limit > 0 && v > limit {
			return &FieldError{Field: field, Reason: fmt.Sprintf("%d is over this coordinator's limit of %d", v, limit)}
		}
		return nil
	}
	if err := over("epochs", s.Epochs, l.Epochs); err != nil {
		return err
	}
	if err := over("batch_size", s.BatchSize, l.BatchSize); err != nil {
		return err
	}
	if err := over("page_rows", s.PageRows, l.PageRows); err != nil {
		return err
	}
	for i, f := range s.Features {
		if err := over(fmt.Sprintf("features[%d].vocab_size", i), f.VocabSize, l.VocabSize); err != nil {
			return err
		}
		if err := over(fmt.Sprintf("features[%d].buckets", i), f.Buckets, l.VocabSize); err != nil {
			return err
		}
	}
	if err := CheckWhere(s.Where, l.Filters, l.InValues); err != nil {
		return err
	}
	if err := over("label.vocab_size", s.Label.VocabSize, l.VocabSize); err != nil {
		return err
	}
	if err := s.checkControlLimits(l); err != nil {
		return err
	}
	return s.checkSweepLimits(l)
}
