package metrics_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"pgtrain/internal/metrics"
)

// A role's own collector on a process registry, served in the Prometheus text format.
func ExampleHandler() {
	reg := metrics.NewRegistry()
	pages := prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "scorer", Name: "pages_scored_total", Help: "Pages scored."})
	reg.MustRegister(pages)
	pages.Add(3)

	rec := httptest.NewRecorder()
	metrics.Handler(reg).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for line := range strings.Lines(string(body)) {
		if strings.HasPrefix(line, "pgtrain_") {
			fmt.Print(line)
		}
	}
	// Output: pgtrain_scorer_pages_scored_total 3
}
