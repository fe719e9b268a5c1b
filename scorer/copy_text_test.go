package scorer

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/internal/testenv"
	"pgtrain/messages"
)

// unescapeCopyText reads back one value of COPY's text format, as PostgreSQL does for the
// escapes appendCopyText writes.
func unescapeCopyText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func TestAppendCopyRow(t *testing.T) {
	got, err := appendCopyRow(nil, []any{"a\tb\\c\nd\re", float32(0.1), []float32{1, float32(math.NaN()), float32(math.Inf(-1))}, int64(-7), nil})
	if err != nil {
		t.Fatal(err)
	}
	want := "a\\tb\\\\c\\nd\\re\t0.1\t{1,NaN,-Infinity}\t-7\t\\N\n"
	if string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	if _, err := appendCopyRow(nil, []any{"k", 1.5}); err == nil || !strings.Contains(err.Error(), "column 2") {
		t.Fatalf("a float64 value: %v, want an error naming column 2", err)
	}
}

// Whatever a key's text holds, its COPY form is one value on one row (no raw tab, newline
// or carriage return) that reads back as the same text.
func FuzzAppendCopyText(f *testing.F) {
	for _, s := range []string{"", "plain", "tab\there", "line\nbreak\r\n", `back\slash\`, `\N`, `\.`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := string(appendCopyText(nil, s))
		if strings.ContainsAny(got, "\t\n\r") {
			t.Fatalf("%q escapes to %q, which holds a separator", s, got)
		}
		if back := unescapeCopyText(got); back != s {
			t.Fatalf("%q escapes to %q, which reads back as %q", s, got, back)
		}
	})
}

// A classification's output rows with a typed key, through COPY's text format into a real
// table: the key text (with every character COPY escapes) and the class come back as
// written, and every real, the extremes included, as the same float32.
func TestCopyTextRoundTrip(t *testing.T) {
	pool, _ := testenv.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `create table classes_out (name text primary key, class text, probability real, probabilities real[])`); err != nil {
		t.Fatal(err)
	}
	reals := []float32{0.1, 1.0 / 3, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32, -math.MaxFloat32, 1e-38,
		float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN())}
	names := []string{"a\tb", "c\nd", "e\\f", "g\rh", `\.`, `\N`, "Ölberg", "it's; --", "", " spaced "}
	plan := &messages.Plan{JobID: "j-1", Key: "name", KeyColumns: []messages.KeyColumn{{Name: "name", Type: "text"}},
		Prediction: &messages.PredictionPlan{OutputSchema: "public", OutputTable: "classes_out", Task: messages.TaskClassification,
			Classes: []string{"x", "y"}, Probabilities: true}}
	w, err := NewOutputWriter(pool, plan)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]any
	for i, n := range names {
		rows = append(rows, []any{n, "class\t" + n, reals[i], []float32{reals[i], reals[len(reals)-1-i]}})
	}
	if err := w.Write(ctx, batch(0), rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		var class string
		var p float32
		var ps []float32
		if err := pool.QueryRow(ctx, `select class, probability, probabilities from classes_out where name = $1`, r[0]).Scan(&class, &p, &ps); err != nil {
			t.Fatalf("key %q: %v", r[0], err)
		}
		want := r[3].([]float32)
		if class != r[1] || !sameReal(p, r[2].(float32)) || len(ps) != 2 || !sameReal(ps[0], want[0]) || !sameReal(ps[1], want[1]) {
			t.Fatalf("key %q: read back %q %v %v, wrote %q %v %v", r[0], class, p, ps, r[1], r[2], want)
		}
	}
}

func sameReal(a, b float32) bool {
	if math.IsNaN(float64(a)) || math.IsNaN(float64(b)) {
		return math.IsNaN(float64(a)) && math.IsNaN(float64(b))
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

// A timestamptz key's text is in UTC: it is read as UTC whatever the session's time zone.
func TestCopyTextTimestamptzInUTC(t *testing.T) {
	_, dsn := testenv.Pool(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "Asia/Kathmandu"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `create table at_out (at timestamptz, value real)`); err != nil {
		t.Fatal(err)
	}
	plan := regressionPlan("at_out")
	plan.Key, plan.KeyColumns = "at", []messages.KeyColumn{{Name: "at", Type: "timestamp with time zone", Form: messages.KeyFormTimestamptz}}
	w, err := NewOutputWriter(pool, plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, batch(0), [][]any{{"2024-03-31 01:30:00.000001", float32(1)}, {"infinity", float32(2)}}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `select count(*) from at_out where at = '2024-03-31 01:30:00.000001+00' and value = 1
		or at = 'infinity' and value = 2`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	var tz string
	if err := pool.QueryRow(ctx, `show timezone`).Scan(&tz); err != nil {
		t.Fatal(err)
	}
	if n != 2 || tz != "Asia/Kathmandu" {
		t.Fatalf("%d of 2 rows read in UTC; the session's zone after the write is %s (the UTC zone must stay in the write's transaction)", n, tz)
	}
}
