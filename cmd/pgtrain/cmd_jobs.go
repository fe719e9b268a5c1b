package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"pgtrain/coordinator/client"
)

func cancelFlags() (*flag.FlagSet, *clientOpts) { return jobControlFlags("cancel") }
func deleteFlags() (*flag.FlagSet, *clientOpts) { return jobControlFlags("delete") }

func jobControlFlags(name string) (*flag.FlagSet, *clientOpts) {
	o := &clientOpts{}
	fs := newFlagSet(name, name+" [flags] JOB")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	o.auth.register(fs)
	o.log.register(fs)
	return fs, o
}

// jobControlClient parses a job control command's flags and its one JOB argument.
func jobControlClient(fs *flag.FlagSet, o *clientOpts, args []string) (*client.Client, string, error) {
	if err := parse(fs, args); err != nil {
		return nil, "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, "", usagef("want exactly one job id, got %d arguments", fs.NArg())
	}
	log, err := o.log.logger(os.Stderr)
	if err != nil {
		return nil, "", err
	}
	c, err := o.auth.client(o.coord, log, client.FailFast()) // a person waits: a wrong URL says so now
	if err != nil {
		return nil, "", err
	}
	return c, fs.Arg(0), nil
}

func runCancel(ctx context.Context, args []string) error {
	fs, o := cancelFlags()
	c, id, err := jobControlClient(fs, o, args)
	if err != nil {
		return err
	}
	st, err := c.Cancel(ctx, id)
	if err != nil {
		return err
	}
	fmt.Printf("job %s %s in epoch %d/%d; the trainer stops at its next report and keeps its last checkpoint\n",
		st.ID, st.State, min(st.Trainer.Epoch+1, st.Epochs), st.Epochs)
	return nil
}

func runDelete(ctx context.Context, args []string) error {
	fs, o := deleteFlags()
	c, id, err := jobControlClient(fs, o, args)
	if err != nil {
		return err
	}
	if err := c.Delete(ctx, id); err != nil {
		return err
	}
	fmt.Printf("job %s deleted\n", id)
	return nil
}
