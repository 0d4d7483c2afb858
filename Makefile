# dinoclip: build, test and benchmark. `make help` lists the targets.

GO      ?= go
PYTHON  ?= python3
# The project's Python environment: the pinned test set and the dinoclip
# package (editable), never the system Python's site-packages.
VENV    ?= .venv
VENV_PY := $(VENV)/bin/python
BIN     ?= bin
# The commit a binary was built from, printed by dinoclip --version and
# recorded by dinoclip bench (-dirty for uncommitted changes).
COMMIT  := $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
LDFLAGS := -X github.com/dinoclip/dinoclip/internal/buildinfo.Commit=$(COMMIT)

.PHONY: help build test test-go test-python venv bench bench-compare bench-compare-gpu fuzz fuzz-short fuzz-run golden demo experiments toolchain kernels kernel-budgets generate check-generated check-kernels build-cuda gpu-check

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build the CPU-only CLI into bin/dinoclip
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/dinoclip ./cmd/dinoclip

test: test-go test-python ## run every test (Go, then Python)

test-go: ## vet and test the Go module (CPU only), vet it for Windows and macOS/arm64, and test the CPU engine's packages again without assembly (purego)
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	$(GO) test ./...
	$(GO) vet -tags purego ./internal/sgemm ./internal/vec32 ./nn
	$(GO) test -tags purego -short ./internal/sgemm ./internal/vec32 ./nn ./train

venv: $(VENV)/.installed ## create .venv with the pinned Python test set and the dinoclip package (once)

# A stamp file: pip runs again only when the pinned requirements change, not on
# every make test (torch alone is a few GB).
$(VENV)/.installed: python/requirements-test.txt python/pyproject.toml
	test -x $(VENV_PY) || $(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet -r python/requirements-test.txt
	$(VENV_PY) -m pip install --quiet --no-deps -e python
	touch $@

test-python: venv ## run the Python tests in .venv: the package (it builds the Go CLI it calls) and bench/
	$(VENV_PY) -m pytest -q python/tests bench/test_compare.py

bench: ## CPU benchmarks of the engine (training step, passes, each GEMM beside gonum) and retrieval
	$(GO) test -run '^$$' -bench . -benchtime 3x ./nn ./internal/sgemm ./retrieval

# Extra arguments for compare.py, e.g. BENCH_COMPARE_ARGS='--modes fp32' to skip PyTorch's bf16
# autocast (minutes a step on CPUs without native bf16).
BENCH_COMPARE_ARGS ?=

bench-compare: venv ## dinoclip beside PyTorch and faiss on this machine's CPU (several minutes); writes bench-out/cpu
	$(VENV_PY) -m pip install --quiet -r bench/requirements.txt
	$(VENV_PY) bench/compare.py --device cpu --out bench-out/cpu $(BENCH_COMPARE_ARGS)

bench-compare-gpu: ## on a GPU host, with bin/dinoclip-cuda from make build-cuda
	$(PYTHON) bench/compare.py --device cuda --ours-bin $(BIN)/dinoclip-cuda --timeout 300 --out bench-out/cuda

# Every fuzz target, as package:target. Minimisation of each new input is
# capped at FUZZ_MINIMIZE executions: Go's default, a minute per input,
# spends most of a short run shrinking the model files FuzzReadModel grows
# from instead of fuzzing.
FUZZ_TARGETS  := npy:FuzzParse safetensors:FuzzRead checkpoint:FuzzReadModel train:FuzzReadRunInfo train:FuzzTrainerState train:FuzzScanMetrics retrieval:FuzzOpenIndexManifest retrieval:FuzzReadImagesList cmd/dinoclip:FuzzReadConfig
FUZZ_MINIMIZE ?= 500x

# Fuzzing budgets are counts of executions, not durations: with a duration,
# Go 1.26's fuzzing coordinator can fail a target with a bare "context
# deadline exceeded" when the time runs out while a worker is mid-call on a
# loaded machine (golang/go#75804, fixed in Go 1.27), a failure with no
# failing input behind it. 20,000 executions take about a second here.
fuzz: ## run each fuzz target for 600,000 executions (30 s to 2 min each)
	@$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=600000x

fuzz-short: ## run each fuzz target for 200,000 executions (10 to 45 s each; CI)
	@$(MAKE) --no-print-directory fuzz-run FUZZ_TIME=200000x

fuzz-run:
	@found=$$(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' . | sed -E 's|^\./(.*)/[^/]*:func |\1:|' | sort); \
	listed=$$(printf '%s\n' $(FUZZ_TARGETS) | sort); \
	if [ "$$found" != "$$listed" ]; then echo "FUZZ_TARGETS ($$listed) is not the fuzz targets in the code ($$found)"; exit 1; fi
	@set -e; for t in $(FUZZ_TARGETS); do \
		set -x; $(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZ_TIME) -fuzzminimizetime $(FUZZ_MINIMIZE) ./$${t%%:*}; { set +x; } 2>/dev/null; \
	done

golden: venv ## regenerate the PyTorch golden runs in .venv (see python/tools/README.md)
	$(VENV_PY) python/tools/golden.py

demo: ## the end-to-end demo on synthetic data
	$(GO) run ./cmd/dinoclip demo

experiments: ## the recipe table of docs/EXPERIMENTS.md on synthetic data (CPU, a few minutes); writes work/experiments/table.md
	scripts/experiments.sh work/experiments

# --- GPU engine (package cuda, build tag cuda) -------------------------------
#
# kernels/*.cu are compiled by nvcc 11.8 (Debian's nvidia-cuda-toolkit) to one
# PTX each for compute_80, committed in kernels/ptx, and by nvcc 13.0 to one
# sm_90a cubin each, committed in kernels/sm90a; package kernels embeds both.
# The engine loads the cubins on a Hopper GPU (compute capability 9.0) whose
# driver takes them, else the PTX, which the driver JIT-compiles for the GPU
# at hand (sm_80, sm_90, ...) (docs/GPU-BUILD.md).
# No --use_fast_math: IEEE division and square root, no flush to zero (the
# flags below spell out nvcc's defaults). gorgonia.org/cu links libcuda.so:
# the toolkit's stub in CUDA_LIBDIR is enough to link; the binary then needs a
# host with the NVIDIA driver (and a GPU) to start.

NVCC        ?= nvcc
NVCCFLAGS   ?= -ptx -O3 -arch=compute_80 --fmad=true --prec-div=true --prec-sqrt=true --ftz=false
CUDA_LIBDIR ?= /usr/lib/x86_64-linux-gnu/stubs
# cgo's compilers: gcc/g++, else the g++-11 that nvidia-cuda-toolkit pulls in.
CUDA_CC     ?= $(shell command -v gcc >/dev/null 2>&1 && echo gcc || echo gcc-11)
CUDA_CXX    ?= $(shell command -v g++ >/dev/null 2>&1 && echo g++ || echo g++-11)
EMU_ENV     ?= CC=$(CUDA_CC) CXX=$(CUDA_CXX)
CUDA_ENV    ?= $(EMU_ENV) CGO_LDFLAGS="-L$(CUDA_LIBDIR)"

# The CUDA 13.0 toolkit from PyPI (kernels/cuda13-requirements.txt, every
# wheel pinned) in .cuda13/, for the sm_90a cubins (wgmma, TMA, clusters:
# Debian's 11.8 cannot target sm_90a) and the static checks (ptxas,
# cuobjdump, nvdisasm). The stamp installs it once, again when the pins
# change. Its host compiler is Debian 12's gcc 12; its own headers and
# libdevice are found through nvcc.profile beside nvcc. The cubins are the
# same bytes whatever the directory they are built from (no paths or times
# in them), the PTX too: make check-kernels rebuilds both and compares.
CUDA13_DIR    ?= .cuda13
CUDA13_HOME   := $(CUDA13_DIR)/site/nvidia/cu13
CUDA13_STAMP  := $(CUDA13_DIR)/installed
NVCC13        := $(CUDA13_HOME)/bin/nvcc
CUDA13_CCBIN  ?= gcc-12
# The gencode form rather than -arch=sm_90a: it compiles only the sm_90a
# pass (the shorthand may add a plain sm_90 pass that rejects wgmma).
NVCC13FLAGS   ?= -cubin -O3 -gencode=arch=compute_90a,code=sm_90a -ccbin $(CUDA13_CCBIN) \
	--fmad=true --prec-div=true --prec-sqrt=true --ftz=false

KERNEL_SRC   := $(wildcard kernels/*.cu)
KERNEL_HDR   := $(wildcard kernels/*.cuh)
KERNEL_PTX   := $(patsubst kernels/%.cu,kernels/ptx/%.ptx,$(KERNEL_SRC))
KERNEL_CUBIN := $(patsubst kernels/%.cu,kernels/sm90a/%.cubin,$(KERNEL_SRC))
KERNELCHECK  := $(GO) run ./kernels/internal/kernelcheck -dir kernels \
	-ptx-cmd '$(NVCC) $(NVCCFLAGS)' -cubin-cmd '$(NVCC13) $(NVCC13FLAGS)' \
	-ptxas $(CUDA13_HOME)/bin/ptxas -cuobjdump $(CUDA13_HOME)/bin/cuobjdump

toolchain: $(CUDA13_STAMP) ## install the pinned CUDA 13.0 toolkit from PyPI into .cuda13/ (once)

$(CUDA13_STAMP): kernels/cuda13-requirements.txt
	rm -rf $(CUDA13_DIR)
	$(PYTHON) -m pip install --quiet --root-user-action=ignore --disable-pip-version-check \
		--no-deps --target $(CUDA13_DIR)/site -r kernels/cuda13-requirements.txt
	$(NVCC13) --version | tail -1
	touch $@

kernels: $(KERNEL_PTX) $(KERNEL_CUBIN) ## compile kernels/*.cu to kernels/ptx/*.ptx (nvcc 11.8) and kernels/sm90a/*.cubin (nvcc 13.0)

kernels/ptx/%.ptx: kernels/%.cu $(KERNEL_HDR)
	@mkdir -p kernels/ptx
	$(NVCC) $(NVCCFLAGS) -o $@ $<

kernels/sm90a/%.cubin: kernels/%.cu $(KERNEL_HDR) | $(CUDA13_STAMP)
	@mkdir -p kernels/sm90a
	$(NVCC13) $(NVCC13FLAGS) -o $@ $<

kernel-budgets: $(CUDA13_STAMP) ## rewrite kernels/budgets.tsv from ptxas -v (registers, shared memory per kernel and target)
	$(KERNELCHECK) -write-budgets

# The launch layer (kernels/modules_gen.go, cuda/launch/launch_gen.go,
# cuda/emu/*_gen.cpp) is generated from the kernel signatures by
# kernels/internal/gen; check-generated fails when a committed file is not
# what the generator writes now. It checks vec32's GELU coefficients
# (internal/vec32/gelugen) the same way.
GENERATED := kernels/modules_gen.go cuda/launch/launch_gen.go 'cuda/emu/*_gen.cpp' cuda/emu/sources_gen.go internal/vec32/gelu_tables.go internal/vec32/gelu_tables_amd64.h

generate: ## regenerate the launch layer from the kernels' signatures (go generate)
	$(GO) generate ./...

check-generated: ## the generated launch layer is current (go generate leaves no diff)
	$(GO) generate ./...
	@git diff --exit-code --stat -- $(GENERATED) || { echo "generated files are stale: run make generate and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- $(GENERATED)); \
	if [ -n "$$untracked" ]; then echo "go generate wrote files that are not committed: $$untracked"; exit 1; fi

# check-kernels: the generated launch layer is current (check-generated);
# kernels/internal/kernelcheck rebuilds every artifact and
# compares, measures each kernel with ptxas -v against kernels/budgets.tsv
# (sm_80 and sm_90 from the PTX, sm_90a from the cubin; no spills), checks
# the sm_90a SASS for the opcodes kernels/sass.tsv requires, fails on
# ptxas's notes of a serialised wgmma pipeline (C7510, C7514) or an ignored
# setmaxnreg (C7508), and checks
# itself on doctored copies. It then runs package cuda's tests in host
# emulation (tags cuda,cudaemu: the kernels compiled as C++, no GPU, no
# gorgonia.org/cu), and again under AddressSanitizer with -short, which
# leaves out the tests too slow under the sanitizer: the whole-model
# training suites (TestEngine, TestEngineBF16), the engine check's
# broken-kernel and bf16 cases and the GEMM check's warnings, and the
# bf16 backward GEMMs of cuda/driver at K = 2048 and at the model's shapes
# (TestGemmBF16BwdLongK, TestGemmBF16BwdLongKMma, TestGemmBF16BwdModel),
# and with another seed of
# the emulator's schedule (DINOCLIP_EMU_SEED=2: other warps held back at
# other times, so a missing barrier has two chances to show). Between the two it runs
# the bf16 training quality check of cmd/dinoclip (synthetic runs in bf16
# on the emulated GPU against fp32 on the CPU, MSE and InfoNCE; about 3
# minutes each), the one
# test of that package that needs the emulator, and train's check that a
# run keeping its moving average on the emulated GPU writes the bits of
# one keeping it on the host (about a minute), and that a resident run there
# takes the pipelined, graph-captured step with the synchronous run's bits. ./cuda/... includes cuda/driver/libcuda, whose
# tests build a fake libcuda with the C compiler and check what the driver
# calls receive (run again under AddressSanitizer).
check-kernels: check-generated $(CUDA13_STAMP) ## launch layer and artifacts current, ptxas budgets and sm_90a SASS as tabled, the cuda build vetted, kernels tested in host emulation
	$(KERNELCHECK) -selftest
	$(CUDA_ENV) $(GO) build -tags cuda ./...
	$(CUDA_ENV) $(GO) vet -tags cuda ./...
	$(CUDA_ENV) $(GO) test -tags cuda -c -o /dev/null ./cuda/
	$(CUDA_ENV) $(GO) test -tags cuda -c -o /dev/null ./cuda/driver/
	$(EMU_ENV) $(GO) vet -tags cuda,cudaemu ./cuda/...
	$(EMU_ENV) $(GO) test -timeout 40m -tags cuda,cudaemu ./cuda/...
	$(EMU_ENV) $(GO) test -timeout 20m -tags cuda,cudaemu -run '^TestBF16TrainingQuality$$' ./cmd/dinoclip/
	$(EMU_ENV) $(GO) test -timeout 20m -tags cuda,cudaemu -run '^(TestEMAOnGPUEngineMatchesHost|TestPipelinedGPURunMatchesSynchronous)$$' ./train/
	$(EMU_ENV) DINOCLIP_EMU_SEED=2 CGO_CXXFLAGS="-fsanitize=address -O1" $(GO) test -asan -short -timeout 40m -tags cuda,cudaemu ./cuda/...

# The binaries travel to a GPU host under a size limit: -s -w leaves out
# the symbol table and DWARF (about 11 MB of 54), which no run there reads
# (Go's stack traces come from its own pclntab, which stays).
build-cuda: ## build bin/dinoclip-cuda, bin/cuda.test and bin/driver.test for a GPU host (see scripts/gpu-check.sh)
	@mkdir -p $(BIN)
	$(CUDA_ENV) $(GO) build -tags cuda -ldflags '$(LDFLAGS) -s -w' -o $(BIN)/dinoclip-cuda ./cmd/dinoclip
	$(CUDA_ENV) $(GO) test -c -tags cuda -ldflags '-s -w' -o $(BIN)/cuda.test ./cuda
	$(CUDA_ENV) $(GO) test -c -tags cuda -ldflags '-s -w' -o $(BIN)/driver.test ./cuda/driver
	@{ echo "commit=$(or $(COMMIT),unknown)"; \
	   echo "built=$$(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "go=$$($(GO) env GOVERSION)"; \
	   echo "nvcc=$$($(NVCC) --version 2>/dev/null | grep -o 'release [0-9.]*' || echo unknown)"; } > $(BIN)/BUILD-INFO
	@cat $(BIN)/BUILD-INFO

# gpu-check's output directory (default: $OUT, else ./gpu-check-out) and the script's flags, e.g.
# GPU_CHECK_FLAGS='--allow-skip parity,eval'.
GPU_CHECK_OUT ?=
GPU_CHECK_FLAGS ?=

gpu-check: build-cuda ## on a GPU host: run the GPU tests, a short training run and an eval (scripts/gpu-check.sh)
	scripts/gpu-check.sh $(GPU_CHECK_FLAGS) $(GPU_CHECK_OUT)
