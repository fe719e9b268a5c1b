package model_test

import (
	"fmt"
	"os"
	"path/filepath"

	"pgtrain/messages"
	"pgtrain/model"
)

func ExampleParseSpec() {
	spec, err := model.ParseSpec([]byte(`{"input_dim": 16, "layers": [
		{"type": "dense", "units": 64, "activation": "relu", "name": "d1"},
		{"type": "dropout", "rate": 0.1},
		{"type": "dense", "units": 1}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range spec.Layers {
		fmt.Printf("%s: %s units=%d activation=%q rate=%g\n", l.Name, l.Type, l.Units, l.Activation, l.Rate)
	}
	_, err = model.ParseSpec([]byte(`{"class_name": "Sequential", "config": {"layers": [
		{"class_name": "Dense", "config": {"name": "d", "units": 4, "batch_input_shape": [null, 3]}},
		{"class_name": "Conv2D", "config": {"name": "conv"}}]}}`))
	fmt.Println(err)
	// Output:
	// d1: dense units=64 activation="relu" rate=0
	// dropout: dropout units=0 activation="" rate=0.1
	// dense: dense units=1 activation="linear" rate=0
	// layers[1] "conv": unsupported layer class "Conv2D" (supported: InputLayer, Dense, Dropout, BatchNormalization, Activation, LeakyReLU, ReLU, Softmax, ELU)
}

func ExampleSequential_Fit() {
	spec, _ := model.ParseSpec([]byte(`{"layers": [{"type": "dense", "units": 8, "activation": "tanh"}, {"type": "dense", "units": 1}]}`))
	m, err := model.New(spec, 2, model.Compile{
		Loss:      "mse",
		Metrics:   []string{"mae"},
		Optimizer: model.OptimizerConfig{Name: "adam", LearningRate: 0.05},
	}, 42)
	if err != nil {
		fmt.Println(err)
		return
	}
	// y = x0 − 2·x1 on a small grid.
	var x, y []float32
	for i := 0; i < 64; i++ {
		a, b := float32(i%8)/8, float32(i/8)/8
		x = append(x, a, b)
		y = append(y, a-2*b)
	}
	h, err := m.Fit(x, y, 64, model.FitOptions{Epochs: 40, BatchSize: 16, ValidationSplit: 0.25})
	if err != nil {
		fmt.Println(err)
		return
	}
	loss := h.History["loss"]
	fmt.Println("epochs:", len(loss))
	fmt.Println("loss fell tenfold:", loss[len(loss)-1] < loss[0]/10)
	fmt.Println("has validation:", len(h.History["val_mae"]) == 40)

	dir, _ := os.MkdirTemp("", "model")
	defer os.RemoveAll(dir)
	if err := m.SaveTFJS(filepath.Join(dir, "tfjs")); err != nil {
		fmt.Println(err)
		return
	}
	back, _ := model.LoadTFJS(filepath.Join(dir, "tfjs"))
	p1, _ := m.Predict(x[:2], 1)
	p2, _ := back.Predict(x[:2], 1)
	fmt.Println("reloaded predicts the same:", p1[0] == p2[0])
	// Output:
	// epochs: 40
	// loss fell tenfold: true
	// has validation: true
	// reloaded predicts the same: true
}

func ExampleMetrics() {
	c := model.Compile{Loss: "binary_crossentropy", Metrics: []string{"accuracy", "mae"}}
	ms, err := model.NewMetrics(c, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	// One pass over two batches of predictions, as an evaluation in chunks adds them.
	ms.Reset()
	ms.Update([]float32{0.9, 0.2}, []float32{1, 0}, 2)
	ms.Update([]float32{0.6, 0.4}, []float32{0, 1}, 2)
	res := ms.Results()
	fmt.Printf("accuracy %.2f, mae %.2f\n", res["accuracy"], res["mae"])
	// Output:
	// accuracy 0.50, mae 0.38
}

func ExampleReadMeta() {
	spec, _ := model.ParseSpec([]byte(`{"layers": [{"type": "dense", "units": 1}]}`))
	m, _ := model.New(spec, 3, model.Compile{Loss: "mse"}, 1)
	dir, _ := os.MkdirTemp("", "model")
	defer os.RemoveAll(dir)
	if err := m.SaveTFJS(dir); err != nil {
		fmt.Println(err)
		return
	}
	// What the trainer writes: the plan's preprocessing (here a scaled number and a
	// category of two values plus the out-of-vocabulary slot), the data and the metrics.
	meta := messages.ModelMeta{
		Version: messages.ModelMetaVersion, JobID: "houses-1", Table: "houses", Key: "id",
		Features: []messages.ColumnPlan{
			{Name: "area", Kind: messages.KindNumeric, HasImpute: true, Impute: 80, Offset: 80, Factor: 0.05},
			{Name: "city", Kind: messages.KindCategorical, Vocabulary: []string{"oslo", "lima"}},
		},
		Label: messages.ColumnPlan{Name: "price", Kind: messages.KindNumeric}, LabelKind: messages.LabelRegression,
		InputDim: 4, LabelDim: 1, Metrics: map[string]float64{"loss": 0.25},
	}
	if err := model.WriteMeta(dir, meta); err != nil {
		fmt.Println(err)
		return
	}
	js, _ := os.ReadFile(filepath.Join(dir, model.TFJSModelFile))
	got, err := model.ReadMeta(js)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range got.Features {
		fmt.Printf("%s: %s, %d inputs\n", f.Name, f.Kind, f.Width())
	}
	fmt.Println(got.LabelKind, got.Metrics["loss"])
	// Output:
	// area: numeric, 1 inputs
	// city: categorical, 3 inputs
	// regression 0.25
}
