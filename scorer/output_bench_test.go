package scorer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// What writing the output costs PostgreSQL: 500k rows in pages of 4096 from key ranges of
// 50k in a shuffled order, by two writers (two scorers), into a table keyed from the start
// (mode append's path) and into one without its key, through the ledger, keyed at the end
// (modes create and replace), with an integer key and with a text key (a typed key's
// path). pg-cpu-s is the backends' CPU, read from /proc (0 when the server is not on this
// host). Run with
// go test -run '^$' -bench OutputWriter -benchtime 3x ./scorer/
func BenchmarkOutputWriter(b *testing.B) {
	_, dsn := testenv.Pool(b)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "pgtrain_output_bench"
	cfg.MaxConns, cfg.MinConns = 3, 3
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	const rows, rangeRows, pageRows = 500_000, 50_000, 4096
	ranges := rand.New(rand.NewPCG(1, 2)).Perm(rows / rangeRows)
	for _, c := range []struct{ ledger, typed bool }{{false, false}, {true, false}, {true, true}} {
		ledger := c.ledger
		b.Run(fmt.Sprintf("ledger=%v/typed=%v", ledger, c.typed), func(b *testing.B) {
			var cpu float64
			run := 0
			for b.Loop() {
				b.StopTimer()
				run++
				plan := regressionPlan(fmt.Sprintf("bench_out_%v_%v_%d", ledger, c.typed, run))
				plan.JobID = fmt.Sprintf("bench-%v-%v-%d", ledger, c.typed, run)
				keyType := "bigint"
				if c.typed {
					keyType = "text"
					plan.KeyColumns = []messages.KeyColumn{{Name: "id", Type: "text"}}
				}
				create := "create table " + pgx.Identifier{plan.Prediction.OutputTable}.Sanitize() + " (id " + keyType + " primary key, value real)"
				if ledger {
					create = "create table " + pgx.Identifier{plan.Prediction.OutputTable}.Sanitize() + " (id " + keyType + ", value real)"
					plan.Prediction.Ledger = "pgtrain_ledger_" + plan.JobID
					if _, err := pool.Exec(ctx, "create table "+pgx.Identifier{plan.Prediction.Ledger}.Sanitize()+
						" (range_no integer, page_no integer, primary key (range_no, page_no))"); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := pool.Exec(ctx, create); err != nil {
					b.Fatal(err)
				}
				w, err := NewOutputWriter(pool, plan)
				if err != nil {
					b.Fatal(err)
				}
				before := backendCPU(b, pool)
				b.StartTimer()
				work := make(chan int)
				var wg sync.WaitGroup
				for range 2 {
					wg.Go(func() {
						for r := range work {
							for p := 0; p*pageRows < rangeRows; p++ {
								n := min(pageRows, rangeRows-p*pageRows)
								rows := batchRows(int64(r*rangeRows+p*pageRows), int64(n), 1)
								if c.typed {
									for _, row := range rows {
										row[0] = fmt.Sprintf("k%09d", row[0])
									}
								}
								if err := w.Write(ctx, messages.BatchID{Range: r, Page: p}, rows); err != nil {
									b.Error(err)
								}
							}
						}
					})
				}
				for _, r := range ranges {
					work <- r
				}
				close(work)
				wg.Wait()
				if ledger {
					if _, err := pool.Exec(ctx, "alter table "+pgx.Identifier{plan.Prediction.OutputTable}.Sanitize()+" add primary key (id)"); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				cpu += backendCPU(b, pool) - before
				b.StartTimer()
			}
			b.ReportMetric(cpu/float64(run), "pg-cpu-s/op")
		})
	}
}

// backendCPU sums the CPU seconds of the benchmark's server backends, from /proc.
func backendCPU(b *testing.B, pool *pgxpool.Pool) float64 {
	rows, err := pool.Query(context.Background(), `select pid from pg_stat_activity where application_name = 'pgtrain_output_bench'`)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		b.Fatal(err)
	}
	var ticks float64
	for _, pid := range pids {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(int(pid)) + "/stat")
		if err != nil {
			continue // not on this host
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 12 {
			u, _ := strconv.ParseFloat(f[11], 64) // utime
			k, _ := strconv.ParseFloat(f[12], 64) // stime
			ticks += u + k
		}
	}
	return ticks / 100 // USER_HZ
}
