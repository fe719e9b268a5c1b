package messages

import (
	"reflect"
	"sort"
	"testing"
)

func TestRangeOrderIsASeededPermutation(t *testing.T) {
	a := RangeOrder(42, 0, 50)
	if !reflect.DeepEqual(a, RangeOrder(42, 0, 50)) {
		t.Fatal("same seed and epoch gave two orders")
	}
	if reflect.DeepEqual(a, RangeOrder(42, 1, 50)) || reflect.DeepEqual(a, RangeOrder(43, 0, 50)) {
		t.Fatal("another epoch or seed gave the same order")
	}
	sorted := append([]int(nil), a...)
	sort.Ints(sorted)
	for i, v := range sorted {
		if v != i {
			t.Fatalf("not a permutation: %v", a)
		}
	}
	// Pinned so that a change of generator, which would change every trained model, is noticed.
	for _, tc := range []struct {
		seed     int64
		epoch, n int
		want     []int
	}{
		{1, 0, 8, []int{1, 5, 4, 6, 7, 0, 2, 3}},
		{7, 2, 12, []int{5, 10, 4, 6, 8, 11, 0, 9, 3, 2, 1, 7}},
		{-5, 1, 3, []int{2, 1, 0}},
	} {
		if got := RangeOrder(tc.seed, tc.epoch, tc.n); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("RangeOrder(%d, %d, %d) = %v, want %v", tc.seed, tc.epoch, tc.n, got, tc.want)
		}
	}
}

func TestEpochOrderPutsValidationLast(t *testing.T) {
	p := &Plan{Spec: JobSpec{Seed: 7}, Ranges: make([]KeyRange, 6), ValidationRanges: 2}
	order := p.EpochOrder(3)
	if len(order) != 6 || order[4] != 4 || order[5] != 5 {
		t.Fatalf("order %v: want the 4 training ranges permuted, then 4, 5", order)
	}
}

func TestKeyChecksumIsOrderIndependent(t *testing.T) {
	var a, b, c KeyChecksum
	keys := []int64{-3, 9, 1 << 62, 0, -1 << 63}
	for _, k := range keys {
		a.Add(k)
	}
	for i := len(keys) - 1; i >= 0; i-- {
		if i%2 == 0 {
			b.Add(keys[i])
		} else {
			c.Add(keys[i])
		}
	}
	b.Merge(c)
	if a != b {
		t.Fatalf("%+v != %+v", a, b)
	}
	var d KeyChecksum
	for _, k := range []int64{-3, 9, 1 << 62, 0, -1<<63 + 1} {
		d.Add(k)
	}
	if d == a {
		t.Fatal("a different key set gave the same checksum")
	}
}

func TestBatchSubjects(t *testing.T) {
	id := BatchID{JobID: "j1", Pass: 1, Range: 22, Page: 3}
	var n Names
	if n.RawSubject(id) != "pgtrain.raw.j1.1.22.3" || n.ReadySubject(id) != "pgtrain.ready.j1.1.22.3" || id.MsgID() != "j1/1/22/3" {
		t.Fatalf("subjects: %s %s %s", n.RawSubject(id), n.ReadySubject(id), id.MsgID())
	}
	for _, bad := range []string{"", "a.b", "A", "x*", "x>"} {
		if ValidJobID(bad) == nil {
			t.Fatalf("job id %q accepted", bad)
		}
	}
	if err := ValidJobID("job-1a_2"); err != nil {
		t.Fatal(err)
	}
}
