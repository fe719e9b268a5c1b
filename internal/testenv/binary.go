package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildBinary builds cmd/pgtrain from this tree into dir, once for a suite that runs the
// roles as real processes, and returns its path.
func BuildBinary(dir string) (string, error) {
	binary := filepath.Join(dir, "pgtrain")
	build := exec.Command("go", "build", "-o", binary, "pgtrain/cmd/pgtrain")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building pgtrain: %w", err)
	}
	return binary, nil
}
