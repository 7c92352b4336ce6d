# Orchard's entry points. Every target does its own setup, so each works on a
# fresh machine: `make demo` runs the local end-to-end demo, `make test` the
# whole test suite with real emulators.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The onnxruntime shared library, fetched by `make ort` (see
# infra/scripts/fetch-onnxruntime.sh for the pinned version and sha256).
ORT_DIR := $(CURDIR)/.cache/onnxruntime
export ORT_LIB ?= $(ORT_DIR)/libonnxruntime.so.1
# GoMLX's pure-Go backend uses SIMD kernels only with this experiment (2-2.5x).
export GOEXPERIMENT ?= simd

GO ?= go
PKGS := ./...

.PHONY: help
help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps: ort emulators turbojpeg ## fetch Go modules, onnxruntime, libjpeg-turbo and the emulators
	$(GO) mod download

.PHONY: ort
ort: $(ORT_LIB) ## fetch libonnxruntime (pinned, sha256-checked) into .cache/

$(ORT_LIB):
	infra/scripts/fetch-onnxruntime.sh $(dir $(ORT_LIB))

.PHONY: turbojpeg
turbojpeg: ## install libjpeg-turbo's TurboJPEG headers and static library (Debian libturbojpeg0-dev)
	.ci/install-turbojpeg.sh

.PHONY: emulators
emulators: ## install fake-gcs-server and check the Pub/Sub emulator
	.ci/install-emulators.sh

.PHONY: fmt-check
fmt-check: ## fail if any Go file is not gofmt-clean
	@out=$$(gofmt -l $$(git ls-files '*.go' ; git ls-files --others --exclude-standard '*.go')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: turbojpeg
	$(GO) vet $(PKGS)
	# The trainer's optional XLA backend (GPU jobs) must keep compiling.
	$(GO) vet -tags xla ./trainer/...

.PHONY: lint
lint: fmt-check vet ## gofmt check and go vet

.PHONY: test
# GoMLX's pure-Go backend does pointer arithmetic in its SIMD kernels that the
# checkptr instrumentation (on by default under -race) rejects; turn checkptr
# off for those packages only, keeping the race detector everywhere.
RACE_FLAGS := -race -gcflags='github.com/gomlx/...=-d=checkptr=0'

test: deps lint ## lint, then every test with -race against real emulators
	$(GO) test $(RACE_FLAGS) -count=1 -timeout 30m $(PKGS)

.PHONY: bench
bench: deps ## benchmarks: preprocessing, classifier, Predict (in-process and loopback HTTP)
	$(GO) test -run '^$$' -bench . -benchmem ./shared/... ./functions/...

.PHONY: bench-peer
bench-peer: deps ## Orchard vs a Node peer (sharp + onnxruntime-node): CPU/request and latency side by side (bench/README.md)
	cd bench/peer && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	$(GO) run ./bench/cmd/peerbench $(PEERBENCH_FLAGS)

.PHONY: bench-memory
bench-memory: deps ## 16 concurrent 39 MP PNGs against Predict in a 2 GiB cgroup: answers and peak RSS (needs root)
	$(GO) run ./bench/cmd/peerbench -memory $(PEERBENCH_FLAGS)

.PHONY: demo
demo: deps ## the whole pipeline locally: train via Pub/Sub → SubmitTraining → Vertex stand-in, promote, upload, predict
	$(GO) run ./infra/local/cmd/orchard-local demo $(DEMO_FLAGS)

.PHONY: up
up: deps ## the local stack left running (with the Vertex AI stand-in), printing commands that work against it
	$(GO) run ./infra/local/cmd/orchard-local up -vertex $(UP_FLAGS)

.PHONY: deploy-checks
deploy-checks: ## offline delivery checks: Dockerfile lint, cloudbuild.yaml, deploy.sh, terraform fmt/validate/test, planted errors
	infra/checks/run.sh fast

.PHONY: check-images
check-images: ort ## build both images with podman from local bases and run them (needs root)
	infra/checks/run.sh images
