package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// predict and evaluate take a composite key as a comma-separated list and filters as a
// JSON list, which reach the spec as a training spec's key and where; a malformed --where
// is a usage error naming the flag.
func TestPredictKeyAndWhereFlags(t *testing.T) {
	for _, flags := range []func() (*predictOpts, error){
		func() (*predictOpts, error) {
			fs, o := predictFlags()
			return o, parse(fs, []string{"--key", "tenant, id", "--where", `[{"column": "region", "op": "=", "value": "eu'; --"}]`})
		},
		func() (*predictOpts, error) {
			fs, o := evaluateFlags()
			return o, parse(fs, []string{"--key", "tenant,id", "--where", `[{"column": "region", "op": "=", "value": "eu'; --"}]`})
		},
	} {
		o, err := flags()
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(o.spec)
		if err != nil {
			t.Fatal(err)
		}
		if want := `"key":["tenant","id"],"where":[{"column":"region","op":"=","value":"eu'; --"}]`; !strings.Contains(string(body), want) {
			t.Fatalf("spec %s does not hold %s", body, want)
		}
	}
	fs, _ := predictFlags()
	err := parse(fs, []string{"--where", `{"column": "region"}`})
	if err == nil || !strings.Contains(err.Error(), "where") {
		t.Fatalf("a --where that is not a list: %v", err)
	}
}
