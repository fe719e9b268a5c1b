// Package model is pgtrain's pure-Go Keras-compatible Sequential engine: Dense, Dropout,
// BatchNormalization and Activation layers, the common activations, losses, metrics and
// optimizers, Keras fit() semantics, import of Keras model.to_json() documents, export and
// import of the TensorFlow.js Layers format, and checkpoints that carry optimizer state.
//
// Weights from the same seed are bit-identical on one machine and kernel; the assembly and
// portable kernels round differently (fused multiply-adds), by float32 rounding only.
//
// It follows Keras closely enough that the same weights, data and batch order give the same
// per-epoch losses and final weights as TensorFlow.js to within float32 rounding; the parity
// tests in this package run TensorFlow.js (parity/ at the repository root) to prove it.
//
// Everything is float32. Matrix products go through a packed, blocked kernel (AVX-512 or
// AVX2 assembly on amd64, portable Go elsewhere or with the purego build tag) that splits
// the output over the cores; each output element is reduced by one goroutine in a fixed
// order, so results do not depend on the number of cores. PGTRAIN_GEMM_KERNEL=go, avx2 or
// avx512 forces a kernel, to test or time each path. Dropout masks and shuffling draw
// from a seeded generator whose state is part of a checkpoint: the same seed, data and calls
// give bit-identical weights, and a resumed run continues exactly where it stopped.
//
// Check, and FromPlan for the backends, hold the rules a job spec must meet to train (loss,
// metrics, optimizer, model, label width), so the coordinator refuses at submission what a
// trainer would refuse at start, with the same message, naming the spec field at fault.
//
// The package reads job specs and plans (package messages, a leaf) but has no database or
// NATS dependencies, so that it can be used, and tested, on its own.
package model
