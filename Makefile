# Sluice: the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# The Go that builds, tests and lints Sluice, and builds its tools. A machine
# starts on its own Go and ignores go.mod's go line, so every go command here
# runs with this exported: the go command fetches that toolchain from the
# module proxy once (about 10 s) and uses it. Keep it in step with the go line
# of go.work and of every go.mod, and with .ci/run and README.md.
export GOTOOLCHAIN := go1.27.3
# That toolchain's own go goes first on PATH: tools that run `go` with
# GO111MODULE=off (go/packages asks `go list` for the Go version that way, in
# golangci-lint and govulncheck) would otherwise get the machine's Go, which
# does not switch then, and check the standard library as an older Go.
GO_TOOLCHAIN_ROOT := $(shell GOTOOLCHAIN=$(GOTOOLCHAIN) go env GOROOT 2>/dev/null)

BUF_VERSION                   := v1.75.0
PROTOC_GEN_GO_VERSION         := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
GOLANGCI_LINT_VERSION         := v2.15.0
GOVULNCHECK_VERSION           := v1.10.0
# The vulnerability database govulncheck reads: built offline from this
# golang.org/x/vulndb module's OSV files (its indexdb command).
VULNDB_VERSION                := v0.0.0-20261105234957-e22db6528018
# validate.proto source; keep in step with buf.build/go/protovalidate (v1.4.0 <-> v1.2.x)
PROTOVALIDATE_PROTO_VERSION   := v1.2.2
# The nats-server of the tests and the nats image: the release that cmd/sluice embeds (its go.mod).
NATS_SERVER_VERSION           := v2.15.3
# The Gitea of the forge end-to-end tests (e2e/forge_test.go): built from its module
# with cgo's SQLite, about 20 minutes cold on 2 cores, so it is kept under
# bin/.tools by version and Go like the other tools.
GITEA_VERSION                 := v1.24.6

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(if $(GO_TOOLCHAIN_ROOT),$(GO_TOOLCHAIN_ROOT)/bin:)$(PATH)
# Each tool is installed as bin/.tools/<name>-<version>-<Go> and bin/<name>
# links to it, so a new pin or a new GOTOOLCHAIN installs it anew (a linter
# built by an older Go than the code's go line cannot load the code).
TOOLS := $(BIN)/.tools

# Every Go module of the workspace, in dependency order.
SERVICES := source build test release notify
# Where each service's module is: services/<name>, but the test service's
# Go package is `tests` (a package named test needs an alias wherever it is
# imported), so its module is services/tests.
service_dir = services/$(if $(filter test,$(1)),tests,$(1))
SERVICE_DIRS := $(foreach s,$(SERVICES),$(call service_dir,$(s)))
SERVICE_CMDS := $(foreach s,$(SERVICES),./$(call service_dir,$(s))/cmd/sluice-$(s))
MODULES := proto deploy platform $(SERVICE_DIRS) cmd/sluice e2e
GO_PKGS := $(addsuffix /...,$(addprefix ./,$(MODULES)))
# Packages that start goroutines get -race.
TEST_FLAGS ?= -race -count=1 -timeout 20m

# Outside the repository: steps must not find this repository's go.work.
DATA_DIR ?= $(or $(XDG_DATA_HOME),$(HOME)/.local/share)/sluice

# What binaries and images say they are: `--version` and the image labels and tags.
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
VERSION_LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: gitea dev-certs k8s-dev-certs all run build test load example-images test-clean test-short test-postgres test-containers bench fuzz lint vet tools proto-deps generate generate-nats generate-check proto-lint breaking tidy tidy-check build-gowork-off k8s-check k8s-generate vulncheck ci clean images images-clean image-host-packages

all: build

## run: build and start the whole platform in one process with the bundled example.
run: build
	$(BIN)/sluice up --data-dir $(DATA_DIR) --example examples/hello

## build: the all-in-one binary and the five service binaries into ./bin.
build:
	go build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN)/sluice ./cmd/sluice
	go build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN)/ $(SERVICE_CMDS)

# The packages whose tests touch a database: `make test` runs them a second
# time with every service on PostgreSQL (SLUICE_TEST_STORE=postgres).
STORE_PKGS := ./platform/... $(addsuffix /...,$(addprefix ./,$(SERVICE_DIRS)))
# The container scenarios run on their own, verbosely: each prints its tally.
CONTAINER_PKGS := ./e2e/containers/

## test: every test of every module (SQLite), the store-dependent ones again on PostgreSQL,
## then the container scenarios. Builds bin/gitea first, the real forge of e2e/forge_test.go. Builds the images first when Docker is reachable, and first
## removes what an earlier, killed run left (test-clean).
## PostgreSQL comes from $$SLUICE_TEST_POSTGRES_URL, else scripts/test-postgres starts one (as root).
test: test-clean build $(BIN)/nats-server $(BIN)/gitea
	@if timeout 20 docker version >/dev/null 2>&1; then $(MAKE) --no-print-directory images; else echo "test: Docker is not reachable, so the image and container tests will skip"; fi
	@url="$${SLUICE_TEST_POSTGRES_URL:-$$(scripts/test-postgres || echo)}"; \
	if [ -z "$$url" ]; then echo "make test: no PostgreSQL; its cases are skipped (set SLUICE_TEST_POSTGRES_URL)"; fi; \
	set -x; \
	SLUICE_TEST_POSTGRES_URL="$$url" go test $(TEST_FLAGS) $$(go list $(GO_PKGS) | grep -v '/e2e/containers$$') && \
	SLUICE_TEST_POSTGRES_URL="$$url" SLUICE_TEST_STORE=postgres go test $(TEST_FLAGS) $(STORE_PKGS)
	$(MAKE) --no-print-directory test-containers

## test-postgres: only the store-dependent tests, every service on PostgreSQL.
test-postgres: $(BIN)/nats-server
	SLUICE_TEST_POSTGRES_URL="$${SLUICE_TEST_POSTGRES_URL:-$$(scripts/test-postgres)}" SLUICE_TEST_STORE=postgres \
		go test $(TEST_FLAGS) $(STORE_PKGS)

## test-clean: remove the containers, networks and volumes of earlier test runs that were killed
## (labelled by the tests with the pid of their process; a run still going keeps its own).
test-clean:
	@scripts/test-clean

## load: the load test (1,000 runs across 20 repositories on two build and two test replicas, in containers; needs `make images`): prints each repository's first start, GetRun/GetLogs latency under load and idle against /healthz, and each service's peak RSS.
load: test-clean
	SLUICE_E2E_LOAD=1 go test -v -count=1 -timeout 40m -run '^TestLoad$$' $(CONTAINER_PKGS)

## test-containers: the end-to-end scenarios with every service in its own container (needs `make images`).
test-containers: test-clean
	go test -v -count=1 -timeout 45m $(CONTAINER_PKGS)

## bench: the platform overhead benchmark (prints p50/p95 and runs/s, and each against a floor measured in the same run), the cost of authorization per request (p50/p99 with and without it), the secret masker's throughput on a 100 MB log with 50 secrets (MB/s), and a step's start to end on the process executor, in a container, and with a plain `docker run` (p50/p95 of 30), and what ordering a stage of 100 steps costs (one after the other, a graph of 10 layers, 100 conditions; µs per step).
bench:
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./cmd/sluice/internal/platformbench/
	go test -run '^$$' -bench . -benchtime 5000x ./platform/auth/
	go test -run '^$$' -bench . -benchtime 3x ./platform/secretmask/
	go test -run '^$$' -bench . -benchtime 1x ./platform/executor/container/
	go test -run '^$$' -bench . -benchtime 200x ./platform/stepgraph/
	go test -run '^$$' -bench . -benchtime 1x ./platform/stepcache/

## fuzz: every fuzz target of the repository (a func FuzzXxx in a _test.go) for FUZZTIME each (10s by default), one after the other: at the default about 13 s per target with the build cache warm, a minute for the five of today.
## A target that fails writes the input under its package's testdata/fuzz/FuzzXxx: fix the code, and commit the file with a test that the fix makes pass.
## FUZZ_FLAGS go to go test. By default each new input that adds coverage is minimized in at most 100 runs: the corpora hold large hostile
## inputs, which go test would spend most of a short FUZZTIME minimizing (a tenth of the runs). Add -parallel 1 for one fuzzing process instead of one per core.
FUZZTIME ?= 10s
FUZZ_FLAGS ?= -fuzzminimizetime=100x
fuzz:
	@targets=$$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' $(MODULES) | sort | while read -r f; do \
		for t in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$f"); do echo "./$$(dirname "$$f"):$$t"; done; \
	done); \
	[ -n "$$targets" ] || { echo "fuzz: no fuzz targets found"; exit 1; }; \
	failed=""; start=$$(date +%s); \
	for target in $$targets; do \
		pkg=$${target%%:*}; name=$${target##*:}; \
		echo "fuzz: $$name ($$pkg) for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZ_FLAGS) "$$pkg" || failed="$$failed $$name"; \
	done; \
	echo "fuzz: $$(echo $$targets | wc -w) targets in $$(( $$(date +%s) - start )) s"; \
	[ -z "$$failed" ] || { echo "fuzz: failed:$$failed (the inputs are under testdata/fuzz)"; exit 1; }

vet:
	go vet $(GO_PKGS)

# go_tool NAME PACKAGE VERSION: the rules that install bin/NAME (go install
# PACKAGE@VERSION) by way of its versioned file under bin/.tools. The link is
# checked on every run, so a bin/NAME that an older Makefile installed is
# replaced whatever its age.
define go_tool
$(TOOLS)/$(1)-$(3)-$(GOTOOLCHAIN):
	@rm -rf $$@.tmp && mkdir -p $$@.tmp
	GOBIN=$$@.tmp go install $(2)@$(3)
	@mv $$@.tmp/$(1) $$@ && rm -rf $$@.tmp
$(BIN)/$(1): $(TOOLS)/$(1)-$(3)-$(GOTOOLCHAIN) FORCE
	@[ "$$$$(readlink $$@)" = .tools/$(1)-$(3)-$(GOTOOLCHAIN) ] || ln -sfn .tools/$(1)-$(3)-$(GOTOOLCHAIN) $$@
endef
FORCE:
$(eval $(call go_tool,buf,github.com/bufbuild/buf/cmd/buf,$(BUF_VERSION)))
$(eval $(call go_tool,protoc-gen-go,google.golang.org/protobuf/cmd/protoc-gen-go,$(PROTOC_GEN_GO_VERSION)))
$(eval $(call go_tool,protoc-gen-connect-go,connectrpc.com/connect/cmd/protoc-gen-connect-go,$(PROTOC_GEN_CONNECT_GO_VERSION)))
$(eval $(call go_tool,golangci-lint,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION)))
$(eval $(call go_tool,govulncheck,golang.org/x/vuln/cmd/govulncheck,$(GOVULNCHECK_VERSION)))
$(eval $(call go_tool,indexdb,golang.org/x/vulndb/cmd/indexdb,$(VULNDB_VERSION)))
$(eval $(call go_tool,nats-server,github.com/nats-io/nats-server/v2,$(NATS_SERVER_VERSION)))
# Gitea cannot be `go install`ed (its go.mod has replace directives): it is
# built in a writable copy of its module, and the copy stays beside the binary
# as the STATIC_ROOT_PATH it reads its locales and templates from.
$(TOOLS)/gitea-$(GITEA_VERSION)-$(GOTOOLCHAIN)/gitea:
	@rm -rf $(@D).tmp && mkdir -p $(@D).tmp
	dir=$$(cd / && go mod download -json code.gitea.io/gitea@$(GITEA_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	[ -n "$$dir" ] || { echo "gitea: go mod download found no module directory" >&2; exit 1; }; \
	cp -R "$$dir" $(@D).tmp/src && chmod -R u+w $(@D).tmp/src
	cd $(@D).tmp/src && GOWORK=off CGO_ENABLED=1 go build -trimpath -tags 'sqlite sqlite_unlock_notify' -ldflags "-s -w -X main.Version=$(GITEA_VERSION:v%=%) -X 'main.Tags=sqlite sqlite_unlock_notify'" -o ../gitea .
	@rm -rf $(@D) && mv $(@D).tmp $(@D)
$(BIN)/gitea: $(TOOLS)/gitea-$(GITEA_VERSION)-$(GOTOOLCHAIN)/gitea FORCE
	@[ "$$(readlink $@)" = .tools/gitea-$(GITEA_VERSION)-$(GOTOOLCHAIN)/gitea ] || ln -sfn .tools/gitea-$(GITEA_VERSION)-$(GOTOOLCHAIN)/gitea $@
## gitea: the Gitea of the forge end-to-end tests, in bin/gitea.
gitea: $(BIN)/gitea
bin/gitea: $(BIN)/gitea

tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go $(BIN)/golangci-lint $(BIN)/govulncheck $(BIN)/nats-server

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

# --allow-parallel-runners: another checkout's lint on this machine waits
# for its lock instead of failing this one.
lint: $(BIN)/golangci-lint vet
	$(BIN)/golangci-lint run --allow-parallel-runners $(GO_PKGS)

# The vulnerability database, built once per vulndb version (gitignored, as
# all of ./bin): govulncheck reads it offline through a file:// URL.
VULN_DB := $(BIN)/.vulndb/$(VULNDB_VERSION)
$(VULN_DB)/index/db.json: | $(BIN)/indexdb
	go mod download golang.org/x/vulndb@$(VULNDB_VERSION)
	rm -rf $(VULN_DB) $(VULN_DB).tmp && mkdir -p $(VULN_DB).tmp
	$(BIN)/indexdb -vulns "$$(go list -m -f '{{.Dir}}' golang.org/x/vulndb@$(VULNDB_VERSION))/data/osv" -out $(VULN_DB).tmp
	mv $(VULN_DB).tmp $(VULN_DB)

## vulncheck: govulncheck on every module, offline, against the vulndb pinned above; any reachable vulnerability fails.
vulncheck: $(BIN)/govulncheck $(VULN_DB)/index/db.json
	@echo "vulncheck: $$($(BIN)/govulncheck -version | sed -n 's/^Scanner: //p') with the database of golang.org/x/vulndb@$(VULNDB_VERSION) on $$(go env GOVERSION)"
	@# One run over every module (from any module's folder: govulncheck wants a
	@# go.mod there; go.work puts the rest in): the same packages and versions as
	@# one run per module, in a quarter of the time.
	cd proto && $(BIN)/govulncheck -db file://$(VULN_DB) $(addsuffix /...,$(addprefix ../,$(MODULES)))

tidy:
	for m in $(MODULES); do (cd $$m && go mod tidy); done

## tidy-check: fails when a go.mod or go.sum is not tidy.
tidy-check: tidy
	git diff --exit-code -- '*/go.mod' '*/go.sum' '**/go.mod' '**/go.sum'

## build-gowork-off: every module builds on its own, without the workspace.
build-gowork-off:
	for m in $(MODULES); do echo "GOWORK=off build $$m"; (cd $$m && GOWORK=off go build ./... && GOWORK=off go vet ./... >/dev/null); done

## dev-certs: a development CA and the certificates of the Compose stack (deploy/compose/certs, gitignored).
# Every name a service or NATS server is reached by inside the stack, and
# localhost and 127.0.0.1 for the published ports. COMPOSE_CERTS_DIR moves
# them (the end-to-end test makes its own).
COMPOSE_CERTS_DIR ?= deploy/compose/certs
dev-certs:
	go run ./platform/devcerts/cmd/sluice-devcerts -dir $(COMPOSE_CERTS_DIR) \
		nats=nats-1,nats-2,nats-3,localhost,127.0.0.1 \
		source=source,localhost,127.0.0.1 \
		build=build,build-1,build-2,localhost,127.0.0.1 \
		test=test,test-1,test-2,localhost,127.0.0.1 \
		release=release,release-1,release-2,localhost,127.0.0.1 \
		notify=notify,localhost,127.0.0.1

## k8s-dev-certs: a development CA and certificates for the Kubernetes Secret sluice-tls (bin/k8s-dev-certs), and the kubectl command that makes it.
K8S_CERTS_DIR ?= $(BIN)/k8s-dev-certs
k8s-dev-certs:
	go run ./platform/devcerts/cmd/sluice-devcerts -dir $(K8S_CERTS_DIR) \
		nats=nats,nats-0.nats,nats-1.nats,nats-2.nats,nats.sluice.svc,localhost,127.0.0.1 \
		$(foreach s,$(SERVICES),$(s)=$(s),$(s).sluice,$(s).sluice.svc,localhost,127.0.0.1)
	@echo "kubectl -n sluice create secret generic sluice-tls --from-file=ca.crt=$(K8S_CERTS_DIR)/ca.pem \\"
	@echo "  $(foreach s,nats $(SERVICES),--from-file=$(s).crt=$(K8S_CERTS_DIR)/$(s).pem --from-file=$(s).key=$(K8S_CERTS_DIR)/$(s)-key.pem)"

## k8s-check: render every kustomize overlay and check it against the Kubernetes API types.
k8s-check: $(BIN)/nats-server
	go test -count=1 ./e2e/k8s/

## k8s-generate: rewrite deploy/k8s/base/nats/definitions.yaml from deploy/nats.
k8s-generate:
	go test -count=1 -run '^TestNATSDefinitionsFile$$' ./e2e/k8s/ -args -update

## ci: what .ci/run does after installing the tools.
ci: generate-check proto-lint breaking tidy-check build-gowork-off lint vulncheck images test

clean:
	rm -rf $(BIN) .cache

# `make bin/nats-server`, the name the test helpers' messages give.
bin/nats-server: $(BIN)/nats-server

# Images ######################################################################
# Every image is FROM scratch and built with the legacy builder (this Docker has
# no BuildKit), from a context under .cache/images/<dir> that holds only what
# the image needs; nothing is pulled. deploy/images/<dir>/Dockerfile is the
# recipe; <dir> is the service's name, nats, postgres, or sluice for the
# all-in-one image.
# Services that run commands with /bin/sh -c get Debian's static busybox.
SHELL_SERVICES := build test release
IMAGE_DIRS     := $(SERVICES) nats postgres sluice
IMAGE_CACHE    := $(CURDIR)/.cache/images
IMAGE_SOURCE   := https://github.com/sluicehq/sluice
# A docker tag allows [A-Za-z0-9_.-] only.
IMAGE_TAG      := $(subst +,-,$(subst /,-,$(VERSION)))

image_name = $(if $(filter sluice,$(1)),sluice,sluice-$(1))
# docker_build DIR [EXTRA ARGS]: builds and tags the image of DIR from its context.
docker_build = DOCKER_BUILDKIT=0 docker build --quiet --force-rm \
	-t $(call image_name,$(1)):$(IMAGE_TAG) -t $(call image_name,$(1)):dev \
	--label org.opencontainers.image.title=$(call image_name,$(1)) \
	--label org.opencontainers.image.version=$(VERSION) \
	--label org.opencontainers.image.revision=$(COMMIT) \
	--label org.opencontainers.image.source=$(IMAGE_SOURCE) \
	$(2) -f deploy/images/$(1)/Dockerfile $(IMAGE_CACHE)/$(1) 2>&1 >/dev/null \
	| { grep -v -e '^DEPRECATED: The legacy builder' -e '^ *BuildKit is currently disabled' -e '^ *environment-variable\.' -e '^$$' || true; }; \
	echo "image $(call image_name,$(1)):$(IMAGE_TAG) (and :dev)"

## images: the container images sluice-{source,build,test,release,notify,nats,postgres} and sluice, tagged :<git describe> and :dev, and the example images (docker, FROM scratch, nothing pulled).
images: image-host-packages $(IMAGE_CACHE)/nats-$(NATS_SERVER_VERSION)-$(GOTOOLCHAIN)/nats-server
	@mkdir -p $(IMAGE_CACHE)/bin
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $(VERSION_LDFLAGS)" -o $(IMAGE_CACHE)/bin/ \
		./cmd/sluice $(SERVICE_CMDS)
	@for d in $(SERVICES) sluice; do \
		ctx=$(IMAGE_CACHE)/$$d; rm -rf $$ctx; \
		mkdir -p $$ctx/root/etc/ssl/certs $$ctx/root/tmp $$ctx/data; \
		chmod 1777 $$ctx/root/tmp; \
		cp deploy/images/files/passwd deploy/images/files/group $$ctx/root/etc/; \
		cp /etc/ssl/certs/ca-certificates.crt $$ctx/root/etc/ssl/certs/; \
		case " $(SHELL_SERVICES) sluice " in *" $$d "*) \
			mkdir -p $$ctx/root/bin $$ctx/root/usr/bin; \
			cp /bin/busybox $$ctx/root/bin/busybox; ln -s /bin/env $$ctx/root/usr/bin/env;; \
		esac; \
		if [ $$d = sluice ]; then cp -p $(IMAGE_CACHE)/bin/sluice $$ctx/; else cp -p $(IMAGE_CACHE)/bin/sluice-$$d $$ctx/; fi; \
	done
	@for d in $(SERVICES); do $(call docker_build,$$d); done
	@$(call docker_build,sluice)
	@rm -rf $(IMAGE_CACHE)/nats && mkdir -p $(IMAGE_CACHE)/nats
	@cp -p $(IMAGE_CACHE)/nats-$(NATS_SERVER_VERSION)-$(GOTOOLCHAIN)/nats-server $(IMAGE_CACHE)/nats/
	@$(call docker_build,nats,--label sluice.nats-server.version=$(NATS_SERVER_VERSION))
	@deploy/images/postgres/build-rootfs.sh $(IMAGE_CACHE)/postgres >/dev/null
	@$(call docker_build,postgres,--label sluice.postgresql.version=$$(cat $(IMAGE_CACHE)/postgres/pg-version))
	@$(MAKE) --no-print-directory example-images
	@# Earlier builds of ours that lost their tags; one still used by a container stays.
	@docker images -q --filter dangling=true --filter label=org.opencontainers.image.source=$(IMAGE_SOURCE) \
		| xargs -r docker rmi >/dev/null 2>&1 || true

# nats-server for the image: static (the one in ./bin may use cgo's resolver).
$(IMAGE_CACHE)/nats-$(NATS_SERVER_VERSION)-$(GOTOOLCHAIN)/nats-server:
	GOBIN=$(@D) CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" github.com/nats-io/nats-server/v2@$(NATS_SERVER_VERSION)

# The images are made of the host's files from Debian packages: install the
# missing packages as root (only those: apt-get would upgrade the others), or
# say which to install. A dynamic /bin/busybox (Debian's busybox package)
# would not run FROM scratch: it must be busybox-static's.
# The Go versions of examples/guestbook's matrix: TAG=GOTOOLCHAIN (fetched from the
# module proxy when it is not the go on the PATH).
EXAMPLE_GO := 1.26=go1.26.8 1.27=$(GOTOOLCHAIN)

## example-images: sluice-example-go:1.26 and :1.27 for examples/guestbook (this host's Go toolchains and busybox, FROM scratch; an image of the same Go version is kept).
example-images: image-host-packages
	@for v in $(EXAMPLE_GO); do \
		tag=$${v%%=*}; tc=$${v#*=}; \
		version=$$(cd / && GOTOOLCHAIN=$$tc go env GOVERSION) || exit 1; \
		case $$version in go$$tag|go$$tag.*) ;; *) echo "example-images: GOTOOLCHAIN=$$tc is $$version, not Go $$tag" >&2; exit 1;; esac; \
		if [ "$$(docker image inspect -f '{{index .Config.Labels "sluice.go.version"}}' sluice-example-go:$$tag 2>/dev/null)" = $$version ]; then \
			echo "image sluice-example-go:$$tag ($$version, kept)"; continue; \
		fi; \
		root=$$(cd / && GOTOOLCHAIN=$$tc go env GOROOT) || exit 1; \
		ctx=$(IMAGE_CACHE)/example-go-$$tag; rm -rf $$ctx; mkdir -p $$ctx/go; \
		cp /bin/busybox deploy/images/files/passwd $$ctx/; \
		(cd $$root && tar cf - --exclude=./test --exclude=./doc --exclude=./api --exclude=./misc .) | tar xf - -C $$ctx/go || exit 1; \
		chmod -R u+w $$ctx; \
		DOCKER_BUILDKIT=0 docker build --quiet --force-rm -t sluice-example-go:$$tag --label sluice.go.version=$$version \
			-f deploy/images/example-go/Dockerfile $$ctx 2>&1 >/dev/null \
			| { grep -v -e '^DEPRECATED: The legacy builder' -e '^ *BuildKit is currently disabled' -e '^ *environment-variable\.' -e '^$$' || true; }; \
		rm -rf $$ctx; \
		[ "$$(docker image inspect -f '{{index .Config.Labels "sluice.go.version"}}' sluice-example-go:$$tag 2>/dev/null)" = $$version ] || exit 1; \
		echo "image sluice-example-go:$$tag ($$version)"; \
	done

image-host-packages:
	@pkgs=""; \
	[ -x /usr/lib/postgresql/15/bin/postgres ] || pkgs="$$pkgs postgresql-15"; \
	{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || pkgs="$$pkgs busybox-static"; \
	[ -s /etc/ssl/certs/ca-certificates.crt ] || pkgs="$$pkgs ca-certificates"; \
	if [ -z "$$pkgs" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
		echo "make images: the images are made of files from the host's Debian packages; missing:$$pkgs"; \
		echo "make images: install them as root, e.g. sudo apt-get install$$pkgs"; \
		exit 1; \
	fi; \
	echo "make images: installing$$pkgs"; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$pkgs

## images-clean: removes every tag of the images `make images` makes, and their build contexts.
images-clean:
	for n in $(foreach d,$(IMAGE_DIRS),$(call image_name,$(d))); do docker images --format '{{.Repository}}:{{.Tag}}' $$n; done \
		| xargs -r docker rmi
	docker images -q --filter dangling=true --filter label=org.opencontainers.image.source=$(IMAGE_SOURCE) | xargs -r docker rmi
	docker images --format '{{.Repository}}:{{.Tag}}' sluice-example-go | xargs -r docker rmi
	rm -rf $(IMAGE_CACHE)
