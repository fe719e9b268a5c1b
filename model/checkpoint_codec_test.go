package model_test

import (
	"errors"
	"slices"
	"testing"

	"pgtrain/model"
)

var codecMagic = []byte("PGTRAINTEST1")

type codecHeader struct {
	Note  string `json:"note"`
	Sizes []int  `json:"sizes"`
}

func sampleCodec() (codecHeader, [][]float32) {
	tensors := [][]float32{{1, -2.5, 3e-8}, {}, {0.1, 0.2}}
	return codecHeader{Note: "n", Sizes: []int{3, 0, 2}}, tensors
}

func TestCheckpointCodecRoundTrip(t *testing.T) {
	h, tensors := sampleCodec()
	b, err := model.EncodeCheckpoint(codecMagic, h, tensors)
	if err != nil {
		t.Fatal(err)
	}
	var got codecHeader
	data, err := model.DecodeCheckpointHeader(b, codecMagic, &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.Note != h.Note || !slices.Equal(got.Sizes, h.Sizes) {
		t.Fatalf("header %+v, want %+v", got, h)
	}
	values, err := model.DecodeTensors(data, got.Sizes)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tensors {
		if !slices.Equal(values[i], tensors[i]) {
			t.Fatalf("tensor %d: %v, want %v", i, values[i], tensors[i])
		}
	}
}

func TestDecodeCheckpointRefusesDamage(t *testing.T) {
	h, tensors := sampleCodec()
	good, err := model.EncodeCheckpoint(codecMagic, h, tensors)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		b             []byte
		sizes         []int
		wantNotCkpt   bool
		wantHeaderErr bool
	}{
		{name: "empty", b: nil, wantNotCkpt: true, wantHeaderErr: true},
		{name: "magic only", b: codecMagic, wantNotCkpt: true, wantHeaderErr: true},
		{name: "other magic", b: append([]byte("PGTRAINCKPT1"), good[len(codecMagic):]...), wantNotCkpt: true, wantHeaderErr: true},
		{name: "truncated header", b: good[:len(codecMagic)+10], wantHeaderErr: true},
		{name: "header not JSON", b: append(append(slices.Clone(codecMagic), 2, 0, 0, 0), "{x"...), wantHeaderErr: true},
		{name: "truncated data", b: good[:len(good)-3], sizes: h.Sizes},
		{name: "trailing bytes", b: append(slices.Clone(good), 0, 0, 0, 0), sizes: h.Sizes},
		{name: "negative size", b: good, sizes: []int{6, -1}},
		{name: "size past the end", b: good, sizes: []int{6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got codecHeader
			data, err := model.DecodeCheckpointHeader(tc.b, codecMagic, &got)
			if tc.wantHeaderErr {
				if err == nil {
					t.Fatal("DecodeCheckpointHeader accepted a damaged checkpoint")
				}
				if errors.Is(err, model.ErrNotCheckpoint) != tc.wantNotCkpt {
					t.Fatalf("DecodeCheckpointHeader = %v, want ErrNotCheckpoint %v", err, tc.wantNotCkpt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := model.DecodeTensors(data, tc.sizes); err == nil {
				t.Fatalf("DecodeTensors accepted sizes %v for %d bytes", tc.sizes, len(data))
			}
		})
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	h, tensors := sampleCodec()
	good, err := model.EncodeCheckpoint(codecMagic, h, tensors)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, b []byte) {
		var h codecHeader
		data, err := model.DecodeCheckpointHeader(b, codecMagic, &h)
		if err != nil {
			return
		}
		values, err := model.DecodeTensors(data, h.Sizes)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes, header aside.
		again, err := model.EncodeCheckpoint(codecMagic, h, values)
		if err != nil {
			t.Fatal(err)
		}
		var h2 codecHeader
		data2, err := model.DecodeCheckpointHeader(again, codecMagic, &h2)
		if err != nil {
			t.Fatal(err)
		}
		if string(data2) != string(data) {
			t.Fatal("tensor bytes changed in a round trip")
		}
	})
}
