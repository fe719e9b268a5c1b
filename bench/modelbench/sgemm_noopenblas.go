//go:build !openblas

package main

const openblasBuilt = false

func openblasSgemm(m, n, k int, a, b, c []float32) { panic("built without the openblas tag") }

func openblasInfo() (core string, threads int) { return "", 0 }
