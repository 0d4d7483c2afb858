# dinoclip: build, test and benchmark. `make help` lists the targets.

GO      ?= go
PYTHON  ?= python3
BIN     ?= bin

.PHONY: help build test test-go test-python python-deps bench fuzz golden demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the CPU-only CLI into bin/dinoclip
	$(GO) build -o $(BIN)/dinoclip ./cmd/dinoclip

test: test-go test-python ## run every test (Go, then Python)

test-go: ## vet and test the Go module (CPU only)
	$(GO) vet ./...
	$(GO) test ./...

python-deps: ## install the pinned Python test dependencies and the dinoclip package
	$(PYTHON) -m pip install --quiet -r python/requirements-test.txt
	$(PYTHON) -m pip install --quiet --no-deps -e python

test-python: python-deps ## run the Python package's tests (builds the Go CLI they call)
	$(PYTHON) -m pytest -q python/tests

bench: ## CPU benchmarks of the engine and retrieval
	$(GO) test -run '^$$' -bench . -benchtime 3x ./nn ./retrieval

fuzz: ## run each fuzz target for 30 s
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./npy
	$(GO) test -run '^$$' -fuzz FuzzRead -fuzztime 30s ./safetensors
	$(GO) test -run '^$$' -fuzz FuzzReadModel -fuzztime 30s ./checkpoint

golden: ## regenerate the PyTorch golden runs (needs torch; see python/tools/README.md)
	$(PYTHON) python/tools/golden.py

demo: ## the end-to-end demo on synthetic data
	$(GO) run ./cmd/dinoclip demo
