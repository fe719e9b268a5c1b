//go:build tensorflow

package tensorflow_test

import (
	"fmt"

	"pgtrain/model"
	"pgtrain/model/tensorflow"
)

// A model trained on TensorFlow and saved in the TF.js Layers format, which the Go engine
// (model.LoadTFJS), TensorFlow.js and this package's LoadTFJS all read.
func ExampleNew() {
	spec, err := model.ParseSpec([]byte(`{"layers": [
		{"type": "dense", "units": 8, "activation": "relu"},
		{"type": "dropout", "rate": 0.1},
		{"type": "dense", "units": 1}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	c := model.Compile{Loss: "mse", Metrics: []string{"mae"}, Optimizer: model.OptimizerConfig{Name: "adam"}}
	m, err := tensorflow.New(spec, 2, c, 42) // the same initial weights as model.New(spec, 2, c, 42)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	x := []float32{0, 1, 1, 0, 1, 1} // three rows of two features
	y := []float32{1, 1, 2}
	logs, err := m.TrainOnBatch(x, y, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(logs["loss"] > 0, len(logs))
	if err := m.SaveTFJS("model-dir"); err != nil {
		fmt.Println(err)
	}
}
