# Sluice: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

BUF_VERSION                   := v1.75.0
PROTOC_GEN_GO_VERSION         := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
GOLANGCI_LINT_VERSION         := v2.15.0
# validate.proto source; keep in step with buf.build/go/protovalidate (v1.4.0 <-> v1.2.x)
PROTOVALIDATE_PROTO_VERSION   := v1.2.2

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# Every Go module of the workspace, in dependency order.
SERVICES := source build test release notify
MODULES := proto deploy platform services/source services/build services/test services/release services/notify cmd/sluice e2e
GO_PKGS := $(addsuffix /...,$(addprefix ./,$(MODULES)))
# Packages that start goroutines get -race.
TEST_FLAGS ?= -race -count=1 -timeout 20m

# Outside the repository: steps must not find this repository's go.work.
DATA_DIR ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/sluice

.PHONY: all run build test test-short test-postgres bench lint vet tools proto-deps generate generate-nats generate-check proto-lint breaking tidy tidy-check build-gowork-off k8s-check k8s-generate ci clean

all: build

## run: build and start the whole platform in one process with the bundled example.
run: build
	$(BIN)/sluice up --data-dir $(DATA_DIR) --example examples/hello

## build: the all-in-one binary and the five service binaries into ./bin.
build:
	go build -o $(BIN)/sluice ./cmd/sluice
	for s in $(SERVICES); do go build -o $(BIN)/sluice-$$s ./services/$$s/cmd/sluice-$$s; done

# The packages whose tests touch a database: `make test` runs them a second
# time with every service on PostgreSQL (SLUICE_TEST_STORE=postgres).
STORE_PKGS := ./platform/... $(addsuffix /...,$(addprefix ./services/,$(SERVICES)))

## test: every test of every module (SQLite), then the store-dependent ones on PostgreSQL.
## PostgreSQL comes from $$SLUICE_TEST_POSTGRES_URL, else scripts/test-postgres starts one (as root).
test: build $(BIN)/nats-server
	@url="$${SLUICE_TEST_POSTGRES_URL:-$$(scripts/test-postgres || echo)}"; \
	if [ -z "$$url" ]; then echo "make test: no PostgreSQL; its cases are skipped (set SLUICE_TEST_POSTGRES_URL)"; fi; \
	set -x; \
	SLUICE_TEST_POSTGRES_URL="$$url" go test $(TEST_FLAGS) $(GO_PKGS) && \
	SLUICE_TEST_POSTGRES_URL="$$url" SLUICE_TEST_STORE=postgres go test $(TEST_FLAGS) $(STORE_PKGS)

## test-postgres: only the store-dependent tests, every service on PostgreSQL.
test-postgres: $(BIN)/nats-server
	SLUICE_TEST_POSTGRES_URL="$${SLUICE_TEST_POSTGRES_URL:-$$(scripts/test-postgres)}" SLUICE_TEST_STORE=postgres \
		go test $(TEST_FLAGS) $(STORE_PKGS)

## bench: the platform overhead benchmark (prints p50/p95 and runs/s).
bench:
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./cmd/sluice/internal/platformbench/

vet:
	go vet $(GO_PKGS)

$(BIN)/buf:
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
$(BIN)/golangci-lint:
	GOBIN=$(BIN) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go $(BIN)/golangci-lint $(BIN)/nats-server

# A gitignored symlink proto/.deps/protovalidate -> the module cache (read-only; buf follows symlinks).
proto-deps:
	@go mod download github.com/bufbuild/protovalidate@$(PROTOVALIDATE_PROTO_VERSION)
	@mkdir -p proto/.deps
	@ln -sfn "$$(go list -m -f '{{.Dir}}' github.com/bufbuild/protovalidate@$(PROTOVALIDATE_PROTO_VERSION))/proto/protovalidate" proto/.deps/protovalidate

# The NATS auth config: users and permissions derived from deploy/nats
# (platform/natsauth). The k8s base gets the same file.
NATS_AUTH_FILES := deploy/nats/auth.conf deploy/k8s/base/nats/auth.conf

generate: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go proto-deps generate-nats
	$(BIN)/buf generate
	cd proto && go mod tidy

## generate-nats: writes the NATS auth config from the declarations under deploy/nats.
generate-nats:
	go run ./platform/natsauth/cmd/natsauth-gen $(NATS_AUTH_FILES)

## generate-check: fails when the committed generated code differs from what buf makes.
generate-check: generate
	git diff --exit-code -- proto/gen proto/go.mod proto/go.sum $(NATS_AUTH_FILES)
	test -z "$$(git status --porcelain -- proto/gen $(NATS_AUTH_FILES))"

proto-lint: $(BIN)/buf proto-deps
	$(BIN)/buf lint
	$(BIN)/buf format -d --exit-code

# Compare against BREAKING_AGAINST (a git ref) in a temporary worktree, which
# gets the same .deps symlink. Skipped when the ref has no protos yet.
BREAKING_AGAINST ?= HEAD~1
breaking: $(BIN)/buf proto-deps
	@tmp=$$(mktemp -d); trap 'git worktree remove --force "'"$$tmp"'/wt" >/dev/null 2>&1 || true; rm -rf "'"$$tmp"'"' EXIT; \
	if ! git worktree add --detach "$$tmp/wt" $(BREAKING_AGAINST) >/dev/null 2>&1; then echo "breaking: no $(BREAKING_AGAINST) to compare with"; exit 0; fi; \
	if [ ! -d "$$tmp/wt/proto/sluice" ]; then echo "breaking: $(BREAKING_AGAINST) has no protos"; exit 0; fi; \
	mkdir -p "$$tmp/wt/proto/.deps" && ln -sfn "$$(readlink proto/.deps/protovalidate)" "$$tmp/wt/proto/.deps/protovalidate"; \
	$(BIN)/buf breaking --against "$$tmp/wt"

lint: $(BIN)/golangci-lint vet
	$(BIN)/golangci-lint run $(GO_PKGS)

tidy:
	for m in $(MODULES); do (cd $$m && go mod tidy); done

## tidy-check: fails when a go.mod or go.sum is not tidy.
tidy-check: tidy
	git diff --exit-code -- '*/go.mod' '*/go.sum' '**/go.mod' '**/go.sum'

## build-gowork-off: every module builds on its own, without the workspace.
build-gowork-off:
	for m in $(MODULES); do echo "GOWORK=off build $$m"; (cd $$m && GOWORK=off go build ./... && GOWORK=off go vet ./... >/dev/null); done

## k8s-check: render every kustomize overlay and check it against the Kubernetes API types.
k8s-check: $(BIN)/nats-server
	go test -count=1 ./e2e/k8s/

## k8s-generate: rewrite deploy/k8s/base/nats/definitions.yaml from deploy/nats.
k8s-generate:
	go test -count=1 -run '^TestNATSDefinitionsFile$$' ./e2e/k8s/ -args -update

## ci: what .ci/run does after installing the tools.
ci: generate-check proto-lint breaking tidy-check build-gowork-off lint test

clean:
	rm -rf $(BIN)

NATS_SERVER_VERSION := v2.15.2
$(BIN)/nats-server:
	GOBIN=$(BIN) go install github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)
# `make bin/nats-server`, the name the test helpers' messages give.
bin/nats-server: $(BIN)/nats-server
