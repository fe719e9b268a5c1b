package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"pgtrain/messages"
)

// MetaKey is the key of pgtrain's metadata in model.json's userDefinedMetadata.
const MetaKey = "pgtrain"

// ErrNoMeta is returned by ReadMeta for a model.json without pgtrain metadata (a model
// not trained by pgtrain, or by a pgtrain older than the metadata).
var ErrNoMeta = errors.New("model.json has no pgtrain metadata")

// WriteMeta adds meta to dir/model.json as userDefinedMetadata.pgtrain, keeping the rest
// of the document (and any other metadata keys) as it is. It works on what either
// backend's SaveTFJS wrote; the file is replaced atomically.
func WriteMeta(dir string, meta messages.ModelMeta) error {
	path := filepath.Join(dir, TFJSModelFile)
	js, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("writing the model metadata: %w", err)
	}
	var doc tfjsModelJSON
	if err := json.Unmarshal(js, &doc); err != nil {
		return fmt.Errorf("writing the model metadata: %s: %w", TFJSModelFile, err)
	}
	if meta.Version == 0 {
		meta.Version = messages.ModelMetaVersion
	}
	if err := meta.Validate(); err != nil {
		return fmt.Errorf("writing the model metadata: %w", err)
	}
	raw, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("writing the model metadata: %w", err)
	}
	if doc.UserDefinedMetadata == nil {
		doc.UserDefinedMetadata = map[string]json.RawMessage{}
	}
	doc.UserDefinedMetadata[MetaKey] = raw
	out, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return fmt.Errorf("writing the model metadata: %w", err)
	}
	if err := writeFileAtomic(path, out); err != nil {
		return fmt.Errorf("writing the model metadata: %w", err)
	}
	return nil
}

// ReadMeta returns the pgtrain metadata of a model.json document. A document without it is
// ErrNoMeta; metadata of a newer version than this build reads wraps
// messages.ErrModelMetaVersion.
func ReadMeta(modelJSON []byte) (messages.ModelMeta, error) {
	var doc struct {
		UserDefinedMetadata map[string]json.RawMessage `json:"userDefinedMetadata"`
	}
	if err := json.Unmarshal(modelJSON, &doc); err != nil {
		return messages.ModelMeta{}, fmt.Errorf("reading the model metadata: %s: %w", TFJSModelFile, err)
	}
	raw, ok := doc.UserDefinedMetadata[MetaKey]
	if !ok {
		return messages.ModelMeta{}, ErrNoMeta
	}
	// The version first: a newer writer may have changed the meaning of any other field.
	var v struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return messages.ModelMeta{}, fmt.Errorf("reading the model metadata: userDefinedMetadata.%s: %w", MetaKey, err)
	}
	if v.Version > messages.ModelMetaVersion {
		return messages.ModelMeta{}, fmt.Errorf("reading the model metadata: %w", messages.ModelMeta{Version: v.Version}.Validate())
	}
	var meta messages.ModelMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return messages.ModelMeta{}, fmt.Errorf("reading the model metadata: userDefinedMetadata.%s: %w", MetaKey, err)
	}
	if err := meta.Validate(); err != nil {
		return messages.ModelMeta{}, fmt.Errorf("reading the model metadata: %w", err)
	}
	// model.json is indented, the model document with it: give it back as it was written.
	if len(meta.Spec.Model) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, meta.Spec.Model); err == nil {
			meta.Spec.Model = buf.Bytes()
		}
	}
	return meta, nil
}
