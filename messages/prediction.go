package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Job kinds. A plan's Kind is "" for a training job (so plans stored before there were
// kinds stay training plans).
const (
	JobKindTraining   = ""
	JobKindPrediction = "prediction"
)

// Output modes of a prediction job.
const (
	OutputCreate  = "create"  // the output table must not exist
	OutputAppend  = "append"  // rows are upserted into the table, created when missing
	OutputReplace = "replace" // the table is dropped and created again
)

// Prediction tasks, from the model's label.
const (
	TaskRegression     = "regression"
	TaskClassification = "classification"
)

// Output column names besides the key.
const (
	OutValue         = "value"
	OutClass         = "class"
	OutProbability   = "probability"
	OutProbabilities = "probabilities"
)

// PredictionSpec is what a client submits to score a table with a trained model: which
// model (its training job's id), which rows, and where the predictions go.
type PredictionSpec struct {
	Version int    `json:"version,omitempty"`
	Model   string `json:"model"`
	Source  string `json:"source,omitempty"`
	Table   string `json:"table"`
	// Key is the key column, or up to MaxKeyColumns columns, of any type a training job's
	// key may have; default the model's key.
	Key KeyColumns `json:"key,omitempty"`
	// Where keeps the rows every filter matches, as a training job's where does.
	Where []Filter `json:"where,omitempty"`
	// Output is the table the predictions go to: name or schema.name, each a plain SQL
	// identifier; an unqualified name goes to the scored table's schema. An evaluation
	// (Evaluate true) may have none: it only reports the model's loss and metrics.
	Output string `json:"output,omitempty"`
	Mode   string `json:"mode,omitempty"`
	// Probabilities adds every class's probability as a real[] (classification only).
	Probabilities bool `json:"probabilities,omitempty"`
	// Evaluate: unset evaluates the model when the table holds its label column; false
	// never does (a NULL or unseen label then cannot fail the job); true requires the label.
	Evaluate  *bool `json:"evaluate,omitempty"`
	RangeRows int   `json:"range_rows,omitempty"`
	PageRows  int   `json:"page_rows,omitempty"`
}

// ParsePredictionSpec decodes a JSON prediction spec strictly and checks what can be
// checked without the model and the database.
func ParsePredictionSpec(b []byte) (PredictionSpec, error) {
	var s PredictionSpec
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return PredictionSpec{}, &FieldError{Field: "spec", Reason: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return PredictionSpec{}, &FieldError{Field: "spec", Reason: "trailing data after the JSON object"}
	}
	if s.Version == 0 {
		s.Version = SchemaVersion
	}
	if s.Mode == "" {
		s.Mode = OutputCreate
	}
	if s.RangeRows == 0 {
		s.RangeRows = DefaultRangeRows
	}
	return s, s.Validate()
}

// Validate checks the spec on its own.
func (s PredictionSpec) Validate() error {
	if err := checkVersion("prediction spec", s.Version); err != nil {
		return &FieldError{Field: "version", Reason: err.Error()}
	}
	if err := ValidJobID(s.Model); err != nil {
		return &FieldError{Field: "model", Reason: err.Error()}
	}
	if strings.TrimSpace(s.Table) == "" {
		return &FieldError{Field: "table", Reason: "is required"}
	}
	if s.Output == "" && (s.Evaluate == nil || !*s.Evaluate) {
		return &FieldError{Field: "output", Reason: "is required unless evaluate is true (an evaluation without an output table)"}
	}
	if _, _, err := SplitOutputName(s.Output); s.Output != "" && err != nil {
		return &FieldError{Field: "output", Reason: err.Error()}
	}
	switch s.Mode {
	case OutputCreate, OutputAppend, OutputReplace:
	default:
		return &FieldError{Field: "mode", Reason: fmt.Sprintf("unknown mode %q (want create, append or replace)", s.Mode)}
	}
	if s.RangeRows < 1 {
		return &FieldError{Field: "range_rows", Reason: "must be positive"}
	}
	if s.PageRows < 0 {
		return &FieldError{Field: "page_rows", Reason: "must not be negative"}
	}
	if s.Key != nil {
		if err := s.Key.Check(); err != nil {
			return err
		}
	}
	return CheckWhere(s.Where, 0, 0)
}

// maxIdentifierBytes is PostgreSQL's NAMEDATALEN-1: a longer name would be truncated, and
// the table created would not be the one named.
const maxIdentifierBytes = 63

// SplitOutputName splits "schema.table" or "table" (schema ""). Each part must be a plain
// SQL identifier (a letter or '_', then letters, digits, '_' or '$'; at most 63 bytes): the
// name is quoted wherever it is used, but a name that needs quoting to mean itself is far
// more likely a mistake or an attack than a wish, so it is refused.
func SplitOutputName(name string) (schema, table string, err error) {
	parts := strings.Split(name, ".")
	if name == "" || len(parts) > 2 {
		return "", "", fmt.Errorf("want table or schema.table, got %q", name)
	}
	for _, p := range parts {
		if err := plainIdentifier(p); err != nil {
			return "", "", err
		}
	}
	if len(parts) == 2 {
		return parts[0], parts[1], nil
	}
	return "", parts[0], nil
}

func plainIdentifier(s string) error {
	if s == "" || len(s) > maxIdentifierBytes {
		return fmt.Errorf("name %q: want 1 to %d bytes", s, maxIdentifierBytes)
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '$')) {
			return fmt.Errorf("name %q: only letters, digits, '_' and '$' are allowed, starting with a letter or '_'", s)
		}
	}
	return nil
}

// PredictionPlan is what a prediction plan adds to a Plan: the model, what the scorers
// write and where.
type PredictionPlan struct {
	Model string `msgpack:"model" json:"model"`
	// OutputSchema and OutputTable are empty for an evaluation without an output table.
	OutputSchema string `msgpack:"out_schema" json:"output_schema"`
	OutputTable  string `msgpack:"out_table" json:"output_table"`
	Mode         string `msgpack:"mode" json:"mode"`
	// KeyType is the source key's type (format_type), which the output key column takes.
	KeyType       string `msgpack:"key_type" json:"key_type"`
	Task          string `msgpack:"task" json:"task"`
	Probabilities bool   `msgpack:"probs" json:"probabilities"`
	// Classes are the label's classes (classification), in the model's output order.
	Classes []string `msgpack:"classes" json:"classes,omitempty"`
	// FromLogits says the model's class scores are logits (the probabilities are their
	// softmax, or sigmoid for one output).
	FromLogits bool `msgpack:"from_logits" json:"from_logits,omitempty"`
	// Evaluate is set when the scored table holds the label: the plan's Label is the
	// model's, and the scorers report the loss and metrics on it.
	Evaluate bool `msgpack:"evaluate" json:"evaluate"`
	// Ledger, in OutputSchema, records the batches written when the output table is
	// created without its primary key (modes create and replace): a batch is written once,
	// and the key is added when the job finishes. Empty: the table is keyed from the start
	// (mode append) and each batch is upserted on a redelivery.
	Ledger string `msgpack:"ledger" json:"ledger,omitempty"`
}

// OutputColumns are the prediction columns of the output table after the key, in order,
// with their SQL types.
func (p *PredictionPlan) OutputColumns() (names, types []string) {
	if p.Task == TaskClassification {
		names, types = []string{OutClass, OutProbability}, []string{"text", "real"}
		if p.Probabilities {
			names, types = append(names, OutProbabilities), append(types, "real[]")
		}
		return names, types
	}
	return []string{OutValue}, []string{"real"}
}

// ScoreReport is what a scorer reports once a READY batch of a prediction job is written to
// the output table. It is idempotent: a batch reported twice counts once.
type ScoreReport struct {
	Version  int         `json:"version"`
	ScorerID string      `json:"scorer_id"`
	Batch    BatchID     `json:"batch"`
	Last     bool        `json:"last,omitempty"`
	Keys     KeyChecksum `json:"keys"`
	// Loss and Metrics are the batch's means over its rows when the job evaluates.
	Loss    *float64           `json:"loss,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// ScorerJobs is what GET /v1/scorers/jobs answers: the running prediction jobs.
type ScorerJobs struct {
	Jobs []string `json:"jobs"`
}

// PredictionStatus is a prediction job's part of its JobStatus.
type PredictionStatus struct {
	Model string `json:"model"`
	// Output is the output table as schema.table; empty for an evaluation without one.
	Output string `json:"output"`
	Mode   string `json:"mode"`
	Task   string `json:"task"`
	// RangesScored counts the ranges whose every batch is written.
	RangesScored int `json:"ranges_scored"`
	// Written is the keys written so far (each batch once).
	Written KeyChecksum `json:"written"`
	// Loss and Metrics are the model's on the scored rows, once the job is done, when the
	// table holds the label.
	Loss    *float64           `json:"loss,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
}
