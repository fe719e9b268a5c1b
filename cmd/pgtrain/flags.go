package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// newFlagSet makes a flag set whose usage text lists the flags with their environment names.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: pgtrain %s\n\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(out, "  --%s\n        %s%s [$%s]\n", f.Name, f.Usage, def, envName(f.Name))
		})
	}
	return fs
}

func envName(flagName string) string {
	return "PGTRAIN_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse reads the command line, then fills every flag not given there from its PGTRAIN_*
// environment variable. Its errors, but --help, are usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = usagef("$%s: %w", envName(f.Name), e)
			}
		}
	})
	return err
}

// parseNoArgs is parse for the commands that take flags only: a stray argument (a flag
// given after one, or a typo) is a usage error rather than silently ignored.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: pgtrain %s takes flags only", fs.Arg(0), fs.Name())
	}
	return nil
}

// sourceFlags collects repeated --source name=dsn flags.
type sourceFlags map[string]string

func (s sourceFlags) String() string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func (s sourceFlags) Set(v string) error {
	for _, part := range strings.Split(v, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, dsn, ok := strings.Cut(part, "=")
		if !ok || name == "" || dsn == "" {
			return fmt.Errorf("want name=dsn, got %q", redactSource(part))
		}
		s[strings.TrimSpace(name)] = strings.TrimSpace(dsn)
	}
	return nil
}

func redactSource(s string) string {
	name, _, _ := strings.Cut(s, "=")
	return name + "=…"
}

type logFlags struct {
	level  string
	format string
}

// register adds --log-level (default info, or the level already in l) and --log-format.
func (l *logFlags) register(fs *flag.FlagSet) {
	if l.level == "" {
		l.level = "info"
	}
	fs.StringVar(&l.level, "log-level", l.level, "log level: debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", l.format)
}

// listFlag collects a repeatable flag; one value may also list several, separated by ','
// (how the environment gives them).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}
