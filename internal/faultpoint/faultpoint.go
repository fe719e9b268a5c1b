package faultpoint

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// EnvVar is the environment variable Arm reads.
const EnvVar = "PGTRAIN_FAULT"

// The points the roles declare. Each name says where the process dies.
const (
	// FetcherAfterPublish: a RAW page that is not its range's last is acknowledged by the
	// stream, and the lease does not record it yet. The range's next holder publishes it
	// again; the message id must make the stream drop the copy.
	FetcherAfterPublish = "fetcher.after_publish"
	// FetcherAfterReport: the lease records the pages published so far (mid-range).
	FetcherAfterReport = "fetcher.after_report"
	// PreprocessorAfterReadyPublish: READY holds the batch, the RAW page is not acknowledged
	// yet. The page is redelivered; READY must refuse the second copy.
	PreprocessorAfterReadyPublish = "preprocessor.after_ready_publish"
	// PreprocessorAfterRawAck: the RAW page is acknowledged. Whatever was not stored in READY
	// by then is lost for good, so READY must have acknowledged the batch first.
	PreprocessorAfterRawAck = "preprocessor.after_raw_ack"
	// TrainerAfterCheckpoint: a range is trained and checkpointed, its progress not reported.
	TrainerAfterCheckpoint = "trainer.after_checkpoint"
	// ScorerAfterWrite: a batch's predictions are committed to the output table, the batch
	// is not reported nor acknowledged. It is delivered again; the upsert must not double a
	// row.
	ScorerAfterWrite = "scorer.after_write"
)

// Points lists every point a role declares.
var Points = []string{
	FetcherAfterPublish, FetcherAfterReport,
	PreprocessorAfterReadyPublish, PreprocessorAfterRawAck,
	TrainerAfterCheckpoint,
	ScorerAfterWrite,
}

type point struct {
	at    int64
	count atomic.Int64
}

// armed is written once by Arm, before the roles start, and only read afterwards.
var armed map[string]*point

// kill is what a point does when it fires; tests of this package replace it.
var kill = func(name string, n int64) {
	fmt.Fprintf(os.Stderr, "faultpoint: %s reached %d times; killing the process (%s)\n", name, n, EnvVar)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way; nothing more may happen here
}

// Arm parses spec ("name:N[,name:N...]", N ≥ 1) and arms those points. An empty spec
// disarms every point. It returns a description of what is armed ("" when nothing is), for
// the process to log.
func Arm(spec string) (string, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" {
		armed = nil
		return "", nil
	}
	known := map[string]bool{}
	for _, p := range Points {
		known[p] = true
	}
	m := map[string]*point{}
	for _, part := range strings.Split(spec, ",") {
		name, count, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return "", fmt.Errorf("%s: %q: want name:N", EnvVar, part)
		}
		if !known[name] {
			return "", fmt.Errorf("%s: unknown point %q (known: %s)", EnvVar, name, strings.Join(Points, ", "))
		}
		n, err := strconv.ParseInt(count, 10, 64)
		if err != nil || n < 1 {
			return "", fmt.Errorf("%s: %q: N must be a positive integer", EnvVar, part)
		}
		if _, dup := m[name]; dup {
			return "", fmt.Errorf("%s: point %q given twice", EnvVar, name)
		}
		m[name] = &point{at: n}
	}
	armed = m
	desc := make([]string, 0, len(m))
	for name, p := range m {
		desc = append(desc, name+":"+strconv.FormatInt(p.at, 10))
	}
	sort.Strings(desc)
	return strings.Join(desc, ","), nil
}

// Hit marks one pass through the named point; the pass that reaches the armed count kills
// the process.
func Hit(name string) {
	if armed == nil {
		return
	}
	p := armed[name]
	if p == nil {
		return
	}
	if n := p.count.Add(1); n == p.at {
		kill(name, n)
	}
}
