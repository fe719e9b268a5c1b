# pgtrain — train Keras-style models on PostgreSQL tables through NATS JetStream.
# `make help` lists the targets. `make test` is what CI runs.

GO        ?= go
BIN       := bin/pgtrain
ROWS      ?= 2000000
DEMO_ROWS ?= 1000000
STATICCHECK_VERSION ?= 2025.1.1

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

.PHONY: test
test: build ## run every test against real PostgreSQL and JetStream
	$(GO) test -count=1 -timeout 20m ./...

.PHONY: lint
lint: ## go vet and staticcheck
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
