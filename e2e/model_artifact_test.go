package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator"
	"pgtrain/coordinator/client"
	"pgtrain/internal/demo"
	"pgtrain/internal/local"
	"pgtrain/internal/testenv"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/preprocessor/transform"
	"pgtrain/trainer"
)

// heldOut is a table of the demo's columns the models never saw: random rows, NULLs where
// the demo has them, a NULL and an unseen city, and ages outside the training range.
const heldOut = `
create table held_out (like pgtrain_demo including all);
select setseed(0.7);
insert into held_out
select 1000000 + i, (random()*2 - 1)::real, (random()*2 - 1)::real, (random()*2 - 1)::real, random()*2 - 1,
       case when i % 7 = 0 then null else 10 + i % 80 end,
       (array['oslo', 'lima', 'paris', 'nome', null, 'pune'])[1 + i % 6], 0
from generate_series(1, 60) i`

// bandSpec is a classification job on the demo table: the band of y, from its features.
const bandSpec = `{
  "table": "demo_band", "key": "id",
  "features": [{"column": "x1", "scale": "standard"}, {"column": "x2", "scale": "minmax"},
               {"column": "x3"}, {"column": "x4", "scale": "standard"},
               {"column": "age", "impute": "mean", "scale": "standard"}, {"column": "city", "encode": "onehot"}],
  "label": {"column": "band", "encode": "onehot"},
  "model": {"layers": [{"type": "dense", "units": 12, "activation": "relu"}, {"type": "dense", "units": 3, "activation": "softmax"}]},
  "loss": "categorical_crossentropy", "metrics": ["accuracy"], "optimizer": {"name": "adam", "learning_rate": 0.02},
  "epochs": 3, "batch_size": 64, "seed": 5, "validation_split": 0.2, "range_rows": 700}`

type trainedModel struct {
	id     string
	status *messages.JobStatus
	plan   *messages.Plan
	outDir string // the trainer's export
}

// TestModelArtifactAndOnlinePrediction trains a regression and a classification model on
// the demo table, then checks the artifact (metadata, store, pull), online prediction
// (bit for bit the engine's forward pass on the same rows preprocessed by the training
// transform), TF.js applying the metadata in the README's snippet (within 1e-6), and the
// refusals of bad requests.
func TestModelArtifactAndOnlinePrediction(t *testing.T) {
	pool, _ := testenv.Pool(t)
	natsURL := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := demo.CreateTable(ctx, pool, 3000); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		heldOut,
		`create table demo_band as select id, x1, x2, x3, x4, age, city,
			case when y > 1 then 'high' when y > -1 then 'mid' else 'low' end as band from pgtrain_demo`,
		`alter table demo_band add primary key (id)`,
		`analyze demo_band`,
	} {
		if _, err := pool.Exec(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	predictSecret, readSecret := "predict-only-secret-0123456789", "read-only-secret-0123456789"
	predictTok, err := coordinator.NewToken("app", predictSecret, coordinator.ScopePredict)
	if err != nil {
		t.Fatal(err)
	}
	readTok, err := coordinator.NewToken("viewer", readSecret, coordinator.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cl, err := local.Start(ctx, local.Options{
		Sources:       map[string]*pgxpool.Pool{"": pool},
		NATSURL:       natsURL,
		Fetchers:      2,
		Preprocessors: 1,
		Trainer:       true,
		TrainerCfg:    trainer.Config{OutDir: out},
		Coordinator: coordinator.Config{Tokens: []coordinator.Token{predictTok, readTok},
			Limits: coordinator.Limits{PredictBytes: 64 << 10, PredictInstances: 100}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()

	regSpec := demo.Job{
		Table: demo.Table, Key: "id",
		Features: []messages.FeatureSpec{
			{Column: "x1", Scale: "standard"}, {Column: "x2", Scale: "standard"}, {Column: "x3"},
			{Column: "x4", Scale: "standard"}, {Column: "age", Impute: "mean", Scale: "minmax"}, {Column: "city", Encode: "onehot"},
		},
		Label:        "y",
		Layers:       []demo.Layer{demo.Dense(16, "relu", "hidden"), demo.Dropout(0.1, "drop"), demo.Dense(1, "", "output")},
		LearningRate: 0.01, Metrics: []string{"mae"},
		Epochs: 3, BatchSize: 64, ValidationSplit: 0.2, Seed: 42, RangeRows: 700,
	}.JSON()
	models := map[string]*trainedModel{}
	for _, job := range []struct {
		name string
		spec []byte
	}{{"regression", regSpec}, {"classification", []byte(bandSpec)}} {
		st, err := cl.Client.Submit(ctx, job.spec)
		if err != nil {
			t.Fatalf("%s: %v", job.name, err)
		}
		models[job.name] = &trainedModel{id: st.ID, outDir: out}
	}
	for name, m := range models {
		m.status = waitJob(t, cl, m.id)
		if m.status.State != messages.JobDone {
			t.Fatalf("%s job %s ended %s: %s", name, m.id, m.status.State, m.status.Error)
		}
		if m.plan, err = cl.Client.Plan(ctx, m.id); err != nil {
			t.Fatal(err)
		}
		m.outDir = filepath.Join(out, filepath.FromSlash(m.status.ModelPath))
	}

	for name, m := range models {
		t.Run(name+"/metadata round trip", func(t *testing.T) { checkMetadata(t, ctx, pool, cl, m) })
		t.Run(name+"/online predictions equal the engine", func(t *testing.T) { checkOnline(t, ctx, pool, cl, m) })
	}
	t.Run("models list", func(t *testing.T) {
		list, err := cl.Client.Models(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].Metadata == nil || list[1].Metadata == nil {
			t.Fatalf("models %+v, want the two trained ones with metadata", list)
		}
		for _, m := range list {
			if models["regression"].id != m.JobID && models["classification"].id != m.JobID {
				t.Errorf("listed model %s was not trained here", m.JobID)
			}
		}
	})
	t.Run("cli", func(t *testing.T) { checkCLI(t, ctx, cl, models["regression"]) })
	t.Run("tokens", func(t *testing.T) { checkTokens(t, ctx, cl, models["classification"], predictSecret, readSecret) })
	t.Run("bad requests", func(t *testing.T) { checkBadRequests(t, ctx, cl, models["regression"]) })
}

// checkMetadata: model.json carries the plan's preprocessing and the job's data and
// results; the coordinator serves the same; a pull gives the trainer's files byte for byte.
func checkMetadata(t *testing.T, ctx context.Context, pool *pgxpool.Pool, cl *local.Cluster, m *trainedModel) {
	js, err := os.ReadFile(filepath.Join(m.outDir, model.TFJSModelFile))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := model.ReadMeta(js)
	if err != nil {
		t.Fatal(err)
	}
	want := messages.ModelMetaFromPlan(m.plan)
	if err := pool.QueryRow(ctx, "select max(id) from "+m.plan.Table).Scan(&want.LastKey); err != nil {
		t.Fatal(err)
	}
	last := m.status.Results[len(m.status.Results)-1]
	want.Metrics = map[string]float64{"loss": last.Loss, "val_loss": *last.ValLoss}
	for k, v := range last.Metrics {
		want.Metrics[k] = v
	}
	for k, v := range last.ValMetrics {
		want.Metrics["val_"+k] = v
	}
	// What the trainer adds for a later warm start: the epochs trained, the training state's file.
	want.Epochs, want.TrainingState = len(m.status.Results), messages.TrainingStateFile
	meta.Spec.Model, want.Spec.Model = nil, nil // the same document, indented differently
	if !reflect.DeepEqual(meta, want) {
		t.Fatalf("model.json metadata:\n got %+v\nwant %+v", meta, want)
	}
	if meta.Rows != m.plan.Expected.Rows || meta.Rows == 0 {
		t.Fatalf("rows %d, the plan trains on %d", meta.Rows, m.plan.Expected.Rows)
	}

	info, err := cl.Client.Model(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Metadata == nil || info.Omitted != "" {
		t.Fatalf("GET /v1/models/%s with the data scope: metadata %v, omitted %q", m.id, info.Metadata, info.Omitted)
	}
	info.Metadata.Spec.Model = nil
	if !reflect.DeepEqual(*info.Metadata, meta) {
		t.Fatalf("the coordinator's metadata differs from model.json's:\n%+v\n%+v", *info.Metadata, meta)
	}

	dir := filepath.Join(t.TempDir(), "pulled")
	if err := cl.Client.PullModel(ctx, m.id, dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{model.TFJSModelFile, model.TFJSWeightFile} {
		a, errA := os.ReadFile(filepath.Join(m.outDir, name))
		b, errB := os.ReadFile(filepath.Join(dir, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("pulled %s differs from the trainer's export (%v, %v)", name, errA, errB)
		}
	}
	// The bus's own pull (what a host of the cluster would use) gives the same files.
	dir2 := t.TempDir()
	if err := cl.Bus.PullModel(ctx, m.id, dir2); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{model.TFJSModelFile, model.TFJSWeightFile} {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(dir2, name))
		if !bytes.Equal(a, b) {
			t.Fatalf("bus pull of %s differs from the HTTP pull", name)
		}
	}
}

// heldOutRows reads the held-out table in key order twice over: as the raw batch a fetcher
// would publish for the model's plan, and as the JSON instances a client would send.
func heldOutRows(t *testing.T, ctx context.Context, pool *pgxpool.Pool, p *messages.Plan) (*messages.RawBatch, []map[string]any) {
	t.Helper()
	rows, err := pool.Query(ctx, `select id, x1, x2, x3, x4, age, city from held_out order by id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	raw := &messages.RawBatch{}
	cols := map[string]*messages.RawColumn{}
	for _, f := range p.Features {
		raw.Columns = append(raw.Columns, messages.RawColumn{Name: f.Name, Kind: f.RawKind()})
	}
	for i := range raw.Columns {
		cols[raw.Columns[i].Name] = &raw.Columns[i]
	}
	var instances []map[string]any
	for rows.Next() {
		var (
			id         int64
			x1, x2, x3 float32
			x4         float64
			age        *int32
			city       *string
			r          = len(raw.Keys)
		)
		if err := rows.Scan(&id, &x1, &x2, &x3, &x4, &age, &city); err != nil {
			t.Fatal(err)
		}
		raw.Keys = append(raw.Keys, id)
		// "note" is not a column of the model: ignored.
		inst := map[string]any{"x1": x1, "x2": x2, "x3": x3, "x4": x4, "age": nil, "city": nil, "note": "a comment"}
		numericFloat32 := map[string]float32{"x1": x1, "x2": x2, "x3": x3}
		numeric := map[string]float64{"x4": x4}
		if age != nil {
			inst["age"] = *age
			numeric["age"] = float64(*age)
		}
		if city != nil {
			inst["city"] = *city
		}
		instances = append(instances, inst)
		for _, f := range p.Features {
			c := cols[f.Name]
			switch c.Kind {
			case messages.ColumnFloat32:
				c.Float32 = append(c.Float32, numericFloat32[f.Name])
			case messages.ColumnFloat64:
				v, ok := numeric[f.Name]
				if !ok {
					c.SetNull(r)
				}
				c.Float64 = append(c.Float64, v)
			case messages.ColumnText:
				s := ""
				if city == nil {
					c.SetNull(r)
				} else {
					s = *city
				}
				c.Text = append(c.Text, s)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// The label as the table would give it; its encoding is not used.
	label := messages.RawColumn{Name: p.Label.Name, Kind: p.Label.RawKind()}
	for range raw.Keys {
		switch label.Kind {
		case messages.ColumnText:
			label.Text = append(label.Text, p.Label.Vocabulary[0])
		case messages.ColumnFloat32:
			label.Float32 = append(label.Float32, 0)
		default:
			label.Float64 = append(label.Float64, 0)
		}
	}
	raw.Columns = append(raw.Columns, label)
	return raw, instances
}

// checkOnline: online predictions equal the engine's forward pass, bit for bit, on the
// held-out rows preprocessed by the training transform with the training plan; and TF.js,
// given the same rows and the README's snippet, agrees within 1e-6.
func checkOnline(t *testing.T, ctx context.Context, pool *pgxpool.Pool, cl *local.Cluster, m *trainedModel) {
	raw, instances := heldOutRows(t, ctx, pool, m.plan)
	ready, err := transform.Apply(m.plan, raw)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.LoadTFJS(m.outDir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := net.Predict(ready.X, ready.Rows())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.Client.Predict(ctx, m.id, instances)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Predictions) != len(instances) {
		t.Fatalf("%d predictions for %d instances", len(resp.Predictions), len(instances))
	}
	k := net.OutputDim()
	got := make([]float32, 0, len(want))
	classes := m.plan.Label.Vocabulary
	for i, p := range resp.Predictions {
		if m.plan.Spec.Label.Encode == messages.EncodeNone {
			if p.IsClass() {
				t.Fatalf("prediction %d of a regression is a class: %+v", i, p)
			}
			got = append(got, p.Value)
			continue
		}
		best := 0
		for j, c := range classes {
			got = append(got, p.Probabilities[c])
			if want[i*k+j] > want[i*k+best] {
				best = j
			}
		}
		if p.Class != classes[best] || math.Float32bits(p.Probability) != math.Float32bits(want[i*k+best]) {
			t.Errorf("prediction %d: class %q (%v), want %q (%v)", i, p.Class, p.Probability, classes[best], want[i*k+best])
		}
	}
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("output %d (row %d): online %v, the engine %v: not bit for bit", i, i/k, got[i], want[i])
		}
	}

	// TF.js, from the pulled files, with the metadata applied by the README's snippet.
	dir := t.TempDir()
	if err := cl.Client.PullModel(ctx, m.id, dir); err != nil {
		t.Fatal(err)
	}
	js := runSnippet(t, dir, instances)
	if len(js.Outputs) != len(instances) {
		t.Fatalf("the snippet gave %d outputs for %d rows", len(js.Outputs), len(instances))
	}
	worst := 0.0
	for i, row := range js.Outputs {
		if len(row) != k {
			t.Fatalf("snippet row %d has %d outputs, want %d", i, len(row), k)
		}
		for j, v := range row {
			worst = math.Max(worst, math.Abs(v-float64(got[i*k+j])))
		}
	}
	if worst > 1e-6 {
		t.Fatalf("TF.js differs from pgtrain by up to %g, want within 1e-6", worst)
	}
	t.Logf("%d rows: online == engine bit for bit; TF.js within %.3g", len(instances), worst)
}

type snippetOutput struct {
	LabelKind string      `json:"label_kind"`
	Classes   []string    `json:"classes"`
	Outputs   [][]float64 `json:"outputs"`
}

// runSnippet runs parity/predict_snippet.js, the file the README shows, on rows.
func runSnippet(t *testing.T, modelDir string, rows []map[string]any) snippetOutput {
	t.Helper()
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "parity", "node_modules", "@tensorflow", "tfjs", "package.json")); err != nil {
		t.Fatalf("TensorFlow.js is not installed: run `npm ci --prefix parity` (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to run the TF.js snippet: %v", err)
	}
	in, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, filepath.Join(root, "parity", "predict_snippet.js"), modelDir)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("the snippet failed: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	var res snippetOutput
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("the snippet's output %q: %v", stdout, err)
	}
	return res
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// checkCLI: `pgtrain models` lists the models and `pgtrain models pull` fetches one, as a
// user runs them.
func checkCLI(t *testing.T, ctx context.Context, cl *local.Cluster, m *trainedModel) {
	bin, err := testenv.BuildBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "PGTRAIN_COORDINATOR="+cl.URL(), "PGTRAIN_COORDINATOR_TOKEN="+cl.UserToken())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pgtrain %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := run("models")
	if !strings.Contains(list, m.id) || !strings.Contains(list, "public.pgtrain_demo") || !strings.Contains(list, "val_loss=") {
		t.Fatalf("pgtrain models:\n%s\nwant the regression model %s with its table and metrics", list, m.id)
	}
	dir := filepath.Join(t.TempDir(), "m")
	run("models", "pull", m.id, dir)
	for _, name := range []string{model.TFJSModelFile, model.TFJSWeightFile} {
		a, errA := os.ReadFile(filepath.Join(m.outDir, name))
		b, errB := os.ReadFile(filepath.Join(dir, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Fatalf("pgtrain models pull: %s differs from the trainer's export (%v, %v)", name, errA, errB)
		}
	}
}

// checkTokens: a predict token predicts and reads nothing; a read token sees the models
// without the data's values and cannot download their files.
func checkTokens(t *testing.T, ctx context.Context, cl *local.Cluster, m *trainedModel, predictSecret, readSecret string) {
	app := client.New(cl.URL(), nil, client.WithToken(predictSecret))
	if _, err := app.Predict(ctx, m.id, []map[string]any{{"x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4, "age": 30, "city": "oslo"}}); err != nil {
		t.Fatalf("predict with the predict scope: %v", err)
	}
	var ae *client.APIError
	if _, err := app.Models(ctx); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("listing models with the predict scope only: %v, want 403", err)
	}
	viewer := client.New(cl.URL(), nil, client.WithToken(readSecret))
	info, err := viewer.Model(ctx, m.id)
	if err != nil {
		t.Fatal(err)
	}
	if info.Omitted == "" || info.Metadata == nil || len(info.Metadata.Classes) != 0 {
		t.Fatalf("metadata for a token without the data scope: omitted %q, %+v", info.Omitted, info.Metadata)
	}
	for _, f := range append(info.Metadata.Features, info.Metadata.Label) {
		if len(f.Vocabulary) > 0 || f.Stats != (messages.Stats{}) || f.Offset != 0 || f.Impute != 0 {
			t.Fatalf("column %q shown to a token without the data scope: %+v", f.Name, f)
		}
	}
	err = viewer.PullModel(ctx, m.id, t.TempDir())
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, `"data" scope`) {
		t.Fatalf("pulling without the data scope: %v, want 403 naming the data scope", err)
	}
	if _, err := viewer.Predict(ctx, m.id, []map[string]any{{"x1": 0.1}}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("predicting with the read scope only: %v, want 403", err)
	}
}

// checkBadRequests: each bad request is a 4xx naming what is wrong, never a 5xx.
func checkBadRequests(t *testing.T, ctx context.Context, cl *local.Cluster, m *trainedModel) {
	good := func() map[string]any {
		return map[string]any{"x1": 0.1, "x2": 0.2, "x3": 0.3, "x4": 0.4, "age": 30, "city": "oslo"}
	}
	with := func(edit func(map[string]any)) []map[string]any {
		inst := good()
		edit(inst)
		return []map[string]any{good(), inst}
	}
	many := make([]map[string]any, 101)
	for i := range many {
		many[i] = good()
	}
	// A model whose metadata a newer pgtrain wrote.
	future := t.TempDir()
	if err := os.WriteFile(filepath.Join(future, model.TFJSModelFile),
		[]byte(`{"format": "layers-model", "modelTopology": {}, "userDefinedMetadata": {"pgtrain": {"version": 3, "features": "a new shape"}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cl.Bus.PutModel(ctx, "future-model", future); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		model     string
		instances []map[string]any
		body      []byte // instead of instances
		status    int
		field     string
		text      string
	}{
		{name: "unknown model", model: "no-such-model", instances: []map[string]any{good()}, status: http.StatusNotFound, text: "no-such-model"},
		{name: "missing column", model: m.id, instances: with(func(i map[string]any) { delete(i, "x3") }), status: http.StatusBadRequest, field: "instances[1].x3", text: "missing"},
		{name: "string for a number", model: m.id, instances: with(func(i map[string]any) { i["x4"] = "0.4" }), status: http.StatusBadRequest, field: "instances[1].x4", text: "want a number"},
		{name: "fraction for an integer", model: m.id, instances: with(func(i map[string]any) { i["age"] = 30.5 }), status: http.StatusBadRequest, field: "instances[1].age", text: "not an integer"},
		{name: "object for a category", model: m.id, instances: with(func(i map[string]any) { i["city"] = map[string]any{"name": "oslo"} }), status: http.StatusBadRequest, field: "instances[1].city", text: "want a string"},
		{name: "NULL without imputation", model: m.id, instances: with(func(i map[string]any) { i["x1"] = nil }), status: http.StatusBadRequest, field: "instances[1].x1", text: "no imputation"},
		{name: "out of range for real", model: m.id, instances: with(func(i map[string]any) { i["x2"] = 1e300 }), status: http.StatusBadRequest, field: "instances[1].x2", text: "out of range"},
		{name: "no instances", model: m.id, body: []byte(`{"instances": []}`), status: http.StatusBadRequest, field: "instances"},
		{name: "unknown field", model: m.id, body: []byte(`{"rows": []}`), status: http.StatusBadRequest, field: "instances", text: "rows"},
		{name: "too many instances", model: m.id, instances: many, status: http.StatusBadRequest, field: "instances", text: "limit of 100"},
		{name: "oversize body", model: m.id, body: []byte(`{"instances": [{"city": "` + strings.Repeat("x", 70<<10) + `"}]}`), status: http.StatusRequestEntityTooLarge, field: "instances", text: "65536 bytes"},
		{name: "future metadata version", model: "future-model", instances: []map[string]any{good()}, status: http.StatusUnprocessableEntity, field: "model", text: "newer than this build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body
			if body == nil {
				body, _ = json.Marshal(messages.OnlinePredictRequest{Instances: tt.instances})
			}
			status, er := post(t, ctx, cl, "/v1/models/"+tt.model+":predict", body)
			if status != tt.status || er.Field != tt.field || !strings.Contains(er.Error, tt.text) {
				t.Fatalf("%d %+v, want %d on %q saying %q", status, er, tt.status, tt.field, tt.text)
			}
		})
	}
	// The future model is listed, with the reason its metadata cannot be read.
	info, err := cl.Client.Model(ctx, "future-model")
	if err != nil || info.Metadata != nil || !strings.Contains(info.MetadataError, "newer than this build") {
		t.Fatalf("GET the future model: %+v %v, want its metadata error", info, err)
	}
	if _, err := cl.Client.Model(ctx, "no-such-model"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("GET an unknown model: %v, want 404", err)
	}
	if err := cl.Client.PullModel(ctx, "no-such-model", t.TempDir()); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("pull an unknown model: %v, want 404", err)
	}
	status, er := get(t, ctx, cl, "/v1/models/"+m.id+"/files/..%2Fother%2Fmodel.json")
	if status != http.StatusNotFound || er.Field != "name" {
		t.Fatalf("a file name with a path: %d %+v, want 404 on name", status, er)
	}
}

func post(t *testing.T, ctx context.Context, cl *local.Cluster, path string, body []byte) (int, messages.ErrorResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cl.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return send(t, cl, req)
}

func get(t *testing.T, ctx context.Context, cl *local.Cluster, path string) (int, messages.ErrorResponse) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cl.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return send(t, cl, req)
}

func send(t *testing.T, cl *local.Cluster, req *http.Request) (int, messages.ErrorResponse) {
	t.Helper()
	req.Header.Set("Authorization", "Bearer "+cl.UserToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var er messages.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
		t.Fatalf("%s %s: %d with a body that is not a JSON error: %v", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	return resp.StatusCode, er
}
