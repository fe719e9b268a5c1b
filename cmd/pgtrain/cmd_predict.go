package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"pgtrain/coordinator/client"
	"pgtrain/messages"
)

type predictOpts struct {
	client clientOpts
	spec   messages.PredictionSpec
}

func predictFlags() (*flag.FlagSet, *predictOpts) {
	o := &predictOpts{}
	fs := newFlagSet("predict", "predict --model ID --table T --out T_SCORES [flags]")
	o.register(fs, "the table (or view) to score: name or schema.name")
	fs.StringVar(&o.spec.Output, "out", "", "the output table: name or schema.name (plain identifiers; default schema: the table's)")
	fs.StringVar(&o.spec.Mode, "mode", messages.OutputCreate, "create (the output table must not exist), append (upsert into it) or replace (drop and create it)")
	fs.BoolVar(&o.spec.Probabilities, "probabilities", false, "also write every class's probability as a real[] (classification)")
	fs.Func("evaluate", "true: report the model's loss and metrics on the table's label column (which must be there); false: never; default: when the table has it", func(v string) error {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", v)
		}
		o.spec.Evaluate = &b
		return nil
	})
	return fs, o
}

// register adds the flags predict and evaluate share: where the job goes, the model, the
// table it reads and how, and --wait.
func (o *predictOpts) register(fs *flag.FlagSet, tableHelp string) {
	fs.StringVar(&o.client.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.StringVar(&o.spec.Model, "model", "", "the model: its training job's id")
	fs.StringVar(&o.spec.Source, "source", "", "the named source the table is in (default: the default source)")
	fs.StringVar(&o.spec.Table, "table", "", tableHelp)
	fs.Var(&o.spec.Key, "key", "its key column, or columns separated by commas (default: the model's key)")
	fs.Func("where", `filters, as a spec's where: a JSON list such as '[{"column": "region", "op": "=", "value": "eu"}]'`, func(v string) error {
		dec := json.NewDecoder(strings.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o.spec.Where); err != nil {
			return fmt.Errorf("want a JSON list of {column, op, value}: %w", err)
		}
		return nil
	})
	fs.IntVar(&o.spec.RangeRows, "range-rows", 0, "rows per key range (default: the coordinator's)")
	fs.IntVar(&o.spec.PageRows, "page-rows", 0, "rows per page (default: sized by the coordinator)")
	fs.BoolVar(&o.client.wait, "wait", false, "follow the job until it ends")
	o.client.auth.register(fs)
	o.client.log.register(fs)
}

func runPredict(ctx context.Context, args []string) error {
	fs, o := predictFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	return submitPrediction(ctx, fs, o, []struct{ name, v string }{{"model", o.spec.Model}, {"table", o.spec.Table}, {"out", o.spec.Output}})
}

// evaluateFlags are predict's without the output table: an evaluation writes nothing.
func evaluateFlags() (*flag.FlagSet, *predictOpts) {
	o := &predictOpts{}
	fs := newFlagSet("evaluate", "evaluate --model ID --table T [flags]")
	o.register(fs, "the table (or view) to evaluate on, holding the label column: name or schema.name")
	return fs, o
}

// runEvaluate submits a prediction job without an output table that evaluates the model.
func runEvaluate(ctx context.Context, args []string) error {
	fs, o := evaluateFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	evaluate := true
	o.spec.Evaluate = &evaluate
	return submitPrediction(ctx, fs, o, []struct{ name, v string }{{"model", o.spec.Model}, {"table", o.spec.Table}})
}

// submitPrediction submits the job of predict or evaluate once the required flags are
// there, and follows it with --wait.
func submitPrediction(ctx context.Context, fs *flag.FlagSet, o *predictOpts, required []struct{ name, v string }) error {
	if fs.NArg() != 0 {
		fs.Usage()
		return usagef("unexpected arguments %q: everything is a flag", fs.Args())
	}
	for _, f := range required {
		if f.v == "" {
			fs.Usage()
			return usagef("--%s is required", f.name)
		}
	}
	log, err := o.client.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	c, err := o.client.auth.client(o.client.coord, log, client.FailFast()) // a person waits: a wrong URL says so now
	if err != nil {
		return err
	}
	body, err := json.Marshal(o.spec)
	if err != nil {
		return err
	}
	st, err := c.SubmitPrediction(ctx, body)
	if err != nil {
		return err
	}
	p := st.Prediction
	if p.Output == "" {
		fmt.Printf("submitted evaluation job %s: model %s on %s (%d rows in %d ranges)\n", st.ID, p.Model, st.Table, st.Rows, st.Ranges)
	} else {
		fmt.Printf("submitted prediction job %s: model %s scores %s (%d rows in %d ranges) into %s (%s)\n",
			st.ID, p.Model, st.Table, st.Rows, st.Ranges, p.Output, p.Mode)
	}
	if !o.client.wait {
		return nil
	}
	final, err := follow(ctx, c, st.ID, os.Stdout, 2*time.Second)
	if err != nil {
		return err
	}
	if final.State != messages.JobDone {
		return exitError{code: 1, msg: fmt.Sprintf("job %s %s: %s", final.ID, final.State, final.Error)}
	}
	fmt.Println(predictionFinalLine(final))
	return nil
}
