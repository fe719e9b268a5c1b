package coordinator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"

	"pgtrain/messages"
	"pgtrain/preprocessor/transform"
)

// predictVerb is the custom method of TF Serving's REST API: POST /v1/models/{id}:predict.
const predictVerb = ":predict"

// handleModelPost serves POST /v1/models/{id}:predict; the mux cannot match a wildcard and
// a suffix in one path segment, so the method is split off here.
func (c *Coordinator) handleModelPost(w http.ResponseWriter, r *http.Request) {
	seg := r.PathValue("id")
	id, ok := strings.CutSuffix(seg, predictVerb)
	if !ok {
		c.writeError(w, r, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no route POST %s (want /v1/models/{id}%s)", r.URL.Path, predictVerb)})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.cfg.Limits.PredictBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			c.writeError(w, r, &apiError{status: http.StatusRequestEntityTooLarge, field: "instances",
				msg: fmt.Sprintf("the request is over this coordinator's limit of %d bytes: send fewer instances per request", tooBig.Limit)})
			return
		}
		c.writeError(w, r, &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("reading the request: %v", err)})
		return
	}
	instances, err := decodeInstances(body, c.cfg.Limits.PredictInstances)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	lm, err := c.models.load(r.Context(), id)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	preds, err := lm.predict(instances)
	if err != nil {
		c.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, messages.OnlinePredictResponse{Predictions: preds})
}

// predict applies the model's preprocessing to the instances, through the transform the
// preprocessors run, then the forward pass.
func (lm *loadedModel) predict(instances []map[string]json.RawMessage) ([]messages.Prediction, error) {
	raw, err := instancesBatch(&lm.meta, instances)
	if err != nil {
		return nil, err
	}
	ready, err := lm.tf.Apply(raw)
	if err != nil {
		var re *transform.RowError
		if errors.As(err, &re) {
			return nil, &messages.FieldError{Field: fmt.Sprintf("instances[%d].%s", re.Key, re.Column), Reason: fmt.Sprintf("column %q %s", re.Column, re.Reason)}
		}
		return nil, err
	}
	lm.mu.Lock()
	out, err := lm.net.Predict(ready.X, ready.Rows())
	lm.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return lm.predictions(out, ready.Rows()), nil
}

// predictions shapes the model's outputs (rows × OutputDim) as the response's: the value
// of a regression; for a classifier every class's probability (the outputs, or their
// softmax or sigmoids when the model gives logits) and the most probable class (the first
// of equals).
func (lm *loadedModel) predictions(out []float32, rows int) []messages.Prediction {
	preds := make([]messages.Prediction, rows)
	if lm.meta.LabelKind != messages.LabelClassification {
		for i := range preds {
			preds[i].Value = out[i]
		}
		return preds
	}
	classes := lm.meta.Classes
	k := len(classes)
	for i := range preds {
		probs := probabilities(out[i*k:(i+1)*k], lm.meta.FromLogits, lm.sigmoid)
		p := messages.Prediction{Probabilities: make(map[string]float32, k)}
		best := 0
		for j, v := range probs {
			p.Probabilities[classes[j]] = v
			if v > probs[best] {
				best = j
			}
		}
		p.Class, p.Probability = classes[best], probs[best]
		preds[i] = p
	}
	return preds
}

// probabilities turns one row of outputs into probabilities: as they are, or from logits
// by a softmax (categorical losses) or one sigmoid each (binary crossentropy).
func probabilities(row []float32, fromLogits, sigmoid bool) []float32 {
	if !fromLogits {
		return row
	}
	out := make([]float32, len(row))
	if sigmoid {
		for j, v := range row {
			out[j] = float32(1 / (1 + math.Exp(-float64(v))))
		}
		return out
	}
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - mx)
	}
	for j, v := range row {
		out[j] = float32(math.Exp(float64(v)-mx) / sum)
	}
	return out
}
