package model

import (
	"fmt"
	"slices"

	"pgtrain/messages"
)

// WithVariant is the model of a sweep variant: spec with the variant's Dense sizes (one per
// Dense layer, in order) and Dropout rate (of every Dropout layer). The error names the
// variant's field ("units", "dropout") that does not fit the model.
func (s *Spec) WithVariant(v messages.SweepVariant) (*Spec, error) {
	out := *s
	out.Layers = slices.Clone(s.Layers)
	dense, dropout := 0, 0
	for i := range out.Layers {
		l := &out.Layers[i]
		switch l.Type {
		case LayerDense:
			if v.Units != nil && dense < len(v.Units) {
				l.Units = v.Units[dense]
			}
			dense++
		case LayerDropout:
			if v.Dropout != nil {
				l.Rate = *v.Dropout
			}
			dropout++
		}
	}
	if v.Units != nil && len(v.Units) != dense {
		return nil, FieldError{Field: "units", Reason: fmt.Sprintf("%d sizes for a model of %d Dense layers: give one per Dense layer", len(v.Units), dense)}
	}
	if v.Dropout != nil && dropout == 0 {
		return nil, FieldError{Field: "dropout", Reason: "the model has no Dropout layer"}
	}
	return &out, nil
}
