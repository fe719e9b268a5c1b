package scorer

import (
	"testing"

	"go.uber.org/goleak"
)

// A test that leaves a goroutine running fails the package: a leaked worker, ticker or
// subscription would outlive the Run that started it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
