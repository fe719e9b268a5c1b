package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// python is the interpreter the Python baselines run on, when one has psycopg2, NumPy and
// pandas.
type python struct {
	ok       bool
	path     string
	versions string
	reason   string // why the baselines do not run
}

func (p python) describe() string {
	if !p.ok {
		return "not installed (" + p.reason + ")"
	}
	return p.path + ": " + p.versions
}

// findPython looks for Debian's python3 first: python3-psycopg2, python3-numpy and
// python3-pandas install there, and a python3 earlier on PATH (pyenv, a venv) may not see
// them.
func findPython(ctx context.Context, flagValue string) python {
	var candidates []string
	switch flagValue {
	case "off":
		return python{reason: "--python off"}
	case "auto", "":
		candidates = []string{"/usr/bin/python3", "python3"}
	default:
		candidates = []string{flagValue}
	}
	// Every interpreter tried is named in the reason, so a run that skips the baselines says
	// where it looked (the system one first, not only the last on PATH).
	var tried []string
	for _, c := range candidates {
		path, err := exec.LookPath(c)
		if err != nil {
			tried = append(tried, c+": not found")
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(cctx, path, "-c",
			`import sys, psycopg2, numpy, pandas; print("Python %s, psycopg2 %s, NumPy %s, pandas %s" % (sys.version.split()[0], psycopg2.__version__.split()[0], numpy.__version__, pandas.__version__))`).CombinedOutput()
		cancel()
		if err != nil {
			tried = append(tried, path+" lacks psycopg2, NumPy or pandas")
			continue
		}
		return python{ok: true, path: path, versions: strings.TrimSpace(string(out))}
	}
	return python{reason: strings.Join(tried, "; ") + " (apt-get install python3-psycopg2 python3-numpy python3-pandas)"}
}

func (h *harness) baselineScript() (string, error) {
	if h.o.baselinePy != "" {
		return filepath.Abs(h.o.baselinePy)
	}
	if h.root == "" {
		return "", errors.New("not inside the pgtrain module: give --baseline-py")
	}
	p := filepath.Join(h.root, "bench", "baseline.py")
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

func (h *harness) pythonBaseline(ctx context.Context, py python, method, table string, rows int64) (baselineResult, error) {
	script, err := h.baselineScript()
	if err != nil {
		return baselineResult{}, err
	}
	var out baselineOutput
	before := pgCPUSeconds(h.pg.DataDir)
	rss, err := runJSON(ctx, 30*time.Minute, &out, py.path, script, "--dsn", h.dsn, "--table", table, "--method", method)
	out.PGCPUSeconds = settledPGCPU(h.pg.DataDir) - before
	if err != nil {
		return baselineResult{}, fmt.Errorf("python baseline %s: %w", method, err)
	}
	return h.checkBaseline("python", method, out, rss, rows)
}
