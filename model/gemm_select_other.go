//go:build !amd64 || purego

package model

func selectKernel() gemmKernel { return goKernel }

func availableAsmKernels() []gemmKernel { return nil }
