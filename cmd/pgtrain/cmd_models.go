package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"pgtrain/coordinator/client"
)

func modelsFlags() (*flag.FlagSet, *clientOpts) {
	o := &clientOpts{}
	fs := newFlagSet("models", "models [flags] [pull ID DIR]")
	fs.StringVar(&o.coord, "coordinator", "http://127.0.0.1:8080", "coordinator URL")
	fs.BoolVar(&o.asJSON, "json", false, "print the coordinator's JSON (the list)")
	o.auth.register(fs)
	o.log.register(fs)
	return fs, o
}

// runModels lists the stored models, or with "pull ID DIR" downloads one into DIR (a TF.js
// Layers model whose model.json carries the preprocessing; a token with the data scope).
func runModels(ctx context.Context, args []string) error {
	fs, o := modelsFlags()
	if err := parse(fs, args); err != nil {
		return err
	}
	pull := fs.NArg() > 0
	if pull && (fs.Arg(0) != "pull" || fs.NArg() != 3) {
		fs.Usage()
		return usagef("want no argument (list the models) or pull ID DIR")
	}
	log, err := o.log.logger(os.Stderr)
	if err != nil {
		return err
	}
	c, err := o.auth.client(o.coord, log, client.FailFast()) // a person waits: a wrong URL says so now
	if err != nil {
		return err
	}
	if pull {
		id, dir := fs.Arg(1), fs.Arg(2)
		if err := c.PullModel(ctx, id, dir); err != nil {
			return err
		}
		fmt.Printf("model %s is in %s\n", id, dir)
		return nil
	}
	models, err := c.Models(ctx)
	if err != nil {
		return err
	}
	if o.asJSON {
		return printJSON(models)
	}
	fmt.Printf("%-14s %-20s %-28s %-14s %10s %s\n", "MODEL", "STORED", "TABLE", "KIND", "ROWS", "METRICS")
	for _, m := range models {
		table, kind, rows, metrics := "-", "-", "-", m.MetadataError
		if md := m.Metadata; md != nil {
			table, kind, rows = md.Schema+"."+md.Table, md.LabelKind, fmt.Sprint(md.Rows)
			var parts []string
			for k, v := range md.Metrics {
				parts = append(parts, fmt.Sprintf("%s=%.6g", k, v))
			}
			slices.Sort(parts)
			metrics = strings.Join(parts, " ")
		}
		fmt.Printf("%-14s %-20s %-28s %-14s %10s %s\n", m.JobID, m.Stored.UTC().Format("2006-01-02 15:04:05"), table, kind, rows, metrics)
	}
	return nil
}
