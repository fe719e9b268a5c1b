package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README shows parity/predict_snippet.js, which TestModelArtifactAndOnlinePrediction
// runs: the two must not drift apart.
func TestREADMEShowsThePredictSnippet(t *testing.T) {
	root := repoRoot(t)
	snippet, err := os.ReadFile(filepath.Join(root, "parity", "predict_snippet.js"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```js\n"+string(snippet)+"```\n") {
		t.Fatal("README.md does not show parity/predict_snippet.js as it is: copy the file into its js block")
	}
}
