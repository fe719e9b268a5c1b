package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"pgtrain/messages"
)

// The model store keeps each finished model as one object per file, named
// "<job_id>/<file>": model.json (which carries the metadata) can be read without the
// weights. PutModel uploads model.json last, so a model is listed, and can be pulled, only
// once all of its files are there.

// ModelJSON is the file whose presence makes a stored model complete.
const ModelJSON = "model.json"

// ErrNoModel is returned when the store has no (complete) model for a job, or not the
// file asked for.
var ErrNoModel = errors.New("no such model")

// ModelStoreConfig is the Object Store bucket of finished models.
func ModelStoreConfig(n messages.Names, replicas int) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket:      n.ModelBucket(),
		Description: "pgtrain: finished models, one object per file, <job_id>/<file>",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
	}
}

func objectName(jobID, file string) string { return jobID + "/" + file }

// checkModelFile refuses a job id or file name that could name another model's object or a
// path outside a pull directory.
func checkModelFile(jobID, file string) error {
	if err := messages.ValidJobID(jobID); err != nil {
		return fmt.Errorf("model: %w: %w", err, ErrNoModel)
	}
	if file == "" || len(file) > 255 || file == "." || file == ".." || strings.ContainsAny(file, "/\\\x00") {
		return fmt.Errorf("model %s: file name %q: want a plain file name: %w", jobID, file, ErrNoModel)
	}
	return nil
}

// PutModel stores the regular files of dir as the job's model: the weight shards first and
// model.json last. Putting the same model again replaces its objects with equal ones, so a
// restarted trainer may put it again; a file of an earlier put that dir no longer has is
// deleted.
func (b *Bus) PutModel(ctx context.Context, jobID, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("storing model %s: %w", jobID, err)
	}
	var files []string
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if err := checkModelFile(jobID, e.Name()); err != nil {
			return fmt.Errorf("storing model %s: %w", jobID, err)
		}
		files = append(files, e.Name())
	}
	if !slices.Contains(files, ModelJSON) {
		return fmt.Errorf("storing model %s: %s has no %s", jobID, dir, ModelJSON)
	}
	// model.json last: it is what makes the stored model complete.
	slices.SortFunc(files, func(a, b string) int {
		switch {
		case a == ModelJSON:
			return 1
		case b == ModelJSON:
			return -1
		}
		return strings.Compare(a, b)
	})
	old, err := b.modelFiles(ctx, jobID, false)
	if err != nil {
		return fmt.Errorf("storing model %s: %w", jobID, err)
	}
	for _, name := range files {
		if err := b.putFile(ctx, jobID, dir, name); err != nil {
			return fmt.Errorf("storing model %s: %w", jobID, err)
		}
	}
	for _, f := range old {
		if slices.Contains(files, f.Name) {
			continue
		}
		if err := b.Models.Delete(ctx, objectName(jobID, f.Name)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("storing model %s: deleting the stale %s: %w", jobID, f.Name, err)
		}
	}
	return nil
}

func (b *Bus) putFile(ctx context.Context, jobID, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := b.Models.Put(ctx, jetstream.ObjectMeta{Name: objectName(jobID, name)}, f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ModelFile returns one file of a stored model. A model that is not complete yet, or a file
// it does not have, is ErrNoModel.
func (b *Bus) ModelFile(ctx context.Context, jobID, name string) ([]byte, error) {
	r, _, err := b.OpenModelFile(ctx, jobID, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("model %s: reading %s: %w", jobID, name, err)
	}
	return data, nil
}

// OpenModelFile streams one file of a stored model and returns its size; the reader checks
// the object's digest at the end. Errors are as for ModelFile.
func (b *Bus) OpenModelFile(ctx context.Context, jobID, name string) (io.ReadCloser, int64, error) {
	if err := checkModelFile(jobID, name); err != nil {
		return nil, 0, err
	}
	if name != ModelJSON {
		// Only files of a complete model are served.
		if _, err := b.Models.GetInfo(ctx, objectName(jobID, ModelJSON)); err != nil {
			return nil, 0, translateNotFound(jobID, ModelJSON, err)
		}
	}
	res, err := b.Models.Get(ctx, objectName(jobID, name))
	if err != nil {
		return nil, 0, translateNotFound(jobID, name, err)
	}
	info, err := res.Info()
	if err != nil {
		res.Close()
		return nil, 0, fmt.Errorf("model %s: %s: %w", jobID, name, err)
	}
	return res, int64(info.Size), nil
}

func translateNotFound(jobID, name string, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("model %s: no file %s: %w", jobID, name, ErrNoModel)
	}
	return fmt.Errorf("model %s: %s: %w", jobID, name, err)
}

// ListModels lists the complete stored models, oldest first.
func (b *Bus) ListModels(ctx context.Context) ([]messages.ModelInfo, error) {
	objs, err := b.Models.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return []messages.ModelInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing models: %w", err)
	}
	byJob := map[string]*messages.ModelInfo{}
	for _, o := range objs {
		jobID, name, ok := strings.Cut(o.Name, "/")
		if !ok || o.Deleted {
			continue
		}
		m := byJob[jobID]
		if m == nil {
			m = &messages.ModelInfo{JobID: jobID}
			byJob[jobID] = m
		}
		m.Files = append(m.Files, fileInfo(name, o))
		if name == ModelJSON {
			m.Stored = o.ModTime
		}
	}
	out := []messages.ModelInfo{}
	for _, m := range byJob {
		if m.Stored.IsZero() {
			continue // model.json not stored yet
		}
		slices.SortFunc(m.Files, func(a, b messages.ModelFileInfo) int { return strings.Compare(a.Name, b.Name) })
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b messages.ModelInfo) int {
		if c := a.Stored.Compare(b.Stored); c != 0 {
			return c
		}
		return strings.Compare(a.JobID, b.JobID)
	})
	return out, nil
}

func fileInfo(name string, o *jetstream.ObjectInfo) messages.ModelFileInfo {
	return messages.ModelFileInfo{Name: name, Size: int64(o.Size), Digest: o.Digest, Stored: o.ModTime}
}

// Model returns one complete stored model's files.
func (b *Bus) Model(ctx context.Context, jobID string) (messages.ModelInfo, error) {
	if err := checkModelFile(jobID, ModelJSON); err != nil {
		return messages.ModelInfo{}, err
	}
	files, err := b.modelFiles(ctx, jobID, true)
	if err != nil {
		return messages.ModelInfo{}, err
	}
	m := messages.ModelInfo{JobID: jobID, Files: files}
	f, ok := m.File(ModelJSON)
	if !ok {
		return messages.ModelInfo{}, fmt.Errorf("model %s: %w", jobID, ErrNoModel)
	}
	m.Stored = f.Stored
	return m, nil
}

// modelFiles lists the stored files of one job's model (complete or not).
func (b *Bus) modelFiles(ctx context.Context, jobID string, complete bool) ([]messages.ModelFileInfo, error) {
	objs, err := b.Models.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		if complete {
			return nil, fmt.Errorf("model %s: %w", jobID, ErrNoModel)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing model %s: %w", jobID, err)
	}
	var out []messages.ModelFileInfo
	for _, o := range objs {
		if name, ok := strings.CutPrefix(o.Name, jobID+"/"); ok && !o.Deleted {
			out = append(out, fileInfo(name, o))
		}
	}
	slices.SortFunc(out, func(a, b messages.ModelFileInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// PullModel writes a stored model's files into dir (created if needed), each through a
// temporary name, model.json last, so dir holds a complete model once it returns nil.
func (b *Bus) PullModel(ctx context.Context, jobID, dir string) error {
	m, err := b.Model(ctx, jobID)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pulling model %s: %w", jobID, err)
	}
	slices.SortStableFunc(m.Files, func(a, b messages.ModelFileInfo) int {
		switch {
		case a.Name == ModelJSON:
			return 1
		case b.Name == ModelJSON:
			return -1
		}
		return 0
	})
	for _, f := range m.Files {
		if err := b.pullFile(ctx, jobID, f.Name, dir); err != nil {
			return fmt.Errorf("pulling model %s: %w", jobID, err)
		}
	}
	return nil
}

func (b *Bus) pullFile(ctx context.Context, jobID, name, dir string) error {
	if err := checkModelFile(jobID, name); err != nil {
		return err
	}
	res, err := b.Models.Get(ctx, objectName(jobID, name))
	if err != nil {
		return translateNotFound(jobID, name, err)
	}
	defer res.Close()
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, res); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
