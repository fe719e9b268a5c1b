package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

type clientOpts struct {
	coord  string
	auth   coordAuthFlags
	wait   bool
	asJSON bool
	log    logFlags
}

func submitFlags() (*flag.FlagSet, *clientOpts) {
	o := &clientOpts{}
	fs := newFlagSet("submit", "submit [flags] SPEC.json|SPEC.yaml|-")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.BoolVar(&o.wait, "wait", false, "follow the job until it ends, printing progress and each epoch's loss")
	o.auth.register(fs)
	o.log.register(fs)
	return fs, o
}

func runSubmit(ctx context.Context, args []string) error {
	fs, o := submitFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	coord, wait, lf := &o.coord, &o.wait, &o.log
	if fs.NArg() != 1 {
		fs.Usage()
		return usagef("want exactly one spec file (or - for standard input), got %d arguments", fs.NArg())
	}
	log, err := lf.logger(os.Stderr)
	if err != nil {
		return err
	}
	spec, err := readSpec(fs.Arg(0))
	if err != nil {
		return err
	}
	c, err := o.auth.client(*coord, log, client.FailFast()) // a person waits: a wrong URL says so now
	if err != nil {
		return err
	}
	st, err := c.Submit(ctx, spec)
	if err != nil {
		return err
	}
	if st.State == messages.JobNothingNew {
		// Not a failure: a table followed with since "last" had no new row.
		fmt.Printf("job %s: %s\n", st.ID, st.Reason)
		return nil
	}
	fmt.Printf("submitted job %s: %d rows in %d ranges, %d epochs\n", st.ID, st.Rows, st.Ranges, st.Epochs)
	if !*wait {
		return nil
	}
	final, err := follow(ctx, c, st.ID, os.Stdout, 2*time.Second)
	if err != nil {
		return err
	}
	if final.State != messages.JobDone {
		return exitError{code: 1, msg: fmt.Sprintf("job %s %s: %s", final.ID, final.State, final.Error)}
	}
	fmt.Println(finalLine(final, fmt.Sprintf("%s under the --out-dir of trainer %s", final.ModelPath, modelTrainer(final))))
	return nil
}

// readSpec reads a job spec file; YAML is turned into JSON, which the coordinator takes.
func readSpec(path string) ([]byte, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the spec: %w", err)
	}
	trimmed := strings.TrimSpace(string(b))
	if strings.HasPrefix(trimmed, "{") {
		return b, nil
	}
	j, err := yamlToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("spec %s is neither JSON nor YAML: %w", path, err)
	}
	return j, nil
}

// yamlToJSON turns a YAML document into the JSON the coordinator takes. yaml/v3 follows
// YAML 1.2's core schema: only true and false are booleans, so a label or a category named
// y, yes, on or no stays a string (YAML 1.1, which sigs.k8s.io/yaml follows, made them
// booleans). Duplicate keys are an error; unknown fields are the coordinator's to refuse.
func yamlToJSON(b []byte) ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	doc, err := jsonValue(doc, "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}

// jsonValue makes a decoded YAML value encodable as JSON: a mapping with keys other than
// strings (JSON has no such thing) is an error naming where it is.
func jsonValue(v any, at string) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			var err error
			if v[k], err = jsonValue(e, at+"."+k); err != nil {
				return nil, err
			}
		}
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				where := strings.TrimPrefix(at, ".")
				if where == "" {
					where = "the spec"
				}
				return nil, fmt.Errorf("%s: key %v is not a string (quote it)", where, k)
			}
			var err error
			if m[ks], err = jsonValue(e, at+"."+ks); err != nil {
				return nil, err
			}
		}
		return m, nil
	case []any:
		for i, e := range v {
			var err error
			if v[i], err = jsonValue(e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

func statusFlags() (*flag.FlagSet, *clientOpts) {
	o := &clientOpts{}
	fs := newFlagSet("status", "status [flags] [JOB]")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.BoolVar(&o.asJSON, "json", false, "print the coordinator's JSON")
	o.auth.register(fs)
	o.log.register(fs)
	return fs, o
}

func runStatus(ctx context.Context, args []string) error {
	fs, o := statusFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return usagef("want at most one job id, got %d arguments", fs.NArg())
	}
	coord, asJSON, lf := &o.coord, &o.asJSON, &o.log
	log, err := lf.logger(os.Stderr)
	if err != nil {
		return err
	}
	c, err := o.auth.client(*coord, log, client.FailFast()) // a person waits: a wrong URL says so now
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		jobs, err := c.Jobs(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(jobs)
		}
		fmt.Printf("%-14s %-9s %-28s %10s %7s %s\n", "JOB", "STATE", "TABLE", "ROWS", "EPOCH", "LOSS")
		for _, j := range jobs {
			loss := "-"
			if n := len(j.Results); n > 0 {
				loss = fmt.Sprintf("%.6g", j.Results[n-1].Loss)
			}
			fmt.Printf("%-14s %-9s %-28s %10d %3d/%-3d %s\n", j.ID, j.State, j.Table, j.Rows, len(j.Results), j.Epochs, loss)
		}
		return nil
	}
	st, err := c.Job(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	// The bus is shared by every job; a coordinator that cannot read it still shows the job.
	busSt, busErr := c.Bus(ctx)
	if *asJSON {
		return printJSON(struct {
			*messages.JobStatus
			Bus *messages.BusStatus `json:"bus,omitempty"`
		}{st, busSt})
	}
	printStatus(os.Stdout, st)
	if busErr != nil {
		fmt.Printf("bus: %v\n", busErr)
	} else {
		printBus(os.Stdout, busSt)
	}
	return nil
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
