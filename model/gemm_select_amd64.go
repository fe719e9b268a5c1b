//go:build amd64 && !purego

package model

import (
	"os"
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:generate python3 gemm_asm_gen.py

//go:noescape
func sgemmKernelAVX512(kc int, a, b, c *float32, ldc int, load bool)

//go:noescape
func sgemmKernelAVX512Rows(kc int, a *float32, lda int, b, c *float32, ldc int, load bool)

//go:noescape
func sgemmKernelAVX512BRows(kc int, a, b *float32, ldb int, c *float32, ldc int, load bool)

//go:noescape
func sgemmKernelAVX2(kc int, a, b, c *float32, ldc int, load bool)

var (
	avx512Kernel = gemmKernel{name: "avx512-12x32", mr: 12, nr: 32, fn: func(kc int, a, b, c []float32, ldc int, load bool) {
		// The packed panels hold kc·mr and kc·nr values and c reaches row 11, column 31:
		// check once here so the assembly can run unchecked.
		_, _, _ = a[kc*12-1], b[kc*32-1], c[11*ldc+31]
		sgemmKernelAVX512(kc, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, load)
	}, fnRows: func(kc int, a []float32, lda int, b, c []float32, ldc int, load bool) {
		_, _, _ = a[11*lda+kc-1], b[kc*32-1], c[11*ldc+31]
		sgemmKernelAVX512Rows(kc, unsafe.SliceData(a), lda, unsafe.SliceData(b), unsafe.SliceData(c), ldc, load)
	}, fnBRows: func(kc int, a, b []float32, ldb int, c []float32, ldc int, load bool) {
		_, _, _ = a[kc*12-1], b[(kc-1)*ldb+31], c[11*ldc+31]
		sgemmKernelAVX512BRows(kc, unsafe.SliceData(a), unsafe.SliceData(b), ldb, unsafe.SliceData(c), ldc, load)
	}}
	avx2Kernel = gemmKernel{name: "avx2-6x16", mr: 6, nr: 16, fn: func(kc int, a, b, c []float32, ldc int, load bool) {
		_, _, _ = a[kc*6-1], b[kc*16-1], c[5*ldc+15]
		sgemmKernelAVX2(kc, unsafe.SliceData(a), unsafe.SliceData(b), unsafe.SliceData(c), ldc, load)
	}}
)

// selectKernel picks the widest kernel the CPU and OS support. PGTRAIN_GEMM_KERNEL=go,
// avx2 or avx512 overrides the choice (for tests and benchmarks of each path).
func selectKernel() gemmKernel {
	best := goKernel
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		best = avx2Kernel
	}
	if cpu.X86.HasAVX512F {
		best = avx512Kernel
	}
	switch os.Getenv("PGTRAIN_GEMM_KERNEL") {
	case "go":
		return goKernel
	case "avx2":
		if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
			return avx2Kernel
		}
	case "avx512":
		if cpu.X86.HasAVX512F {
			return avx512Kernel
		}
	}
	return best
}

// availableAsmKernels lists the assembly kernels this CPU can run (for tests).
func availableAsmKernels() []gemmKernel {
	var ks []gemmKernel
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel)
	}
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernel)
	}
	return ks
}
