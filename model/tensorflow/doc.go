// Package tensorflow runs pgtrain's Sequential models on TensorFlow through the C library
// (libtensorflow 2.18) and its Go binding, graft. Built with the tensorflow build tag, it
// registers the "tensorflow" backend of the trainer: a job whose spec says
// "backend": "tensorflow", or any job on a trainer started with --backend tensorflow, trains
// on TensorFlow's kernels (and on its GPU support, where the library has it).
//
// The model is the one the pure-Go engine (model) builds from the same spec, laid out
// as a TensorFlow graph: resource variables for every weight and optimizer slot, Dense,
// Dropout, BatchNormalization, Activation and LeakyReLU layers, the losses, and the SGD
// (with Keras momentum and Nesterov), Adam, AdamW and RMSprop updates through TensorFlow's
// training ops, with gradients from the graph's symbolic differentiation. It follows the
// Go engine closely enough that the same weights and batches give the same losses and
// weights to within float32 rounding:
//
//   - Initial weights are the Go engine's for the same seed (New builds the Go model and
//     copies its weights into the variables), so the seed means the same on both backends.
//   - Dropout masks are not drawn by TensorFlow: they come from the Go engine's dropout
//     stream (model.DropoutStream: same seed, same order of draws) and are fed to the
//     graph, so a model with dropout also trains the same on both, and the mask
//     generator's state is part of a checkpoint.
//   - Metrics are computed from the batch's predictions by the Go engine's evaluator
//     (model.Metrics).
//   - SaveTFJS writes the variables' values through the Go engine's exporter: the TF.js
//     Layers files are the same on both backends, and LoadTFJS reads either backend's.
//
// Checkpoints hold the variables (weights, moving statistics, optimizer slots), the step
// count and the dropout stream, so a resumed job continues exactly where it stopped. They
// have the Go engine's layout (model.EncodeCheckpoint) with this backend's own magic and
// header: a job cannot change backend between a checkpoint and its resumption.
//
// Without the build tag the package holds only the pure-Go parts (weight layout, the
// metrics' setup, the checkpoint header), which are tested against the Go engine on every
// build; the graph itself needs libtensorflow to link and run.
package tensorflow
