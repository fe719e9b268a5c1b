package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"

	"pgtrain/internal/bus"
	"pgtrain/messages"
	"pgtrain/model"
	"pgtrain/preprocessor/transform"
)

// ModelStore is the part of the bus that holds finished models (see bus.PutModel).
type ModelStore interface {
	ListModels(ctx context.Context) ([]messages.ModelInfo, error)
	Model(ctx context.Context, jobID string) (messages.ModelInfo, error)
	ModelFile(ctx context.Context, jobID, name string) ([]byte, error)
	OpenModelFile(ctx context.Context, jobID, name string) (io.ReadCloser, int64, error)
}

// metaCacheSize bounds the parsed metadata kept for listing models: metadata is small next
// to the weights, so many more of them than of loaded models.
const metaCacheSize = 1024

// models caches what the model routes read from the store: parsed metadata by model.json
// digest, and models loaded for online prediction by job id. A stored model never changes
// (a restarted trainer stores the same files again), so entries need no invalidation.
type models struct {
	store  ModelStore
	meta   *lru.Cache[string, messages.ModelMeta] // key: job id + model.json digest
	loaded *lru.Cache[string, *loadedModel]
}

func newModels(store ModelStore, cacheSize int) *models {
	meta, _ := lru.New[string, messages.ModelMeta](metaCacheSize) // sizes are positive
	loaded, _ := lru.New[string, *loadedModel](cacheSize)
	return &models{store: store, meta: meta, loaded: loaded}
}

// loadedModel is a model ready for online prediction: its metadata, the compiled
// transform of its preprocessing, and the engine with its weights.
type loadedModel struct {
	meta messages.ModelMeta
	tf   *transform.Transformer
	// sigmoid: the model gives logits for binary crossentropy (one sigmoid per class,
	// not a softmax over them).
	sigmoid bool
	// The engine keeps per-layer buffers: one forward pass at a time.
	mu  sync.Mutex
	net *model.Sequential
}

// modelMetaError marks a stored model whose metadata this build cannot use.
func modelMetaError(jobID string, err error) error {
	return &apiError{status: http.StatusUnprocessableEntity, field: "model",
		msg: fmt.Sprintf("model %s: %v", jobID, err)}
}

func notFound(err error) error {
	return &apiError{status: http.StatusNotFound, msg: err.Error()}
}

// storeError translates the store's errors: no model is a 404, anything else a 503 (the bus
// is unreachable; a retry may work).
func storeError(err error) error {
	if errors.Is(err, bus.ErrNoModel) {
		return notFound(err)
	}
	return unavailable(err)
}

// metadata returns a stored model's parsed metadata, through the cache.
func (ms *models) metadata(ctx context.Context, info messages.ModelInfo) (messages.ModelMeta, error) {
	f, ok := info.File(bus.ModelJSON)
	if !ok {
		return messages.ModelMeta{}, notFound(fmt.Errorf("model %s: %w", info.JobID, bus.ErrNoModel))
	}
	key := info.JobID + "\x00" + f.Digest
	if m, ok := ms.meta.Get(key); ok {
		return m, nil
	}
	js, err := ms.store.ModelFile(ctx, info.JobID, bus.ModelJSON)
	if err != nil {
		return messages.ModelMeta{}, storeError(err)
	}
	m, err := model.ReadMeta(js)
	if err != nil {
		return messages.ModelMeta{}, modelMetaError(info.JobID, err)
	}
	ms.meta.Add(key, m)
	return m, nil
}

// load returns the job's model ready for prediction, loading it on first use.
func (ms *models) load(ctx context.Context, jobID string) (*loadedModel, error) {
	if lm, ok := ms.loaded.Get(jobID); ok {
		return lm, nil
	}
	if err := messages.ValidJobID(jobID); err != nil {
		return nil, notFound(fmt.Errorf("model: %w", err))
	}
	js, err := ms.store.ModelFile(ctx, jobID, bus.ModelJSON)
	if err != nil {
		return nil, storeError(err)
	}
	meta, err := model.ReadMeta(js)
	if err != nil {
		return nil, modelMetaError(jobID, err)
	}
	var shardErr error
	net, err := model.LoadTFJSFromMemory(js, func(path string) ([]byte, error) {
		b, err := ms.store.ModelFile(ctx, jobID, path)
		if err != nil && !errors.Is(err, bus.ErrNoModel) {
			shardErr = err // the bus, not the model
		}
		return b, err
	})
	if shardErr != nil {
		return nil, unavailable(shardErr)
	}
	if err != nil {
		return nil, modelMetaError(jobID, err)
	}
	if net.InputDim() != meta.InputDim || net.OutputDim() != meta.OutputDim() {
		return nil, modelMetaError(jobID, fmt.Errorf("the model takes %d inputs and gives %d outputs, its metadata says %d and %d",
			net.InputDim(), net.OutputDim(), meta.InputDim, meta.OutputDim()))
	}
	tf, err := transform.Compile(onlinePlan(meta))
	if err != nil {
		return nil, modelMetaError(jobID, err)
	}
	comp := model.CompileOf(meta.Spec)
	if err := comp.Validate(); err != nil {
		return nil, modelMetaError(jobID, err)
	}
	lm := &loadedModel{meta: meta, tf: tf, net: net, sigmoid: comp.Loss == model.LossBinaryCrossentropy}
	ms.loaded.Add(jobID, lm)
	return lm, nil
}

// onlinePlan is the model's preprocessing without its label: instances carry features
// only, as a prediction job on a table without the label column does.
func onlinePlan(meta messages.ModelMeta) *messages.Plan {
	p := meta.Plan()
	p.Kind, p.Label, p.LabelDim = messages.JobKindPrediction, messages.ColumnPlan{}, 0
	return p
}

// withoutDataMeta is a copy of the metadata without what shows values of the table, as
// withoutData does for a plan: vocabularies, statistics, imputation and scaling values,
// and the label's classes.
func withoutDataMeta(m messages.ModelMeta) messages.ModelMeta {
	p := withoutData(&messages.Plan{Features: m.Features, Label: m.Label})
	m.Features, m.Label, m.Classes = p.Features, p.Label, nil
	return m
}

func (c *Coordinator) omittedMeta() string {
	return fmt.Sprintf("vocabularies, classes, column statistics, imputation and scaling values: they show the table's data, which needs a token with the %q scope", ScopeData)
}

// describe fills in the metadata of a model for the caller of r.
func (c *Coordinator) describe(r *http.Request, info *messages.ModelInfo) {
	meta, err := c.models.metadata(r.Context(), *info)
	if err != nil {
		info.MetadataError = err.Error()
		return
	}
	if !c.mayHold(r, ScopeData) {
		meta = withoutDataMeta(meta)
		info.Omitted = c.omittedMeta()
	}
	info.Metadata = &meta
}

func (c *Coordinator) handleModels(w http.ResponseWriter, r *http.Request) {
	list, err := c.models.store.ListModels(r.Context())
	if err != nil {
		c.writeError(w, r, unavailable(err))
		return
	}
	for i := range list {
		c.describe(r, &list[i])
	}
	writeJSON(w, http.StatusOK, list)
}

func (c *Coordinator) handleModel(w http.ResponseWriter, r *http.Request) {
	info, err := c.models.store.Model(r.Context(), r.PathValue("id"))
	if err != nil {
		c.writeError(w, r, storeError(err))
		return
	}
	c.describe(r, &info)
	writeJSON(w, http.StatusOK, info)
}

// handleModelFile streams one file of a stored model. The files carry the table's values
// (model.json the vocabularies and statistics), so a download needs the data scope too.
func (c *Coordinator) handleModelFile(w http.ResponseWriter, r *http.Request) {
	id, name := r.PathValue("id"), r.PathValue("name")
	info, err := c.models.store.Model(r.Context(), id)
	if err != nil {
		c.writeError(w, r, storeError(err))
		return
	}
	if _, ok := info.File(name); !ok {
		c.writeError(w, r, &apiError{status: http.StatusNotFound, field: "name", msg: fmt.Sprintf("model %s has no file %q", id, name)})
		return
	}
	if !c.mayHold(r, ScopeData) {
		c.writeError(w, r, &apiError{status: http.StatusForbidden, msg: fmt.Sprintf(
			"the model's files show the table's data (vocabularies, statistics): downloading them needs a token with the %q scope too", ScopeData)})
		return
	}
	rc, size, err := c.models.store.OpenModelFile(r.Context(), id, name)
	if err != nil {
		c.writeError(w, r, storeError(err))
		return
	}
	defer rc.Close()
	ct := "application/octet-stream"
	if name == bus.ModelJSON {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		// The status is sent; a short body (and the digest check) tells the client.
		c.log.Warn("sending a model file", "job_id", id, "file", name, "error", err)
	}
}
