//go:build !amd64 || purego

package model

// Without vector loops the callers run their Go loops.

func vecBiasReLU(z, b []float32, rows, cols, ld int, relu bool) bool    { return false }
func vecReLUGrad(dy, y, db []float32, rows, cols, ld int) bool          { return false }
func vecAdam(w, g, m, v []float32, omb1, omb2, alpha, eps float32) bool { return false }
func vecAdamTFJS(w, g, m, v []float32, c *[8]float32) bool              { return false }
func vecCopyPanel(dst []float32, ldd int, src []float32, lds, n, kc int) bool {
	return false
}
