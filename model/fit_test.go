package model

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

func sameWeights(t *testing.T, a, b []Tensor) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d weights vs %d", len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			t.Fatalf("weight %d named %q vs %q", i, a[i].Name, b[i].Name)
		}
		for j := range a[i].Values {
			if math.Float32bits(a[i].Values[j]) != math.Float32bits(b[i].Values[j]) {
				t.Fatalf("%s[%d]: %v vs %v", a[i].Name, j, a[i].Values[j], b[i].Values[j])
			}
		}
	}
}

const fitSpec = `{"layers":[{"type":"dense","units":8,"activation":"relu"},{"type":"batch_normalization"},{"type":"dropout","rate":0.3},{"type":"dense","units":3,"activation":"softmax"}]}`

// Fit is TrainOnBatch over the batches in order, the last one partial, and its epoch loss is
// the row-weighted mean of the batch losses taken before each update.
func TestFitMatchesTrainOnBatch(t *testing.T) {
	c := Compile{Loss: "categorical_crossentropy", Metrics: []string{"accuracy"}, Optimizer: OptimizerConfig{Name: "adam", LearningRate: 0.01}}
	a, x, y := buildTest(t, fitSpec, 4, c, "onehot", 3, 30, 1)
	b, _, _ := buildTest(t, fitSpec, 4, c, "onehot", 3, 30, 1)
	h, err := a.Fit(x, y, 30, FitOptions{Epochs: 2, BatchSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	for epoch := 0; epoch < 2; epoch++ {
		var sum, acc float64
		for b0 := 0; b0 < 30; b0 += 7 {
			n := min(7, 30-b0)
			r, err := b.TrainOnBatch(x[b0*4:(b0+n)*4], y[b0*3:(b0+n)*3], n)
			if err != nil {
				t.Fatal(err)
			}
			sum += r["loss"] * float64(n)
			acc += r["accuracy"] * float64(n)
		}
		if got, want := h.History["loss"][epoch], sum/30; math.Abs(got-want) > 1e-12 {
			t.Errorf("epoch %d loss %v, want Σ(batch loss × rows)/N = %v", epoch, got, want)
		}
		if got, want := h.History["accuracy"][epoch], acc/30; math.Abs(got-want) > 1e-12 {
			t.Errorf("epoch %d accuracy %v, want %v", epoch, got, want)
		}
	}
	sameWeights(t, a.Weights(), b.Weights())
	if a.Iterations() != 10 {
		t.Errorf("%d iterations, want 2 epochs × 5 batches", a.Iterations())
	}
}

// validation_split holds out the last rows, as Keras does.
func TestFitValidationSplitTakesLastRows(t *testing.T) {
	c := Compile{Loss: "mse", Metrics: []string{"mae", "rmse"}, Optimizer: OptimizerConfig{Name: "sgd", LearningRate: 0.05}}
	spec := `{"layers":[{"type":"dense","units":6,"activation":"tanh"},{"type":"dense","units":2}]}`
	a, x, y := buildTest(t, spec, 3, c, "regression", 2, 40, 2)
	b, _, _ := buildTest(t, spec, 3, c, "regression", 2, 40, 2)
	ha, err := a.Fit(x, y, 40, FitOptions{Epochs: 3, BatchSize: 8, ValidationSplit: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.Fit(x[:30*3], y[:30*2], 30, FitOptions{Epochs: 3, BatchSize: 8, ValidationX: x[30*3:], ValidationY: y[30*2:], ValidationRows: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"loss", "mae", "rmse", "val_loss", "val_mae", "val_rmse"} {
		if len(ha.History[k]) != 3 {
			t.Fatalf("history %q has %d epochs", k, len(ha.History[k]))
		}
		for e := range ha.History[k] {
			if ha.History[k][e] != hb.History[k][e] {
				t.Errorf("%s epoch %d: %v vs %v", k, e, ha.History[k][e], hb.History[k][e])
			}
		}
	}
	// The validation figures are those of Evaluate on the held-out rows after the epoch.
	ev, err := b.Evaluate(x[30*3:], y[30*2:], 10)
	if err != nil {
		t.Fatal(err)
	}
	if ev["loss"] != hb.History["val_loss"][2] || ev["rmse"] != hb.History["val_rmse"][2] {
		t.Errorf("evaluate %v, last validation %v / %v", ev, hb.History["val_loss"][2], hb.History["val_rmse"][2])
	}
}

func TestEarlyStopping(t *testing.T) {
	c := Compile{Loss: "binary_crossentropy", Metrics: []string{"accuracy"}, Optimizer: OptimizerConfig{Name: "sgd", LearningRate: 0.05}}
	spec := `{"layers":[{"type":"dense","units":6,"activation":"tanh"},{"type":"dense","units":1,"activation":"sigmoid"}]}`
	t.Run("no improvement restores the best weights", func(t *testing.T) {
		m, x, y := buildTest(t, spec, 3, c, "binary", 1, 40, 3)
		var afterFirst []Tensor
		h, err := m.Fit(x, y, 40, FitOptions{Epochs: 10, BatchSize: 16, ValidationSplit: 0.25,
			// A min_delta no epoch can beat: only the first epoch counts as an improvement.
			EarlyStopping: &EarlyStopping{MinDelta: 1e9, Patience: 2, RestoreBestWeights: true},
			OnEpochEnd: func(epoch int, _ map[string]float64) error {
				if epoch == 0 {
					afterFirst = m.Weights()
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		if h.StoppedEpoch != 2 || h.BestEpoch != 0 || len(h.History["loss"]) != 3 {
			t.Fatalf("stopped at %d, best %d, %d epochs run", h.StoppedEpoch, h.BestEpoch, len(h.History["loss"]))
		}
		sameWeights(t, m.Weights(), afterFirst)
	})
	t.Run("improving runs to the end", func(t *testing.T) {
		m, x, y := buildTest(t, spec, 3, c, "binary", 1, 40, 3)
		h, err := m.Fit(x, y, 40, FitOptions{Epochs: 4, BatchSize: 16, EarlyStopping: &EarlyStopping{Monitor: "loss", Patience: 0}})
		if err != nil {
			t.Fatal(err)
		}
		if h.StoppedEpoch != -1 || len(h.History["loss"]) != 4 {
			t.Fatalf("stopped at %d after %d epochs: %v", h.StoppedEpoch, len(h.History["loss"]), h.History["loss"])
		}
	})
	t.Run("accuracy is maximised", func(t *testing.T) {
		e := EarlyStopping{Monitor: "val_accuracy", Patience: 1}
		st := NewEarlyStoppingState()
		for epoch, acc := range []float64{0.5, 0.7, 0.6} {
			if _, stop := e.EpochEnd(&st, epoch, acc); stop != (epoch == 2) {
				t.Fatalf("epoch %d (accuracy %v): stop = %v", epoch, acc, stop)
			}
		}
		if st.BestEpoch != 1 || st.Best != 0.7 {
			t.Errorf("best %v at %d", st.Best, st.BestEpoch)
		}
	})
	t.Run("unknown monitor", func(t *testing.T) {
		m, x, y := buildTest(t, spec, 3, c, "binary", 1, 20, 3)
		_, err := m.Fit(x, y, 20, FitOptions{Epochs: 2, EarlyStopping: &EarlyStopping{}})
		if err == nil || !strings.Contains(err.Error(), `monitors "val_loss"`) {
			t.Fatalf("error %v", err)
		}
	})
}

// The same seed, data and calls give bit-identical weights whatever the number of cores;
// another seed gives others.
func TestDeterminism(t *testing.T) {
	c := Compile{Loss: "categorical_crossentropy", Optimizer: OptimizerConfig{Name: "adam", LearningRate: 0.01}}
	run := func(seed int64, procs int) []Tensor {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		s, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":96,"activation":"relu"},{"type":"batch_normalization"},{"type":"dropout","rate":0.3},{"type":"dense","units":64,"activation":"gelu"},{"type":"dense","units":3,"activation":"softmax"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(s, 40, c, seed)
		if err != nil {
			t.Fatal(err)
		}
		x, y := makeData(rand.New(rand.NewPCG(9, 9)), 300, 40, "onehot", 3)
		if _, err := m.Fit(x, y, 300, FitOptions{Epochs: 2, BatchSize: 64, Shuffle: true}); err != nil {
			t.Fatal(err)
		}
		return m.Weights()
	}
	a := run(7, 2)
	sameWeights(t, a, run(7, 2))
	sameWeights(t, a, run(7, 1))
	sameWeights(t, a, run(7, 4))
	b := run(8, 2)
	if math.Float32bits(a[0].Values[0]) == math.Float32bits(b[0].Values[0]) {
		t.Error("another seed gave the same first weight")
	}
}

func TestKerasInitialisation(t *testing.T) {
	s, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":300},{"type":"dense","units":100,"kernel_initializer":{"kind":"he_normal"},"bias_initializer":{"kind":"constant","value":0.5}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(s, 200, Compile{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	w := m.Weights()
	lim := math.Sqrt(6.0 / 500)
	var sumSq float64
	for _, v := range w[0].Values {
		if math.Abs(float64(v)) > lim {
			t.Fatalf("glorot_uniform value %v outside ±%v", v, lim)
		}
		sumSq += float64(v) * float64(v)
	}
	if sd, want := math.Sqrt(sumSq/float64(len(w[0].Values))), lim/math.Sqrt(3); math.Abs(sd-want)/want > 0.02 {
		t.Errorf("glorot_uniform standard deviation %v, want %v", sd, want)
	}
	for _, v := range w[1].Values {
		if v != 0 {
			t.Fatal("bias not zero")
		}
	}
	sumSq = 0
	for _, v := range w[2].Values {
		sumSq += float64(v) * float64(v)
	}
	if sd, want := math.Sqrt(sumSq/float64(len(w[2].Values))), math.Sqrt(2.0/300); math.Abs(sd-want)/want > 0.03 {
		t.Errorf("he_normal standard deviation %v, want %v", sd, want)
	}
	if w[3].Values[0] != 0.5 {
		t.Errorf("constant bias %v", w[3].Values[0])
	}
}

func TestMetricsAndLosses(t *testing.T) {
	tests := []struct {
		name    string
		c       Compile
		outDim  int
		pred, y []float32
		want    map[string]float64
	}{
		{name: "binary", c: Compile{Loss: "binary_crossentropy", Metrics: []string{"accuracy", "mae"}}, outDim: 1,
			pred: []float32{0.9, 0.2, 0.6, 0.4}, y: []float32{1, 0, 0, 1},
			want: map[string]float64{"accuracy": 0.5, "mae": (0.1 + 0.2 + 0.6 + 0.6) / 4,
				"loss": -(math.Log(0.9) + math.Log(0.8) + math.Log(0.4) + math.Log(0.4)) / 4}},
		{name: "categorical", c: Compile{Loss: "categorical_crossentropy", Metrics: []string{"acc"}}, outDim: 3,
			pred: []float32{0.2, 0.5, 0.3, 0.6, 0.3, 0.1}, y: []float32{0, 0, 1, 1, 0, 0},
			want: map[string]float64{"acc": 0.5, "loss": -(math.Log(0.3) + math.Log(0.6)) / 2}},
		{name: "sparse", c: Compile{Loss: "sparse_categorical_crossentropy", Metrics: []string{"accuracy", "sparse_categorical_accuracy"}}, outDim: 3,
			pred: []float32{0.2, 0.5, 0.3, 0.6, 0.3, 0.1}, y: []float32{1, 2},
			want: map[string]float64{"accuracy": 0.5, "sparse_categorical_accuracy": 0.5, "loss": -(math.Log(0.5) + math.Log(0.1)) / 2}},
		{name: "regression", c: Compile{Loss: "huber", Metrics: []string{"rmse", "mse", "mae"}}, outDim: 2,
			pred: []float32{0, 3, 1, 1}, y: []float32{0.5, 0, 1, 1},
			want: map[string]float64{"rmse": math.Sqrt((0.25 + 9) / 4), "mse": (0.25 + 9) / 4, "mae": 3.5 / 4,
				"loss": ((0.5*0.25 + 2.5) / 2) / 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Validate(); err != nil {
				t.Fatal(err)
			}
			rows := len(tt.pred) / tt.outDim
			lf := newLossFn(tt.c.Loss, false, float32(tt.c.HuberDelta))
			ms, err := NewMetrics(tt.c, tt.outDim)
			if err != nil {
				t.Fatal(err)
			}
			ld := lf.labelDim(tt.outDim)
			// A pass of the first row alone, whose metrics differ from the whole's: Reset must
			// leave nothing of it behind.
			ms.Update(tt.pred[:tt.outDim], tt.y[:ld], 1)
			ms.Reset()
			// Two batches: the result must be the mean over all rows.
			half := rows / 2
			ms.Update(tt.pred[:half*tt.outDim], tt.y[:half*ld], half)
			ms.Update(tt.pred[half*tt.outDim:], tt.y[half*ld:], rows-half)
			got := ms.Results()
			if len(got) != len(tt.c.Metrics) {
				t.Errorf("results %v, want one for each of %v", got, tt.c.Metrics)
			}
			got["loss"] = lf.eval(tt.pred, tt.y, rows, tt.outDim, nil)
			for k, want := range tt.want {
				if math.Abs(got[k]-want) > 1e-6 {
					t.Errorf("%s = %v, want %v", k, got[k], want)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	s, err := ParseSpec([]byte(`{"input_dim":3,"layers":[{"type":"dense","units":2,"activation":"softmax"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(s, 4, Compile{}, 1); err == nil || !strings.Contains(err.Error(), "expects 3 input features") {
		t.Errorf("input mismatch: %v", err)
	}
	noDim, _ := ParseSpec([]byte(`{"layers":[{"type":"dense","units":2}]}`))
	if _, err := New(noDim, 0, Compile{}, 1); err == nil || !strings.Contains(err.Error(), "input width is unknown") {
		t.Errorf("unknown input: %v", err)
	}
	m, err := New(s, 0, Compile{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TrainOnBatch(make([]float32, 3), make([]float32, 2), 1); !errors.Is(err, ErrNotCompiled) {
		t.Errorf("uncompiled train: %v", err)
	}
	if _, err := m.Predict(make([]float32, 5), 2); err == nil {
		t.Error("short x accepted")
	}
	if err := m.Compile(Compile{Loss: "sparse_categorical_crossentropy"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.TrainOnBatch(make([]float32, 6), []float32{0, 2}, 2); err == nil || !strings.Contains(err.Error(), "row 1: sparse label 2") {
		t.Errorf("bad label: %v", err)
	}
	if _, err := m.TrainOnBatch(make([]float32, 6), []float32{0, 1, 1, 0}, 2); err == nil || !strings.Contains(err.Error(), "y has 4 values") {
		t.Errorf("wrong y width: %v", err)
	}
	if err := m.Compile(Compile{Loss: "mse", Metrics: []string{"f1"}}); err == nil {
		t.Error("unknown metric accepted")
	}
	before := m.Weights()
	bad := func(edit func(ws []Tensor) []Tensor, want string) {
		t.Helper()
		ws := edit(m.Weights())
		if err := m.SetWeights(ws); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("SetWeights: error %v, want %q", err, want)
		}
		sameWeights(t, before, m.Weights())
	}
	bad(func(ws []Tensor) []Tensor { ws[0].Values[0] = 9; return append(ws, Tensor{Name: "x/kernel"}) }, `no weight "x/kernel"`)
	bad(func(ws []Tensor) []Tensor { ws[1].Values[0] = 9; return ws[1:] }, `"dense/kernel" is missing`)
	bad(func(ws []Tensor) []Tensor { ws[1].Shape = []int{1, 2}; return ws }, `"dense/bias" has shape [1 2]`)
	bad(func(ws []Tensor) []Tensor { return append(ws, ws[0]) }, "given twice")
}

// Fit's shuffle visits the rows in pinned permutations, so that a change of generator or of
// the shuffle itself, which would change every model trained with Shuffle, is noticed: two
// epochs shuffled train exactly as one pass over the rows laid out in those orders.
func TestFitShuffleOrderIsPinned(t *testing.T) {
	const rows, in = 10, 4
	perms := [][]int{{4, 7, 3, 0, 2, 8, 5, 6, 1, 9}, {6, 4, 3, 5, 9, 8, 0, 2, 1, 7}}
	s, err := ParseSpec([]byte(`{"layers":[{"type":"dense","units":8,"activation":"tanh"},{"type":"dense","units":1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	newModel := func() *Sequential {
		m, err := New(s, in, Compile{Loss: "mse", Optimizer: OptimizerConfig{Name: "sgd", LearningRate: 0.1}}, 3)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	x, y := makeData(rand.New(rand.NewPCG(5, 5)), rows, in, "regression", 1)
	shuffled := newModel()
	if _, err := shuffled.Fit(x, y, rows, FitOptions{Epochs: len(perms), BatchSize: 1, Shuffle: true}); err != nil {
		t.Fatal(err)
	}
	var px, py []float32
	for _, p := range perms {
		for _, r := range p {
			px = append(px, x[r*in:(r+1)*in]...)
			py = append(py, y[r])
		}
	}
	inOrder := newModel()
	if _, err := inOrder.Fit(px, py, len(py), FitOptions{BatchSize: 1}); err != nil {
		t.Fatal(err)
	}
	sameWeights(t, shuffled.Weights(), inOrder.Weights())
}
