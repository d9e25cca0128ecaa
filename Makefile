# The backup operator's build. `make help` lists the targets.

GO        ?= go
BIN_DIR   := _output/bin
BINARY    := $(BIN_DIR)/backup-controller
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X platform.example.com/backup-operator/pkg/agent.Version=$(VERSION)
# The agent compresses with libzstd through cgo (pkg/archive/zstdenc.go). The binary links it and
# the C library statically, and resolves names and users in Go, so that it runs alone in its image.
BUILD_FLAGS := -trimpath -tags netgo,osusergo -ldflags '$(LDFLAGS) -linkmode external -extldflags "-static"'
# Source folders gofmt checks; generated code is formatted by its generators and checked too.
GO_DIRS   := cmd pkg hack test
# A Go module of its own (the Prometheus module would raise client-go here): ./... skips it.
MONITORING_DIR := test/monitoring
KUBECONFIG ?= $(HOME)/.kube/config
# The image the agent Jobs of a local run use: the one `make image` builds for the local node.
AGENT_IMAGE ?= backup-operator:dev

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Check for gcc and libzstd-dev, which cgo builds need; as root on Debian, install them.
	@hack/build-deps.sh

.PHONY: build
build: deps ## Build the static binary into _output/bin/.
	CGO_ENABLED=1 $(GO) build $(BUILD_FLAGS) -o $(BINARY) ./cmd/backup-controller

# The S3 server (versitygw) the S3 backend's unit tests start from _output/bin/ (they skip
# without it) and the local node runs; a pinned release built from the Go module proxy.
.PHONY: s3-server
s3-server: ## Build the S3 server versitygw into _output/bin/ (for the S3 unit tests and the local node).
	@hack/s3-server.sh build

.PHONY: test
test: deps ## Run the unit tests (fake clientsets, no cluster) with the race detector, then test-monitoring.
	$(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory test-monitoring

.PHONY: test-monitoring
test-monitoring: ## Check the alerts and dashboard in manifests/monitoring against pkg/metrics.
	cd $(MONITORING_DIR) && $(GO) test -count=1 ./...

.PHONY: fuzz
fuzz: deps ## Fuzz the restore reader, plain and encrypted, for FUZZTIME each (default 20s): nothing may escape the target.
	$(GO) test ./pkg/archive -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(or $(FUZZTIME),20s) -fuzzminimizetime 5s
	$(GO) test ./pkg/archive -run '^$$' -fuzz '^FuzzRestoreEncrypted$$' -fuzztime $(or $(FUZZTIME),20s) -fuzzminimizetime 5s

.PHONY: generate
generate: ## Regenerate deepcopy, clientset, listers, informers and CRDs from pkg/apis.
	hack/update-codegen.sh

.PHONY: verify
verify: verify-codegen verify-gofmt verify-vet verify-mod ## Check that generated code is current, and gofmt, go vet and go.mod are clean.

.PHONY: verify-codegen
verify-codegen:
	hack/verify-codegen.sh

.PHONY: verify-gofmt
verify-gofmt:
	@out=$$(gofmt -l $$(ls -d $(GO_DIRS) 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; echo "Run: gofmt -w $(GO_DIRS)"; exit 1; fi

.PHONY: verify-vet
verify-vet: deps
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...
	cd $(MONITORING_DIR) && $(GO) vet ./...

.PHONY: verify-mod
verify-mod:
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result"; exit 1; }
	@cd $(MONITORING_DIR) && $(GO) mod tidy -diff || { echo "$(MONITORING_DIR)/go.mod/go.sum are not tidy: run 'go mod tidy' there and commit the result"; exit 1; }

.PHONY: run
run: deps ## Run the controller locally against $KUBECONFIG (default ~/.kube/config); Jobs run $AGENT_IMAGE.
	$(GO) run ./cmd/backup-controller --kubeconfig=$(KUBECONFIG) --agent-image=$(AGENT_IMAGE) -v=2

.PHONY: clean
clean: ## Remove build output (not the local node: see make cluster-down).
	rm -rf $(BIN_DIR) _output/codegen-bin _output/csi-build

# The local node, the operator's image and the end-to-end tests.
-include hack/cluster.mk
