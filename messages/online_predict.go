package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// OnlinePredictRequest is the body of POST /v1/models/{id}:predict, TF Serving's row
// format: one object per row, raw column values by column name (JSON null for NULL).
// Columns the model does not use are ignored.
type OnlinePredictRequest struct {
	Instances []map[string]any `json:"instances"`
}

// OnlinePredictResponse has one prediction per instance, in order.
type OnlinePredictResponse struct {
	Predictions []Prediction `json:"predictions"`
}

// Prediction is one row's prediction. A regression model's is its value, in JSON a bare
// number; a classifier's is an object: the class with the highest probability, that
// probability, and every class's probability by class name.
type Prediction struct {
	Value         float32            `json:"-"`
	Class         string             `json:"class"`
	Probability   float32            `json:"probability"`
	Probabilities map[string]float32 `json:"probabilities"`
}

// IsClass reports whether p is a classifier's prediction.
func (p Prediction) IsClass() bool { return p.Probabilities != nil }

// MarshalJSON writes a number for a value and an object for a class.
func (p Prediction) MarshalJSON() ([]byte, error) {
	if !p.IsClass() {
		return json.Marshal(p.Value)
	}
	type class Prediction
	return json.Marshal(class(p))
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Prediction) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		type class Prediction
		var c class
		if err := json.Unmarshal(b, &c); err != nil {
			return err
		}
		if c.Probabilities == nil {
			return fmt.Errorf("prediction %s: no probabilities", b)
		}
		*p = Prediction(c)
		return nil
	}
	*p = Prediction{}
	return json.Unmarshal(b, &p.Value)
}
