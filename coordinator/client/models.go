package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-retryablehttp"

	"pgtrain/internal/pgutil"
	"pgtrain/messages"
)

// modelJSON is the model file that carries the metadata; a pull writes it last, so a
// directory with it holds a complete model.
const modelJSON = "model.json"

// Models lists the stored models, oldest first, with their metadata (without the table's
// values unless the token holds the data scope).
func (c *Client) Models(ctx context.Context) ([]messages.ModelInfo, error) {
	var out []messages.ModelInfo
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/models", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Model returns one stored model's files and metadata; ErrNotFound if there is none.
func (c *Client) Model(ctx context.Context, id string) (*messages.ModelInfo, error) {
	var m messages.ModelInfo
	if _, err := c.do(ctx, c.http, http.MethodGet, "/v1/models/"+url.PathEscape(id), nil, nil, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// Predict sends instances (raw column values by name) to the model's online prediction and
// returns one prediction per instance.
func (c *Client) Predict(ctx context.Context, id string, instances []map[string]any) (*messages.OnlinePredictResponse, error) {
	var out messages.OnlinePredictResponse
	req := messages.OnlinePredictRequest{Instances: instances}
	if _, err := c.do(ctx, c.http, http.MethodPost, "/v1/models/"+url.PathEscape(id)+":predict", nil, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PullModel downloads a stored model's files into dir (created if needed). Each file goes
// through a temporary name, and model.json comes last, so dir holds a complete model once
// PullModel returns nil. Downloading needs a token with the read and data scopes.
func (c *Client) PullModel(ctx context.Context, id, dir string) error {
	m, err := c.Model(ctx, id)
	if err != nil {
		return err
	}
	files := slices.Clone(m.Files)
	slices.SortStableFunc(files, func(a, b messages.ModelFileInfo) int {
		switch {
		case a.Name == modelJSON:
			return 1
		case b.Name == modelJSON:
			return -1
		}
		return 0
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pulling model %s: %w", id, err)
	}
	for _, f := range files {
		// The names come from the coordinator: never let one leave dir.
		if f.Name == "" || f.Name != filepath.Base(f.Name) || strings.ContainsAny(f.Name, `/\`) || f.Name == ".." || f.Name == "." {
			return fmt.Errorf("pulling model %s: the coordinator names a file %q", id, f.Name)
		}
		if err := c.downloadFile(ctx, id, f, dir); err != nil {
			return fmt.Errorf("pulling model %s: %w", id, err)
		}
	}
	return nil
}

func (c *Client) downloadFile(ctx context.Context, id string, f messages.ModelFileInfo, dir string) error {
	path := "/v1/models/" + url.PathEscape(id) + "/files/" + url.PathEscape(f.Name)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("GET %s: invalid coordinator URL %s", path, pgutil.Redact(c.base))
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return answerError(http.MethodGet, path, resp.StatusCode, data)
	}
	tmp, err := os.CreateTemp(dir, f.Name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, io.LimitReader(resp.Body, f.Size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if n != f.Size {
		return fmt.Errorf("GET %s: %d bytes, the model lists %s as %d", path, n, f.Name, f.Size)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, f.Name))
}
