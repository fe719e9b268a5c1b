package bus

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func writeModelDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestModelStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	nc := connectTest(t)
	b, err := Ensure(ctx, nc, Limits{Prefix: "models-rt"})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := b.Models.Status(ctx); err != nil || st.Bucket() != "models-rt_models" {
		t.Fatalf("model bucket status %v, %v; want models-rt_models", st, err)
	}
	shard := bytes.Repeat([]byte{1, 2, 3, 4}, 300_000) // more than one object chunk
	dir := writeModelDir(t, map[string]string{
		ModelJSON:              `{"format":"layers-model"}`,
		"group1-shard1of1.bin": string(shard),
		"model.json.tmp":       "a leftover of an interrupted export",
	})
	if err := b.PutModel(ctx, "job-1", dir); err != nil {
		t.Fatal(err)
	}
	// Putting it again (a restarted trainer) is harmless.
	if err := b.PutModel(ctx, "job-1", dir); err != nil {
		t.Fatalf("second put: %v", err)
	}

	models, err := b.ListModels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || models[0].JobID != "job-1" || len(models[0].Files) != 2 {
		t.Fatalf("ListModels = %+v, want job-1 with 2 files", models)
	}
	if f, ok := models[0].File("group1-shard1of1.bin"); !ok || f.Size != int64(len(shard)) {
		t.Fatalf("shard info %+v, %v; want size %d", f, ok, len(shard))
	}
	got, err := b.ModelFile(ctx, "job-1", "group1-shard1of1.bin")
	if err != nil || !bytes.Equal(got, shard) {
		t.Fatalf("ModelFile(shard) = %d bytes, %v; want the %d bytes put", len(got), err, len(shard))
	}

	out := filepath.Join(t.TempDir(), "pulled")
	if err := b.PullModel(ctx, "job-1", out); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{ModelJSON: []byte(`{"format":"layers-model"}`), "group1-shard1of1.bin": shard} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("pulled %s: %d bytes, %v", name, len(b), err)
		}
	}
	if entries, _ := os.ReadDir(out); len(entries) != 2 {
		t.Errorf("pulled dir holds %d entries, want 2", len(entries))
	}

	// A model whose model.json is not stored yet is not a model.
	if _, err := b.Models.PutBytes(ctx, "job-2/group1-shard1of1.bin", shard[:8]); err != nil {
		t.Fatal(err)
	}
	if models, _ := b.ListModels(ctx); len(models) != 1 {
		t.Fatalf("ListModels lists an incomplete model: %+v", models)
	}
	for _, c := range []struct{ name, job, file string }{
		{"incomplete model", "job-2", "group1-shard1of1.bin"},
		{"unknown model", "nope", ModelJSON},
		{"unknown file", "job-1", "other.bin"},
		{"path in the name", "job-1", "../job-2/model.json"},
		{"bad job id", "Job/1", ModelJSON},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := b.ModelFile(ctx, c.job, c.file); !errors.Is(err, ErrNoModel) {
				t.Fatalf("ModelFile(%q, %q): %v, want ErrNoModel", c.job, c.file, err)
			}
		})
	}
	if err := b.PullModel(ctx, "job-2", t.TempDir()); !errors.Is(err, ErrNoModel) {
		t.Fatalf("PullModel(incomplete): %v, want ErrNoModel", err)
	}

	// A new put replaces the model: a file it no longer has is deleted.
	dir2 := writeModelDir(t, map[string]string{ModelJSON: `{}`, "group1-shard1of2.bin": "a", "group1-shard2of2.bin": "b"})
	if err := b.PutModel(ctx, "job-1", dir2); err != nil {
		t.Fatal(err)
	}
	m, err := b.Model(ctx, "job-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 3 {
		t.Fatalf("after a new put the model has %+v, want model.json and two shards", m.Files)
	}
	if _, err := b.Models.GetInfo(ctx, "job-1/group1-shard1of1.bin"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Fatalf("the stale shard is still there: %v", err)
	}

	// Another prefix has its own bucket.
	other, err := Ensure(ctx, nc, Limits{Prefix: "models-other"})
	if err != nil {
		t.Fatal(err)
	}
	if models, err := other.ListModels(ctx); err != nil || len(models) != 0 {
		t.Fatalf("other prefix lists %+v, %v; want none", models, err)
	}
}
