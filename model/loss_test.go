package model_test

import (
	"testing"

	"pgtrain/model"
)

func TestCheckSparseLabels(t *testing.T) {
	tests := []struct {
		name    string
		y       []float32
		wantErr bool
	}{
		{name: "valid", y: []float32{0, 2, 1}},
		{name: "none", y: nil},
		{name: "negative", y: []float32{0, -1}, wantErr: true},
		{name: "too large", y: []float32{3}, wantErr: true},
		{name: "fraction", y: []float32{1.5}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := model.CheckSparseLabels(tc.y, 3); (err != nil) != tc.wantErr {
				t.Fatalf("CheckSparseLabels(%v) = %v, wantErr %v", tc.y, err, tc.wantErr)
			}
		})
	}
}
