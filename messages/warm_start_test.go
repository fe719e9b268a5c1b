package messages

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestWarmStartFieldsNameTheField(t *testing.T) {
	tests := []struct {
		name      string
		extra     string
		wantField string // "" for a valid spec
	}{
		{"init_from alone", `"init_from": "houses-1a2b3c4d"`, ""},
		{"since last", `"init_from": "houses-1a2b3c4d", "since": "last"`, ""},
		{"recompute", `"init_from": "houses-1a2b3c4d", "preprocessing": "recompute"`, ""},
		{"since without init_from", `"since": "last"`, "since"},
		{"preprocessing without init_from", `"preprocessing": "reuse"`, "preprocessing"},
		{"unknown since", `"init_from": "houses-1a2b3c4d", "since": "yesterday"`, "since"},
		{"unknown preprocessing", `"init_from": "houses-1a2b3c4d", "preprocessing": "fresh"`, "preprocessing"},
		{"malformed init_from", `"init_from": "../etc"`, "init_from"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(goodSpec, `"loss": "mse"`, `"loss": "mse", `+tt.extra, 1)
			s, err := ParseJobSpec([]byte(doc))
			if tt.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.Preprocessing == "" {
					t.Fatal("preprocessing has no default with init_from")
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("err = %v, want a FieldError on %q", err, tt.wantField)
			}
		})
	}
}

// A warm start numbers its epochs on from the stored model's: the range order of its epoch
// e is the order of epoch InitialEpoch+e of a job that started from fresh weights.
func TestWarmStartContinuesTheEpochNumbers(t *testing.T) {
	p := &Plan{Spec: JobSpec{Seed: 9}, Ranges: make([]KeyRange, 12), ValidationRanges: 2}
	w := *p
	w.WarmStart = &WarmStart{InitialEpoch: 3}
	for e := range 3 {
		if got, want := w.EpochOrder(e), p.EpochOrder(3+e); !slices.Equal(got, want) {
			t.Fatalf("warm epoch %d order %v, want fresh epoch %d's %v", e, got, 3+e, want)
		}
	}
	if slices.Equal(w.EpochOrder(0), p.EpochOrder(0)) {
		t.Fatal("the warm start's first epoch has the fresh first epoch's order: the test proves nothing")
	}
}
