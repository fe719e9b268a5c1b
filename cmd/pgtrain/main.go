// Command pgtrain trains Keras-style Sequential models on PostgreSQL tables.
//
// One binary runs every role: `pgtrain up` runs them all in one process on embedded
// defaults; `coordinator`, `fetcher`, `preprocessor`, `trainer`, `scorer` and `nats` run one
// role each for a real cluster; `submit`, `predict` and `status` talk to a coordinator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
	// flags builds the command's flag set (for the compose file check).
	flags func() *flag.FlagSet
}

func flagsOf[T any](f func() (*flag.FlagSet, T)) func() *flag.FlagSet {
	return func() *flag.FlagSet { fs, _ := f(); return fs }
}

func commands() []command {
	return []command{
		{"up", "run every role in one process (embedded NATS, throwaway PostgreSQL unless --dsn)", runUp, flagsOf(upFlags)},
		{"coordinator", "serve the job API, plan jobs and lease key ranges to fetchers", runCoordinator, flagsOf(coordinatorFlags)},
		{"fetcher", "read leased key ranges from PostgreSQL and publish them to RAW", runFetcher, flagsOf(fetcherFlags)},
		{"preprocessor", "turn RAW pages into READY feature batches", runPreprocessor, flagsOf(preprocessorFlags)},
		{"trainer", "train claimed jobs on READY batches in the deterministic order", runTrainer, flagsOf(trainerFlags)},
		{"scorer", "transform prediction jobs' pages, run the model and write the predictions to PostgreSQL", runScorer, flagsOf(scorerFlags)},
		{"nats", "run an embedded nats-server with JetStream (for clusters without one)", runNATS, flagsOf(natsServerFlags)},
		{"submit", "submit a job spec (JSON or YAML) to a coordinator", runSubmit, flagsOf(submitFlags)},
		{"demo-data", "create the demo table in a database (for a cluster; `up --demo` does it itself)", runDemoData, flagsOf(demoDataFlags)},
		{"predict", "score a table with a trained model into an output table", runPredict, flagsOf(predictFlags)},
		{"evaluate", "report a trained model's loss and metrics on a table holding the label", runEvaluate, flagsOf(evaluateFlags)},
		{"status", "show a job (or all jobs): progress, leases, per-epoch loss", runStatus, flagsOf(statusFlags)},
		{"models", "list the trained models, or pull one (pull ID DIR)", runModels, flagsOf(modelsFlags)},
		{"cancel", "cancel a running job (the trainer keeps its last checkpoint)", runCancel, flagsOf(cancelFlags)},
		{"delete", "delete a finished job: its state, its plan and its batches on the bus", runDelete, flagsOf(deleteFlags)},
		{"probe", "GET a health URL (/healthz, /readyz) and exit 0 if it answers 2xx, else 1 (for container healthchecks)", runProbe, flagsOf(probeFlags)},
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, `pgtrain trains Keras-style Sequential models on data that lives in PostgreSQL.

Usage: pgtrain <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(os.Stderr, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(os.Stderr, `
Run "pgtrain <command> --help" for a command's flags. Every flag can also be set through an
environment variable: --nats-url is PGTRAIN_NATS_URL, --dsn is PGTRAIN_DSN, and so on.
`)
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	name, args := os.Args[1], os.Args[2:]
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		// First Ctrl-C or SIGTERM: shut down cleanly. A second one: exit at once.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		go func() {
			<-ctx.Done()
			stop()
		}()
		if err := c.run(ctx, args); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "pgtrain "+name+":", err)
			os.Exit(exitCode(err))
		}
		return
	}
	fmt.Fprintf(os.Stderr, "pgtrain: unknown command %q\n\n", name)
	usage()
	os.Exit(2)
}

// exitError carries a specific exit code (e.g. a job that failed).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return e.msg }

// usageError is a command line that cannot run (a bad flag or flag value, a missing or
// extra argument): exit status 2, the flag package's convention, so scripts can tell it
// from a run that failed.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef is a usageError with a message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitCode is the exit status for a command's error: the code an exitError (wrapped or
// not) carries, 2 for a usage error, else 1.
func exitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}
