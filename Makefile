# dinoclip: build, test and benchmark. `make help` lists the targets.

GO      ?= go
PYTHON  ?= python3
BIN     ?= bin
# The commit a binary was built from, recorded by dinoclip bench (-dirty for
# uncommitted changes).
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS := -X github.com/dinoclip/dinoclip/bench.Commit=$(COMMIT)

.PHONY: help build test test-go test-python python-deps bench bench-compare bench-compare-gpu fuzz fuzz-short fuzz-run golden demo kernels check-kernels build-cuda gpu-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the CPU-only CLI into bin/dinoclip
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/dinoclip ./cmd/dinoclip

test: test-go test-python ## run every test (Go, then Python)

test-go: ## vet and test the Go module (CPU only)
	$(GO) vet ./...
	$(GO) test ./...

python-deps: ## install the pinned Python test dependencies and the dinoclip package
	$(PYTHON) -m pip install --quiet --root-user-action=ignore -r python/requirements-test.txt
	$(PYTHON) -m pip install --quiet --root-user-action=ignore --no-deps -e python

test-python: python-deps ## run the Python tests: the package (it builds the Go CLI it calls) and bench/
	$(PYTHON) -m pytest -q python/tests bench/test_compare.py

bench: ## CPU benchmarks of the engine (training step, passes, each GEMM beside gonum) and retrieval
	$(GO) test -run '^$$' -bench . -benchtime 3x ./nn ./internal/sgemm ./retrieval

bench-compare: ## dinoclip beside PyTorch and faiss on this machine's CPU (about 4 min); writes bench-out/cpu
	$(PYTHON) -m pip install --quiet --root-user-action=ignore -r bench/requirements.txt
	$(PYTHON) bench/compare.py --device cpu --out bench-out/cpu

bench-compare-gpu: ## on a GPU host, with bin/dinoclip-cuda from make build-cuda
	$(PYTHON) bench/compare.py --device cuda --ours-bin $(BIN)/dinoclip-cuda --timeout 300 --out bench-out/cuda

# Every fuzz target, as package:target. Minimisation of each new input is
# capped at FUZZ_MINIMIZE executions: Go's default, a minute per input,
# spends most of a short run shrinking the model files FuzzReadModel grows
# from instead of fuzzing.
FUZZ_TARGETS  := npy:FuzzParse safetensors:FuzzRead checkpoint:FuzzReadModel
FUZZ_MINIMIZE ?= 500x

fuzz: ## run each fuzz target for 30 s
	@$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=30s

fuzz-short: ## run each fuzz target for 10 s (CI)
	@$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=10s

fuzz-run:
	@found=$$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed -E 's|^\./(.*)/[^/]*:func |\1:|' | sort); \
	listed=$$(printf '%s\n' $(FUZZ_TARGETS) | sort); \
	if [ "$$found" != "$$listed" ]; then echo "FUZZ_TARGETS ($$listed) is not the fuzz targets in the code ($$found)"; exit 1; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
		set -x; $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZ_TIME) -fuzzminimizetime $(FUZZ_MINIMIZE) ./$${t%%:*}; { set +x; } 2>/dev/null; \
	done

golden: ## regenerate the PyTorch golden runs (needs torch; see python/tools/README.md)
	$(PYTHON) python/tools/golden.py

demo: ## the end-to-end demo on synthetic data
	$(GO) run ./cmd/dinoclip demo

# --- GPU engine (package cuda, build tag cuda) -------------------------------
#
# kernels/*.cu are compiled by nvcc 11.8 (Debian's nvidia-cuda-toolkit) to one
# PTX each for compute_80, committed in kernels/ptx and embedded by package
# kernels; the driver JIT-compiles it for the GPU at hand (sm_80, sm_90, ...).
# No --use_fast_math: IEEE division and square root, no flush to zero (the
# flags below spell out nvcc's defaults). gorgonia.org/cu links libcuda.so:
# the toolkit's stub in CUDA_LIBDIR is enough to link; the binary then needs a
# host with the NVIDIA driver (and a GPU) to start.

NVCC        ?= nvcc
PTXAS       ?= ptxas
NVCCFLAGS   ?= -ptx -O3 -arch=compute_80 --fmad=true --prec-div=true --prec-sqrt=true --ftz=false
CUDA_LIBDIR ?= /usr/lib/x86_64-linux-gnu/stubs
# cgo's compilers: gcc/g++, else the g++-11 that nvidia-cuda-toolkit pulls in.
CUDA_CC     ?= $(shell command -v gcc >/dev/null 2>&1 && echo gcc || echo gcc-11)
CUDA_CXX    ?= $(shell command -v g++ >/dev/null 2>&1 && echo g++ || echo g++-11)
EMU_ENV     ?= CC=$(CUDA_CC) CXX=$(CUDA_CXX)
CUDA_ENV    ?= $(EMU_ENV) CGO_LDFLAGS="-L$(CUDA_LIBDIR)"
KERNEL_SRC  := $(wildcard kernels/*.cu)
KERNEL_PTX  := $(patsubst kernels/%.cu,kernels/ptx/%.ptx,$(KERNEL_SRC))

kernels: $(KERNEL_PTX) ## compile kernels/*.cu to kernels/ptx/*.ptx (needs nvcc 11.8)

kernels/ptx/%.ptx: kernels/%.cu kernels/common.cuh kernels/tensorcore.cuh
	@mkdir -p kernels/ptx
	$(NVCC) $(NVCCFLAGS) -o $@ $<

# check-kernels also runs package cuda's tests in host emulation (tags
# cuda,cudaemu: the kernels compiled as C++, no GPU, no gorgonia.org/cu), the
# per-kernel ones again under AddressSanitizer; about 2 minutes on 2 cores.
# ./cuda/... includes cuda/driver/libcuda, whose tests build a fake libcuda
# with the C compiler and check what the driver calls receive (run again
# under AddressSanitizer).
check-kernels: ## PTX up to date, no register spills on sm_90, the cuda build vetted, kernels tested in host emulation
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; fail=0; \
	for src in $(KERNEL_SRC); do \
		name=$$(basename $$src .cu); \
		$(NVCC) $(NVCCFLAGS) -o $$tmp/$$name.ptx $$src; \
		if ! cmp -s $$tmp/$$name.ptx kernels/ptx/$$name.ptx; then \
			echo "kernels/ptx/$$name.ptx is not what kernels/$$name.cu compiles to: run make kernels"; fail=1; fi; \
	done; \
	for ptx in kernels/ptx/*.ptx; do \
		name=$$(basename $$ptx .ptx); \
		if [ ! -f kernels/$$name.cu ]; then echo "$$ptx has no source kernels/$$name.cu"; fail=1; fi; \
		$(PTXAS) -arch=sm_90 -v $$ptx -o /dev/null > $$tmp/ptxas.log 2>&1 || { cat $$tmp/ptxas.log; fail=1; continue; }; \
		awk '/Compiling entry function/ { fn = substr($$7, 2, length($$7) - 2) } \
			/spill stores/ { st = $$5; ld = $$9; if (st != 0 || ld != 0) { print "SPILL: " fn ": " $$0; bad = 1 } } \
			/Used [0-9]+ registers/ { sub(/.*Used /, ""); printf "  sm_90 %-22s %s\n", fn, $$0 } \
			END { exit bad }' $$tmp/ptxas.log || fail=1; \
	done; \
	exit $$fail
	$(CUDA_ENV) $(GO) build -tags cuda ./...
	$(CUDA_ENV) $(GO) vet -tags cuda ./...
	$(CUDA_ENV) $(GO) test -tags cuda -c -o /dev/null ./cuda/
	$(CUDA_ENV) $(GO) test -tags cuda -c -o /dev/null ./cuda/driver/
	$(EMU_ENV) $(GO) vet -tags cuda,cudaemu ./cuda/...
	$(EMU_ENV) $(GO) test -tags cuda,cudaemu ./cuda/...
	$(EMU_ENV) CGO_CXXFLAGS="-fsanitize=address -O1" $(GO) test -asan -tags cuda,cudaemu \
		-run 'TestGemm|TestColumnSums|TestLayerNorm|TestGELU|TestUnitNormMSE|TestAdamW|TestTopK|TestCosineTopK|TestNormalizeRows|TestGatherRows|TestResident|TestEngineStateFits' ./cuda/
	$(EMU_ENV) CGO_CXXFLAGS="-fsanitize=address -O1" $(GO) test -asan -tags cuda,cudaemu ./cuda/driver/
	$(EMU_ENV) $(GO) test -asan -tags cuda ./cuda/driver/libcuda/

build-cuda: ## build bin/dinoclip-cuda, bin/cuda.test and bin/driver.test for a GPU host (see scripts/gpu-check.sh)
	@mkdir -p $(BIN)
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '$(LDFLAGS)' -o $(BIN)/dinoclip-cuda ./cmd/dinoclip
	$(CUDA_ENV) $(GO) test -c -tags cuda -o $(BIN)/cuda.test ./cuda
	$(CUDA_ENV) $(GO) test -c -tags cuda -o $(BIN)/driver.test ./cuda/driver
	@{ echo "commit=$$(git rev-parse HEAD 2>/dev/null || echo unknown)$$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"; \
	   echo "built=$$(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "go=$$($(GO) env GOVERSION)"; \
	   echo "nvcc=$$($(NVCC) --version 2>/dev/null | grep -o 'release [0-9.]*' || echo unknown)"; } > $(BIN)/BUILD-INFO
	@cat $(BIN)/BUILD-INFO

gpu-check: build-cuda ## on a GPU host: run the GPU tests, a short training run and an eval (scripts/gpu-check.sh)
	scripts/gpu-check.sh $(GPU_CHECK_OUT)
