//go:build amd64 && !purego

package model

import (
	"os"
	"unsafe"

	"golang.org/x/sys/cpu"
)

//go:noescape
func biasReLURowsAVX512(z, b *float32, rows, cols, ld int, bias, relu bool)

//go:noescape
func reluGradRowsAVX512(dy, y, db *float32, rows, cols, ld int, sum bool)

//go:noescape
func copyPanelAVX512(dst *float32, ldd int, src *float32, lds, n, kc int)

//go:noescape
func adamAVX512(w, grad, m, v *float32, n int, omb1, omb2, alpha, eps float32)

//go:noescape
func adamTFJSAVX512(w, grad, m, v *float32, n int, c *[8]float32)

// vecAVX512 reports whether the AVX-512 loops of vec_amd64.s run (PGTRAIN_GEMM_KERNEL=go or
// avx2 keeps the Go loops, as it keeps the Go or AVX2 matrix kernel).
var vecAVX512 = cpu.X86.HasAVX512F && os.Getenv("PGTRAIN_GEMM_KERNEL") != "go" && os.Getenv("PGTRAIN_GEMM_KERNEL") != "avx2"

// rowsSpan checks that a block of rows×cols values with row stride ld fits in s.
func rowsSpan(s []float32, rows, cols, ld int) {
	if rows > 0 && cols > 0 {
		_ = s[(rows-1)*ld+cols-1]
	}
}

// vecBiasReLU adds b (nil for none) to every row of the rows×cols block z (row stride ld)
// and, when relu, clears the values whose sign bit is set. It reports false when it has no
// vector loop for this machine, having done nothing.
func vecBiasReLU(z, b []float32, rows, cols, ld int, relu bool) bool {
	if !vecAVX512 || rows <= 0 || cols <= 0 {
		return false
	}
	rowsSpan(z, rows, cols, ld)
	bp := (*float32)(nil)
	if b != nil {
		_ = b[cols-1]
		bp = unsafe.SliceData(b)
	}
	biasReLURowsAVX512(unsafe.SliceData(z), bp, rows, cols, ld, b != nil, relu)
	return true
}

// vecReLUGrad zeroes dy where y (the relu's output) is not positive, over a rows×cols block
// of row stride ld, adding each row to db (nil for none) in row order.
func vecReLUGrad(dy, y, db []float32, rows, cols, ld int) bool {
	if !vecAVX512 || rows <= 0 || cols <= 0 {
		return false
	}
	rowsSpan(dy, rows, cols, ld)
	rowsSpan(y, rows, cols, ld)
	dbp := (*float32)(nil)
	if db != nil {
		_ = db[cols-1]
		dbp = unsafe.SliceData(db)
	}
	reluGradRowsAVX512(unsafe.SliceData(dy), unsafe.SliceData(y), dbp, rows, cols, ld, db != nil)
	return true
}

// vecAdam is the Keras form of the Adam update over w, g, m, v (of one length).
func vecAdam(w, g, m, v []float32, omb1, omb2, alpha, eps float32) bool {
	n := len(w)
	if !vecAVX512 || n == 0 {
		return false
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	adamAVX512(unsafe.SliceData(w), unsafe.SliceData(g), unsafe.SliceData(m), unsafe.SliceData(v), n, omb1, omb2, alpha, eps)
	return true
}

// vecAdamTFJS is the TF.js form, c = {β1, 1−β1, β2, 1−β2, 1−β1^t, 1−β2^t, ε, −lr}.
func vecAdamTFJS(w, g, m, v []float32, c *[8]float32) bool {
	n := len(w)
	if !vecAVX512 || n == 0 {
		return false
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	adamTFJSAVX512(unsafe.SliceData(w), unsafe.SliceData(g), unsafe.SliceData(m), unsafe.SliceData(v), n, c)
	return true
}

// vecCopyPanel copies kc rows of n ≤ 32 contiguous values, dst[p*ldd+j] = src[p*lds+j].
func vecCopyPanel(dst []float32, ldd int, src []float32, lds, n, kc int) bool {
	if !vecAVX512 || n > 32 || n <= 0 || kc <= 0 {
		return false
	}
	_, _ = dst[(kc-1)*ldd+n-1], src[(kc-1)*lds+n-1]
	copyPanelAVX512(unsafe.SliceData(dst), ldd, unsafe.SliceData(src), lds, n, kc)
	return true
}
