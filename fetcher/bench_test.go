package fetcher

import (
	"context"
	"fmt"
	"testing"
	"time"

	"pgtrain/internal/bus"
	"pgtrain/internal/testenv"
)

// BenchmarkFetch1M reads a 1M-row table (int8 key, 16 float8 features with NULLs, one text
// column, a float8 label) in 20 ranges of 5000-row pages and publishes it to RAW, with one
// and with two fetchers. Run it with -benchtime=1x: one operation is the whole table.
//
//	go test ./fetcher -run XXX -bench Fetch1M -benchtime 1x
func BenchmarkFetch1M(b *testing.B) {
	const rows = 1_000_000
	pool, _ := testenv.Pool(b)
	bs := testBus(b)
	start := time.Now()
	plan := fetchTable(b, pool, "bench-0", rows, 16, 20, 5000)
	b.Logf("created %d rows in %s", rows, time.Since(start).Round(time.Millisecond))

	b.Run("reader_only", func(b *testing.B) {
		r, err := NewRangeReader(pool, plan, int(bs.NC.MaxPayload())-DefaultPayloadHeadroom)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			n, bytes := 0, 0
			for _, kr := range plan.Ranges {
				last := int64(0)
				for p := 0; ; p++ {
					pg, err := r.ReadPage(context.Background(), 0, kr, p, last, nil)
					if err != nil {
						b.Fatal(err)
					}
					n += pg.Batch.Rows()
					bytes += len(pg.Data)
					if pg.Batch.Last {
						break
					}
					last = pg.LastKey
				}
			}
			if n != rows {
				b.Fatalf("read %d rows", n)
			}
			b.SetBytes(int64(bytes))
		}
		b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	})
	for _, fetchers := range []int{1, 2} {
		b.Run(fmt.Sprintf("fetchers=%d", fetchers), func(b *testing.B) {
			i := 0
			for b.Loop() {
				b.StopTimer()
				if err := bs.Raw.Purge(context.Background()); err != nil {
					b.Fatal(err)
				}
				i++
				p := *plan
				p.JobID = fmt.Sprintf("bench-%d-%d", fetchers, i)
				if err := bus.PutPlan(context.Background(), bs.State, &p); err != nil {
					b.Fatal(err)
				}
				lt := newLeaseTable(p.JobID, p.Ranges)
				b.StartTimer()
				fs := make([]*Fetcher, fetchers)
				for k := range fs {
					fs[k], _, _ = startFetcher(b, Config{WorkerID: fmt.Sprint("f", k), Poll: 5 * time.Millisecond},
						pool, bs, lt)
				}
				testenv.Eventually(b, 10*time.Minute, "every range done", lt.allDone)
				b.StopTimer()
				var got, bytes int64
				for _, f := range fs {
					got += f.Stats().Rows
					bytes += f.Stats().Bytes
				}
				if got != rows {
					b.Fatalf("published %d rows", got)
				}
				b.SetBytes(bytes)
				b.StartTimer()
			}
			b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
