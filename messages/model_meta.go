package messages

import (
	"errors"
	"fmt"
	"time"
)

// ModelMetaVersion is the version of ModelMeta this build writes. It reads every version up
// to this one; a model written by a newer pgtrain is refused rather than misread.
const ModelMetaVersion = 2

// Version 2 added column types (boolean, dates and timestamps, arrays), the cyclical and
// hash encodings and the nonfinite option; a model that uses none of them is written as
// version 1, which older builds read.
func metaVersion(features []ColumnPlan) int {
	for _, f := range features {
		if f.Type != TypeNumber || f.Encode != EncodeNone || f.NonFinite != NonFiniteError {
			return ModelMetaVersion
		}
	}
	return 1
}

// ErrModelMetaVersion is returned for model metadata of a version this build cannot read.
var ErrModelMetaVersion = errors.New("unsupported model metadata version")

// ErrModelMeta is returned for model metadata that does not describe a usable model.
var ErrModelMeta = errors.New("invalid model metadata")

// Label kinds of a trained model.
const (
	// LabelRegression: the model's single output is the predicted value.
	LabelRegression = "regression"
	// LabelClassification: the model's outputs are one score per class, in Classes order
	// (probabilities, or logits when FromLogits is set).
	LabelClassification = "classification"
)

// ModelMeta is the preprocessing and provenance a trained model carries in its model.json
// (as userDefinedMetadata.pgtrain), so that the model can be applied to raw rows without
// the coordinator's plan.
//
// A raw row becomes the model's input by going through Features in order: a numeric column
// writes one float, (x - offset) * factor, with x = impute when the value is NULL (has_impute
// false: NULL is an error); a categorical column writes len(vocabulary)+1 floats, a one-hot
// of the value's index in the vocabulary, or of the last slot (index len(vocabulary), the
// out-of-vocabulary slot) for any other value and for NULL.
type ModelMeta struct {
	Version int    `json:"version"`
	JobID   string `json:"job_id"`
	// Source, Schema, Table and Key name the data the model was trained on.
	Source string `json:"source"`
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Key    string `json:"key"`
	// KeyColumns is a typed key's columns (Key is then the first), nil for an integer key.
	KeyColumns []KeyColumn `json:"key_columns,omitempty"`
	// Features are the input columns in input order.
	Features []ColumnPlan `json:"features"`
	Label    ColumnPlan   `json:"label"`
	// LabelKind is LabelRegression or LabelClassification; Classes are the class names in
	// output order (classification only).
	LabelKind string   `json:"label_kind"`
	Classes   []string `json:"classes,omitempty"`
	// FromLogits says the outputs of a classifier are logits (apply a softmax for
	// probabilities).
	FromLogits bool `json:"from_logits,omitempty"`
	InputDim   int  `json:"input_dim"`
	LabelDim   int  `json:"label_dim"`
	// Spec is the job spec the model was trained with.
	Spec JobSpec `json:"spec"`
	// Rows and Checksum summarise the training rows (validation rows excluded); LastKey is
	// the largest key the job read (training and validation rows) of an integer key, and
	// LastKeyText that key's text per column of a typed key (LastKey is then 0).
	Rows        int64       `json:"rows"`
	Checksum    KeyChecksum `json:"checksum"`
	LastKey     int64       `json:"last_key"`
	LastKeyText []string    `json:"last_key_text,omitempty"`
	// Metrics are the final epoch's: "loss", each compiled metric, and with a validation
	// split "val_loss" and "val_<metric>".
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Epochs is how many epochs the model was trained for, counting those of the model it
	// started from; WarmStart says which model that was.
	Epochs    int        `json:"epochs,omitempty"`
	WarmStart *WarmStart `json:"warm_start,omitempty"`
	// TrainingState names the file holding the training state (TrainingStateFile) when the
	// model was stored with it.
	TrainingState string `json:"training_state,omitempty"`
	// Variant is the sweep variant the model is (its index and overrides); Spec is then
	// that variant's spec.
	Variant *PlanVariant `json:"variant,omitempty"`
}

// ModelMetaFromPlan is the metadata a plan determines; the trainer adds LastKey and
// Metrics.
func ModelMetaFromPlan(p *Plan) ModelMeta {
	m := ModelMeta{
		Version:     metaVersion(p.Features),
		JobID:       p.JobID,
		Source:      p.Spec.Source,
		Schema:      p.Schema,
		Table:       p.Table,
		Key:         p.Key,
		KeyColumns:  p.KeyColumns,
		LastKeyText: p.LastKeyText,
		Features:    p.Features,
		Label:       p.Label,
		LabelKind:   LabelRegression,
		FromLogits:  p.Spec.FromLogits,
		InputDim:    p.InputDim,
		LabelDim:    p.LabelDim,
		Spec:        p.Spec,
		Rows:        p.Expected.Rows,
		Checksum:    p.Expected,
		WarmStart:   p.WarmStart,
		Variant:     p.Variant,
	}
	if p.Spec.Label.Encode != EncodeNone {
		m.LabelKind = LabelClassification
		m.Classes = p.Label.Vocabulary
	}
	return m
}

// Plan rebuilds the part of the training plan that drives the transform of a raw batch
// (columns, widths, the label encoding), for transform.Compile. It has no ranges: a
// prediction job plans its own.
func (m ModelMeta) Plan() *Plan {
	return &Plan{
		Version:  SchemaVersion,
		JobID:    m.JobID,
		Spec:     m.Spec,
		Schema:   m.Schema,
		Table:    m.Table,
		Key:      m.Key,
		Features: m.Features,
		Label:    m.Label,
		InputDim: m.InputDim,
		LabelDim: m.LabelDim,
		Expected: m.Checksum,
	}
}

// OutputDim is the width of one prediction row: 1 for regression, one score per class.
func (m ModelMeta) OutputDim() int {
	if m.LabelKind == LabelClassification {
		return len(m.Classes)
	}
	return 1
}

// Validate checks what a reader relies on: a version this build reads, and features whose
// widths add up to InputDim.
func (m ModelMeta) Validate() error {
	switch {
	case m.Version > ModelMetaVersion:
		return fmt.Errorf("model metadata version %d is newer than this build reads (%d): upgrade pgtrain: %w", m.Version, ModelMetaVersion, ErrModelMetaVersion)
	case m.Version < 1:
		return fmt.Errorf("model metadata version %d: %w", m.Version, ErrModelMetaVersion)
	}
	if len(m.Features) == 0 {
		return fmt.Errorf("features: none: %w", ErrModelMeta)
	}
	width := 0
	seen := make(map[string]bool, len(m.Features))
	for i, f := range m.Features {
		if f.Name == "" {
			return fmt.Errorf("features[%d].name: empty: %w", i, ErrModelMeta)
		}
		if seen[f.Name] {
			return fmt.Errorf("features[%d].name: column %q is listed twice: %w", i, f.Name, ErrModelMeta)
		}
		seen[f.Name] = true
		switch f.Kind {
		case KindNumeric, KindCategorical:
		default:
			return fmt.Errorf("features[%d].kind: %q for column %q (want %s or %s): %w", i, f.Kind, f.Name, KindNumeric, KindCategorical, ErrModelMeta)
		}
		if (f.Encode == EncodeHash && f.Buckets < 1) || (f.IsArray() && len(f.Elements) == 0) {
			return fmt.Errorf("features[%d]: column %q has no width: %w", i, f.Name, ErrModelMeta)
		}
		width += f.Width()
	}
	if width != m.InputDim {
		return fmt.Errorf("input_dim: %d, but the features are %d wide: %w", m.InputDim, width, ErrModelMeta)
	}
	if m.LastKeyText != nil && len(m.LastKeyText) != len(m.KeyColumns) {
		return fmt.Errorf("last_key_text: %d columns for a key of %d: %w", len(m.LastKeyText), len(m.KeyColumns), ErrModelMeta)
	}
	switch m.LabelKind {
	case LabelRegression:
	case LabelClassification:
		if len(m.Classes) == 0 {
			return fmt.Errorf("classes: a classifier needs at least one: %w", ErrModelMeta)
		}
	default:
		return fmt.Errorf("label_kind: %q (want %s or %s): %w", m.LabelKind, LabelRegression, LabelClassification, ErrModelMeta)
	}
	return nil
}

// ModelFileInfo is one stored file of a model.
type ModelFileInfo struct {
	Name   string    `json:"name"`
	Size   int64     `json:"size"`
	Digest string    `json:"digest"`
	Stored time.Time `json:"stored"`
}

// ModelInfo is a stored model: its files and, in the coordinator's answers, its metadata.
type ModelInfo struct {
	JobID string `json:"job_id"`
	// Stored is when its model.json was stored, which made the model complete.
	Stored time.Time       `json:"stored"`
	Files  []ModelFileInfo `json:"files"`
	// Metadata is the model's ModelMeta; MetadataError says why it could not be read (a
	// newer pgtrain wrote it, say).
	Metadata      *ModelMeta `json:"metadata,omitempty"`
	MetadataError string     `json:"metadata_error,omitempty"`
	// Omitted says what the coordinator left out of the metadata for a caller that may not
	// see the data.
	Omitted string `json:"omitted,omitempty"`
}

// File returns the named file's info, if the model has it.
func (m ModelInfo) File(name string) (ModelFileInfo, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return ModelFileInfo{}, false
}
