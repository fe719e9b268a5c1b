//go:build openblas

package main

/*
#cgo LDFLAGS: -lopenblas
#include <cblas.h>
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
*/
import "C"

import "unsafe"

const openblasBuilt = true

// openblasSgemm computes C = A·B (row-major, m×k times k×n) with OpenBLAS.
func openblasSgemm(m, n, k int, a, b, c []float32) {
	C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasNoTrans, C.blasint(m), C.blasint(n), C.blasint(k),
		1, (*C.float)(unsafe.Pointer(&a[0])), C.blasint(k), (*C.float)(unsafe.Pointer(&b[0])), C.blasint(n),
		0, (*C.float)(unsafe.Pointer(&c[0])), C.blasint(n))
}

func openblasInfo() (core string, threads int) {
	return C.GoString(C.openblas_get_corename()), int(C.openblas_get_num_threads())
}
