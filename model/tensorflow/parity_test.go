//go:build tensorflow

package tensorflow

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/trainer"
)

// tolerance is the bound for losses and weights after training on both backends:
// the same arithmetic in float32, summed in different orders.
const tolerance = 1e-5

type parityCase struct {
	name    string
	doc     string
	input   int
	compile model.Compile
	// labels makes rows labels for x.
	labels func(r *rand.Rand, x []float32, rows, in, out int) []float32
}

func regression(r *rand.Rand, x []float32, rows, in, out int) []float32 {
	y := make([]float32, rows*out)
	for i := range rows {
		for k := range out {
			var s float64
			for j := range in {
				s += float64(x[i*in+j]) * math.Sin(float64(1+j+3*k))
			}
			y[i*out+k] = float32(s + 0.1*r.NormFloat64())
		}
	}
	return y
}

func classes(r *rand.Rand, x []float32, rows, in, out int) []int {
	c := make([]int, rows)
	for i := range rows {
		s := float64(x[i*in]) - float64(x[i*in+1]) + 0.3*r.NormFloat64()
		c[i] = min(out-1, max(0, int(math.Floor(s+float64(out)/2))))
	}
	return c
}

func oneHotLabels(r *rand.Rand, x []float32, rows, in, out int) []float32 {
	y := make([]float32, rows*out)
	for i, c := range classes(r, x, rows, in, out) {
		y[i*out+c] = 1
	}
	return y
}

func sparseLabels(r *rand.Rand, x []float32, rows, in, out int) []float32 {
	y := make([]float32, rows)
	for i, c := range classes(r, x, rows, in, out) {
		y[i] = float32(c)
	}
	return y
}

func binaryLabels(r *rand.Rand, x []float32, rows, in, out int) []float32 {
	y := make([]float32, rows*out)
	for i := range y {
		if float64(x[(i/out)*in])+0.5*r.NormFloat64() > 0 {
			y[i] = 1
		}
	}
	return y
}

var parityCases = []parityCase{
	{name: "mse, sgd momentum, dropout", input: 5, labels: regression,
		doc: `{"layers": [{"type": "dense", "units": 8, "activation": "relu"}, {"type": "dropout", "rate": 0.25},
			{"type": "dense", "units": 1}]}`,
		compile: model.Compile{Loss: "mse", Metrics: []string{"mae"},
			Optimizer: model.OptimizerConfig{Name: "sgd", LearningRate: 0.05, Momentum: 0.9}}},
	{name: "huber, nesterov, batch normalization, leaky relu, selu", input: 4, labels: regression,
		doc: `{"layers": [{"type": "dense", "units": 6, "activation": "tanh", "use_bias": false},
			{"type": "batch_normalization", "momentum": 0.9}, {"type": "leaky_relu", "alpha": 0.2},
			{"type": "dense", "units": 2, "activation": "selu"}]}`,
		compile: model.Compile{Loss: "huber", Metrics: []string{"rmse"},
			Optimizer: model.OptimizerConfig{Name: "sgd", LearningRate: 0.05, Momentum: 0.5, Nesterov: true}}},
	{name: "categorical crossentropy, adam, gelu, softmax", input: 4, labels: oneHotLabels,
		doc:     `{"layers": [{"type": "dense", "units": 6, "activation": "gelu"}, {"type": "dense", "units": 3, "activation": "softmax"}]}`,
		compile: model.Compile{Loss: "categorical_crossentropy", Metrics: []string{"accuracy"}, Optimizer: model.OptimizerConfig{Name: "adam", LearningRate: 0.01}}},
	{name: "sparse crossentropy from logits, rmsprop momentum, elu", input: 4, labels: sparseLabels,
		doc: `{"layers": [{"type": "dense", "units": 6, "activation": "elu"}, {"type": "dense", "units": 3}]}`,
		compile: model.Compile{Loss: "sparse_categorical_crossentropy", FromLogits: true, Metrics: []string{"accuracy"},
			Optimizer: model.OptimizerConfig{Name: "rmsprop", LearningRate: 0.005, Momentum: 0.5}}},
	{name: "binary crossentropy, adamw, clipnorm, swish, sigmoid", input: 3, labels: binaryLabels,
		doc: `{"layers": [{"type": "dense", "units": 5, "activation": "swish"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]}`,
		compile: model.Compile{Loss: "binary_crossentropy", Metrics: []string{"accuracy", "mae"},
			Optimizer: model.OptimizerConfig{Name: "adamw", LearningRate: 0.01, ClipNorm: 0.5}}},
	{name: "binary crossentropy from logits, sgd, activation layer", input: 3, labels: binaryLabels,
		doc: `{"layers": [{"type": "dense", "units": 4}, {"type": "activation", "activation": "sigmoid"},
			{"type": "dense", "units": 1}]}`,
		compile: model.Compile{Loss: "binary_crossentropy", FromLogits: true, Optimizer: model.OptimizerConfig{Name: "sgd", LearningRate: 0.1}}},
	{name: "mae, rmsprop", input: 3, labels: regression,
		doc:     `{"layers": [{"type": "dense", "units": 3, "activation": "relu"}, {"type": "dense", "units": 1}]}`,
		compile: model.Compile{Loss: "mae", Optimizer: model.OptimizerConfig{Name: "rmsprop", LearningRate: 0.01}}},
}

// explicitWeights draws every weight of the model from the test's own generator, so that
// both backends start from weights set by the test rather than by either initialiser.
func explicitWeights(ws []model.Tensor, r *rand.Rand) []model.Tensor {
	out := make([]model.Tensor, len(ws))
	for i, w := range ws {
		v := make([]float32, len(w.Values))
		for j := range v {
			u := float32(2*r.Float64() - 1)
			switch {
			case strings.HasSuffix(w.Name, "/kernel"):
				v[j] = 0.6 * u
			case strings.HasSuffix(w.Name, "/gamma"), strings.HasSuffix(w.Name, "/moving_variance"):
				v[j] = 1 + 0.2*u
			default: // bias, beta, moving_mean
				v[j] = 0.1 * u
			}
		}
		out[i] = model.Tensor{Name: w.Name, Shape: w.Shape, Values: v}
	}
	return out
}

func makeData(tc parityCase, r *rand.Rand, rows, out int) (x, y []float32) {
	x = make([]float32, rows*tc.input)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x, tc.labels(r, x, rows, tc.input, out)
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(a)) }

// compareLogs checks the losses and metrics of the two backends. An accuracy may differ by
// one row in rows: a prediction within float32 rounding of the threshold (or of a tie) can
// fall on either side of it.
func compareLogs(t *testing.T, what string, goLogs, tfLogs map[string]float64, rows int) {
	t.Helper()
	if len(goLogs) != len(tfLogs) {
		t.Fatalf("%s: go backend reports %v, tensorflow %v", what, goLogs, tfLogs)
	}
	for k, g := range goLogs {
		v, ok := tfLogs[k]
		tol := tolerance
		if strings.Contains(k, "acc") {
			tol = 1.0/float64(rows) + 1e-9
		}
		if !ok || !near(g, v, tol) {
			t.Fatalf("%s: %s is %v on the go backend, %v on tensorflow", what, k, g, v)
		}
	}
}

func compareWeights(t *testing.T, what string, goW, tfW []model.Tensor, tol float64) {
	t.Helper()
	if len(goW) != len(tfW) {
		t.Fatalf("%s: %d weight tensors on the go backend, %d on tensorflow", what, len(goW), len(tfW))
	}
	for i := range goW {
		if goW[i].Name != tfW[i].Name || len(goW[i].Values) != len(tfW[i].Values) {
			t.Fatalf("%s: weight %d is %s (%d values) on the go backend, %s (%d) on tensorflow",
				what, i, goW[i].Name, len(goW[i].Values), tfW[i].Name, len(tfW[i].Values))
		}
		for j, g := range goW[i].Values {
			if d := math.Abs(float64(g) - float64(tfW[i].Values[j])); d > tol {
				t.Fatalf("%s: %s[%d] is %v on the go backend, %v on tensorflow (|Δ| %.3g > %.3g)",
					what, goW[i].Name, j, g, tfW[i].Values[j], d, tol)
			}
		}
	}
}

// TestParityWithGoEngine trains the same model, from the same explicitly set weights, on
// the same batches (the last one partial) on both backends, and compares every batch's loss
// and metrics, the weights after every epoch (moving statistics included), the evaluation
// and the predictions.
func TestParityWithGoEngine(t *testing.T) {
	const rows, batch, epochs, seed = 70, 16, 3, 11
	for _, tc := range parityCases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := model.ParseSpec([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			goM, err := model.New(spec, tc.input, tc.compile, seed)
			if err != nil {
				t.Fatal(err)
			}
			tfM, err := New(spec, tc.input, tc.compile, seed)
			if err != nil {
				t.Fatal(err)
			}
			defer tfM.Close()

			r := rand.New(rand.NewPCG(seed, 1))
			ws := explicitWeights(goM.Weights(), r)
			if err := goM.SetWeights(ws); err != nil {
				t.Fatal(err)
			}
			if err := tfM.SetWeights(ws); err != nil {
				t.Fatal(err)
			}
			got, err := tfM.Weights()
			if err != nil {
				t.Fatal(err)
			}
			compareWeights(t, "weights as set", goM.Weights(), got, 0)

			x, y := makeData(tc, r, rows, goM.OutputDim())
			vx, vy := makeData(tc, r, 40, goM.OutputDim())
			in, ld := tc.input, goM.LabelDim()
			for epoch := range epochs {
				for b0 := 0; b0 < rows; b0 += batch {
					n := min(batch, rows-b0)
					xb, yb := x[b0*in:(b0+n)*in], y[b0*ld:(b0+n)*ld]
					gl, err := goM.TrainOnBatch(xb, yb, n)
					if err != nil {
						t.Fatal(err)
					}
					tl, err := tfM.TrainOnBatch(xb, yb, n)
					if err != nil {
						t.Fatal(err)
					}
					compareLogs(t, fmt.Sprintf("epoch %d, batch at row %d", epoch, b0), gl, tl, n)
				}
				tw, err := tfM.Weights()
				if err != nil {
					t.Fatal(err)
				}
				compareWeights(t, fmt.Sprintf("after epoch %d", epoch), goM.Weights(), tw, tolerance)
			}
			if tfM.Iterations() != goM.Iterations() {
				t.Fatalf("%d updates on tensorflow, %d on the go backend", tfM.Iterations(), goM.Iterations())
			}
			ge, err := goM.Evaluate(vx, vy, 40)
			if err != nil {
				t.Fatal(err)
			}
			te, err := tfM.Evaluate(vx, vy, 40)
			if err != nil {
				t.Fatal(err)
			}
			compareLogs(t, "evaluate", ge, te, 40)
			gp, err := goM.Predict(vx, 40)
			if err != nil {
				t.Fatal(err)
			}
			tp, err := tfM.Predict(vx, 40)
			if err != nil {
				t.Fatal(err)
			}
			for i := range gp {
				if !near(float64(gp[i]), float64(tp[i]), tolerance) {
					t.Fatalf("prediction %d is %v on the go backend, %v on tensorflow", i, gp[i], tp[i])
				}
			}
		})
	}
}

// TestCheckpointResumesExactly stops a model mid-training, restores its checkpoint into a
// fresh model built with another seed, and checks that both continue bit for bit (dropout
// stream, Adam's step count and slots, moving statistics).
func TestCheckpointResumesExactly(t *testing.T) {
	tc := parityCase{input: 4, labels: regression,
		doc: `{"layers": [{"type": "dense", "units": 6, "activation": "relu"}, {"type": "dropout", "rate": 0.3},
			{"type": "batch_normalization"}, {"type": "dense", "units": 1}]}`,
		compile: model.Compile{Loss: "mse", Optimizer: model.OptimizerConfig{Name: "adam", LearningRate: 0.01}}}
	spec, err := model.ParseSpec([]byte(tc.doc))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(spec, tc.input, tc.compile, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	x, y := makeData(tc, rand.New(rand.NewPCG(2, 2)), 96, 1)
	step := func(m *Model, i int) float64 {
		t.Helper()
		logs, err := m.TrainOnBatch(x[i*16*4:(i+1)*16*4], y[i*16:(i+1)*16], 16)
		if err != nil {
			t.Fatal(err)
		}
		return logs["loss"]
	}
	for i := range 3 {
		step(a, i)
	}
	ck, err := a.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(spec, tc.input, tc.compile, 6)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.UnmarshalCheckpoint(ck); err != nil {
		t.Fatal(err)
	}
	if b.Iterations() != 3 {
		t.Fatalf("restored model has %d updates, want 3", b.Iterations())
	}
	for i := 3; i < 6; i++ {
		if la, lb := step(a, i), step(b, i); la != lb {
			t.Fatalf("batch %d: loss %v before the checkpoint's model, %v after restoring it", i, la, lb)
		}
	}
	wa, err := a.Weights()
	if err != nil {
		t.Fatal(err)
	}
	wb, err := b.Weights()
	if err != nil {
		t.Fatal(err)
	}
	compareWeights(t, "resumed", wa, wb, 0)

	goM, err := model.New(spec, tc.input, tc.compile, 5)
	if err != nil {
		t.Fatal(err)
	}
	goCk, err := goM.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalCheckpoint(goCk); !errors.Is(err, ErrCheckpointMismatch) {
		t.Fatalf("restoring a go backend checkpoint: %v, want ErrCheckpointMismatch", err)
	}
	other, err := New(&model.Spec{Layers: []model.LayerSpec{{Type: model.LayerDense, Name: "d", Units: 2, UseBias: true}}},
		tc.input, tc.compile, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherCk, err := other.MarshalCheckpoint()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.UnmarshalCheckpoint(otherCk); !errors.Is(err, ErrCheckpointMismatch) {
		t.Fatalf("restoring another architecture's checkpoint: %v, want ErrCheckpointMismatch", err)
	}
	after, err := b.Weights()
	if err != nil {
		t.Fatal(err)
	}
	compareWeights(t, "after refused checkpoints", wb, after, 0)
}

// TestTFJSBetweenBackends checks that both backends write the same TF.js files for the
// same weights, and that a model trained on either loads in the other.
func TestTFJSBetweenBackends(t *testing.T) {
	tc := parityCases[1] // batch normalization: moving statistics travel too
	spec, err := model.ParseSpec([]byte(tc.doc))
	if err != nil {
		t.Fatal(err)
	}
	goM, err := model.New(spec, tc.input, tc.compile, 3)
	if err != nil {
		t.Fatal(err)
	}
	tfM, err := New(spec, tc.input, tc.compile, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer tfM.Close()
	x, y := makeData(tc, rand.New(rand.NewPCG(4, 4)), 32, goM.OutputDim())
	if _, err := tfM.TrainOnBatch(x, y, 32); err != nil {
		t.Fatal(err)
	}
	trained, err := tfM.Weights()
	if err != nil {
		t.Fatal(err)
	}
	if err := goM.SetWeights(trained); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goDir, tfDir := filepath.Join(dir, "go"), filepath.Join(dir, "tf")
	if err := goM.SaveTFJS(goDir); err != nil {
		t.Fatal(err)
	}
	if err := tfM.SaveTFJS(tfDir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{model.TFJSModelFile, model.TFJSWeightFile} {
		a, err := os.ReadFile(filepath.Join(goDir, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(tfDir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs between the backends for the same weights", f)
		}
	}

	// TensorFlow's export in the Go engine, and the Go engine's export on TensorFlow.
	fromTF, err := model.LoadTFJS(tfDir)
	if err != nil {
		t.Fatal(err)
	}
	onTF, err := LoadTFJS(goDir, tc.compile, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer onTF.Close()
	want, err := tfM.Predict(x, 32)
	if err != nil {
		t.Fatal(err)
	}
	for name, predict := range map[string]func([]float32, int) ([]float32, error){
		"go engine from the tensorflow export": fromTF.Predict,
		"tensorflow from the go export":        onTF.Predict,
	} {
		got, err := predict(x, 32)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if !near(float64(want[i]), float64(got[i]), tolerance) {
				t.Fatalf("%s: prediction %d is %v, the trained model's %v", name, i, got[i], want[i])
			}
		}
	}
	if _, err := onTF.TrainOnBatch(x, y, 32); err != nil {
		t.Fatalf("a loaded model compiled for training does not train: %v", err)
	}
}

// TestBackendFromPlan builds a job's model through the trainer's registry, next to the go
// backend's model of the same plan: same initial weights (the seed means the same), close
// first losses, and the plan's label width enforced.
func TestBackendFromPlan(t *testing.T) {
	build, ok := trainer.LookupBackend(BackendName)
	if !ok {
		t.Fatalf("the %s backend is not registered (have %v)", BackendName, trainer.Backends())
	}
	goBuild, ok := trainer.LookupBackend("go")
	if !ok {
		t.Fatal("the go backend is not registered")
	}
	plan := &messages.Plan{InputDim: 4, LabelDim: 1, Label: messages.ColumnPlan{Name: "price"},
		Spec: messages.JobSpec{
			Model:     []byte(`{"layers": [{"type": "dense", "units": 5, "activation": "relu"}, {"type": "dense", "units": 1}]}`),
			Loss:      "mse",
			Metrics:   []string{"mae"},
			Optimizer: messages.OptimizerSpec{Name: "adam", LearningRate: 0.01},
			Seed:      9,
			Backend:   BackendName,
		}}
	m, err := build(plan)
	if err != nil {
		t.Fatal(err)
	}
	tfM, ok := m.(*Model)
	if !ok {
		t.Fatalf("the backend built a %T", m)
	}
	defer tfM.Close()
	gm, err := goBuild(plan)
	if err != nil {
		t.Fatal(err)
	}
	goM, ok := gm.(*model.Sequential)
	if !ok {
		t.Fatalf("the go backend built a %T", gm)
	}
	tw, err := tfM.Weights()
	if err != nil {
		t.Fatal(err)
	}
	compareWeights(t, "initial weights from the seed", goM.Weights(), tw, 0)
	tc := parityCase{input: 4, labels: regression}
	x, y := makeData(tc, rand.New(rand.NewPCG(1, 1)), 20, 1)
	gl, err := goM.TrainOnBatch(x, y, 20)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tfM.TrainOnBatch(x, y, 20)
	if err != nil {
		t.Fatal(err)
	}
	compareLogs(t, "first batch", gl, tl, 20)

	wide := *plan
	wide.LabelDim = 2
	if _, err := build(&wide); err == nil || !strings.Contains(err.Error(), "width") {
		t.Fatalf("a plan with labels of width 2 for a one-wide model: %v, want an error about the width", err)
	}
}

func TestUnsupportedCompile(t *testing.T) {
	spec, err := model.ParseSpec([]byte(`{"layers": [{"type": "dense", "units": 1}]}`))
	if err != nil {
		t.Fatal(err)
	}
	c := model.Compile{Loss: "mse", Optimizer: model.OptimizerConfig{Name: "sgd",
		Schedule: &model.Schedule{Kind: model.ScheduleCosine, DecaySteps: 100}}}
	if _, err := New(spec, 3, c, 0); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("New with a learning rate schedule: %v, want ErrUnsupported", err)
	}
}
