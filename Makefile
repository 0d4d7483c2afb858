# dinoclip: build, test and benchmark. `make help` lists the targets.

GO      ?= go
PYTHON  ?= python3
BIN     ?= bin
# The commit a binary was built from, recorded by dinoclip bench (-dirty for
# uncommitted changes).
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS := -X github.com/dinoclip/dinoclip/bench.Commit=$(COMMIT)

.PHONY: help build test test-go test-python python-deps bench bench-compare bench-compare-gpu fuzz golden demo kernels generate check-generated check-kernels build-cuda gpu-check

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

bench: ## CPU benchmarks of the engine and retrieval
	$(GO) test -run '^$$' -bench . -benchtime 3x ./nn ./retrieval

bench-compare: ## dinoclip beside PyTorch and faiss on this machine's CPU (about 4 min); writes bench-out/cpu
	$(PYTHON) -m pip install --quiet --root-user-action=ignore -r bench/requirements.txt
	$(PYTHON) bench/compare.py --device cpu --out bench-out/cpu

bench-compare-gpu: ## on a GPU host, with bin/dinoclip-cuda from make build-cuda
	$(PYTHON) bench/compare.py --device cuda --ours-bin $(BIN)/dinoclip-cuda --timeout 300 --out bench-out/cuda

fuzz: ## run each fuzz target for 30 s
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./npy
	$(GO) test -run '^$$' -fuzz FuzzRead -fuzztime 30s ./safetensors
	$(GO) test -run '^$$' -fuzz FuzzReadModel -fuzztime 30s ./checkpoint

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

kernels/ptx/%.ptx: kernels/%.cu $(wildcard kernels/*.cuh)
	@mkdir -p kernels/ptx
	$(NVCC) $(NVCCFLAGS) -o $@ $<

# The launch layer (kernels/modules_gen.go, cuda/launch/launch_gen.go,
# cuda/emu/*_gen.cpp) is generated from the kernel signatures by
# kernels/internal/gen; check-generated fails when a committed file is not
# what the generator writes now.
GENERATED := kernels/modules_gen.go cuda/launch/launch_gen.go 'cuda/emu/*_gen.cpp'

generate: ## regenerate the launch layer from the kernels' signatures (go generate)
	$(GO) generate ./...

check-generated: ## the generated launch layer is current (go generate leaves no diff)
	$(GO) generate ./...
	@git diff --exit-code --stat -- $(GENERATED) || { echo "generated files are stale: run make generate and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- $(GENERATED)); \
	if [ -n "$$untracked" ]; then echo "go generate wrote files that are not committed: $$untracked"; exit 1; fi

# check-kernels also runs package cuda's tests in host emulation (tags
# cuda,cudaemu: the kernels compiled as C++, no GPU, no gorgonia.org/cu), and
# again under AddressSanitizer with -short, which leaves out only the
# whole-model training suite (TestEngine; too slow under the sanitizer).
check-kernels: check-generated ## launch layer current, PTX up to date, no register spills on sm_90, the cuda build vetted, kernels tested in host emulation
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
	$(EMU_ENV) $(GO) vet -tags cuda,cudaemu ./cuda/...
	$(EMU_ENV) $(GO) test -tags cuda,cudaemu ./cuda/...
	$(EMU_ENV) CGO_CXXFLAGS="-fsanitize=address -O1" $(GO) test -asan -short -timeout 30m -tags cuda,cudaemu ./cuda/...

build-cuda: ## build bin/dinoclip-cuda and bin/cuda.test for a GPU host (see scripts/gpu-check.sh)
	@mkdir -p $(BIN)
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '$(LDFLAGS)' -o $(BIN)/dinoclip-cuda ./cmd/dinoclip
	$(CUDA_ENV) $(GO) test -c -tags cuda -o $(BIN)/cuda.test ./cuda
	@{ echo "commit=$$(git rev-parse HEAD 2>/dev/null || echo unknown)$$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"; \
	   echo "built=$$(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "go=$$($(GO) env GOVERSION)"; \
	   echo "nvcc=$$($(NVCC) --version 2>/dev/null | grep -o 'release [0-9.]*' || echo unknown)"; } > $(BIN)/BUILD-INFO
	@cat $(BIN)/BUILD-INFO

gpu-check: build-cuda ## on a GPU host: run the GPU tests, a short training run and an eval (scripts/gpu-check.sh)
	scripts/gpu-check.sh $(GPU_CHECK_OUT)
