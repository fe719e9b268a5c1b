# pgtrain — train Keras-style models on PostgreSQL tables through NATS JetStream.
# `make help` lists the targets. `make test` is what CI runs.

GO        ?= go
BIN       := bin/pgtrain
ROWS      ?= 2000000
DEMO_ROWS ?= 1000000
GOFMT     ?= $(shell $(GO) env GOROOT)/bin/gofmt
STATICCHECK_VERSION ?= v0.8.2
# A default run writes the committed results in bench/; a smaller one writes to bench/local/.
BENCH_OUT ?= $(if $(filter 2000000,$(ROWS)),bench,bench/local)
# The model benchmark compares the engine with OpenBLAS's sgemm peak when the library is there:
# the probe compiles and links a program that includes the header, as the cgo build does.
# (A '#' inside $(shell ...) keeps a backslash in make 4.3 and needs one before: a variable
# works with both.)
HASH := \#
OPENBLAS_TAGS := $(shell printf '$(HASH)include <cblas.h>\nint main(void) { return 0; }\n' | $(CC) -x c - -lopenblas -o /dev/null >/dev/null 2>&1 && echo -tags openblas)

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/pgtrain
	$(GO) build -o $(BIN) ./cmd/pgtrain

.PHONY: demo
demo: build ## train on a throwaway PostgreSQL with a 1M-row demo table, printing the loss per epoch
	$(BIN) up --demo --demo-rows $(DEMO_ROWS)

.PHONY: dashboard-screenshot
dashboard-screenshot: ## docs/dashboard.png: the dashboard following a demo job, from the Chromium test
	PGTRAIN_DASHBOARD_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(GO) test -count=1 -run 'TestDashboard$$' -v ./e2e/

.PHONY: test
test: check build parity/node_modules/.package-lock.json tf-check ## run every test against real PostgreSQL, JetStream and TensorFlow.js
	$(GO) test -count=1 -timeout 20m ./...

# The fault suite kills and restarts real processes against bin/pgtrain; it is not built with -race.
.PHONY: race
race: build parity/node_modules/.package-lock.json ## every test but the fault suite under the race detector
	$(GO) test -race -count=1 -timeout 40m $$($(GO) list ./... | grep -v '^pgtrain/faults$$')

.PHONY: parity
parity: parity/node_modules/.package-lock.json ## the TensorFlow.js parity suite of the model engine alone
	$(GO) test -count=1 -run Parity -v ./model

# TensorFlow.js 4.22.0, pinned by the lock file: pure JavaScript, nothing downloaded at run time.
parity/node_modules/.package-lock.json: parity/package-lock.json
	npm ci --prefix parity --no-audit --no-fund

.PHONY: faults
faults: build ## the fault-injection suite alone: kills and restarts of real processes mid-job
	$(GO) test -count=1 -timeout 15m -v -run . ./faults/

.PHONY: soak
soak: build ## the fault-injection suite over a 1M-row table (about 7 minutes)
	PGTRAIN_FAULTS_ROWS=1000000 $(GO) test -count=1 -timeout 60m -v ./faults/

.PHONY: bench
bench: build parity/node_modules/.package-lock.json ## benchmarks: the pipeline vs binary COPY and the usual ways (ROWS, default 2M), the engine vs TF.js and sgemm
	$(GO) run ./bench/pipeline --rows $(ROWS) --out $(BENCH_OUT) --pgtrain $(BIN)
	$(GO) run $(OPENBLAS_TAGS) ./bench/modelbench -out $(BENCH_OUT)/model_results.json

.PHONY: tf-check
tf-check: ## compile the TensorFlow backend against the TF 2.18 C API headers (no libtensorflow needed)
	GO=$(GO) bash scripts/tf-check.sh

.PHONY: tf-test
tf-test: ## the TensorFlow backend's tests (needs libtensorflow 2.18; see README)
	CGO_ENABLED=1 $(GO) test -count=1 -tags tensorflow ./model/tensorflow/

.PHONY: build-tf
build-tf: ## bin/pgtrain with the TensorFlow backend (needs libtensorflow 2.18)
	CGO_ENABLED=1 $(GO) build -tags tensorflow -o $(BIN) ./cmd/pgtrain

.PHONY: check
check: fmt-check tidy-check lint ## gofmt, go mod tidy, go vet and staticcheck: what CI checks before the tests

# Every Go file of the module; parity/node_modules is npm's, not ours.
.PHONY: fmt-check
fmt-check:
	@files=$$(find . -name node_modules -prune -o -name '*.go' -print | xargs $(GOFMT) -l); \
	if [ -n "$$files" ]; then printf 'gofmt -l: run gofmt -w on\n%s\n' "$$files"; exit 1; fi

# go.mod and go.sum say exactly what the code imports.
.PHONY: tidy-check
tidy-check:
	$(GO) mod tidy -diff

.PHONY: lint
lint: ## go vet and staticcheck (the version pinned by STATICCHECK_VERSION)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
