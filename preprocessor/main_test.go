package preprocessor

import (
	"testing"

	"go.uber.org/goleak"

	"pgtrain/internal/testenv"
)

// A test that leaves a goroutine running fails the package: a leaked worker, ticker or
// subscription would outlive the Run that started it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.KnownLeaks()...)
}
