//go:build amd64 && !purego

package model

// selectKernel will pick an assembly kernel from the CPU's features; until then the
// portable one.
func selectKernel() gemmKernel { return goKernel }
