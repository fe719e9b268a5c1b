package coordinator

import (
	_ "embed"
	"net/http"
)

// openAPI is the API's OpenAPI 3 document, written by hand next to the route table; a test
// checks that both list the same routes with the same scopes.
//
//go:embed openapi.json
var openAPI []byte

// handleOpenAPI serves the OpenAPI document. It needs the read scope like the rest of the
// API: only a caller with a token may learn which routes exist.
func (c *Coordinator) handleOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPI) // the client may be gone; nothing to do about it
}
