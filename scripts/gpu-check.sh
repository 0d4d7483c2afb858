#!/usr/bin/env bash
# gpu-check.sh: check the GPU engine on a GPU host, with binaries built on
# another machine by `make build-cuda` (no Go needed here):
#
#   bin/cuda.test       the cuda package's tests (engine suite against the
#                       float64 CPU oracle, per-kernel tests, top-k)
#   bin/dinoclip-cuda   the CLI built with -tags cuda
#   bin/BUILD-INFO      the commit and date of the build
#
# Usage: scripts/gpu-check.sh [--allow-skip PART[,PART...]] [OUTDIR]
#        (OUTDIR: default $OUT, else ./gpu-check-out)
#
# Parts, each PASS, FAIL or SKIP in OUTDIR/summary.txt (also printed):
#   device    nvidia-smi
#   tensorcore  bin/driver.test -test.run 'TestTC', then the mma.sync
#             GEMMs ('TestGemmBF16.*Mma') and the wgmma ones (the other
#             'TestGemmBF16' tests), each run -test.failfast: mma.sync,
#             ldmatrix, cp.async, wgmma, TMA, clusters and the reference
#             GEMMs, against the layouts and float64 reference the emulator
#             is tested with; the wgmma, TMA and cluster ones need the
#             module built for sm_90a (the compute_80 PTX traps: they skip
#             there)
#   driver    bin/driver.test's other tests: the driver calls gorgonia/cu
#             lacks, on the real driver (see the part below)
#   tests     bin/cuda.test -test.v
#   ptx       which compiled kernels the tests loaded (the log line "cuda:
#             kernels loaded"): sm_90a cubins on a compute capability 9.0 GPU
#             with a CUDA 13.0+ driver, else the portable PTX, with the
#             reason (and, on a compute capability 9.0 GPU, a NOTE that the
#             Hopper kernels did not run); after the cubins, the tests again on the PTX
#             (DINOCLIP_CUDA_KERNELS=ptx, -test.failfast), so that both
#             forms are checked
#   data      dinoclip synth --float16: 4096 training rows and 500 images x 5
#             captions in the default model's widths; float16 shards, so the
#             GPU's resident copy (float16) and the CPU's host batches hold
#             the same values
#   train     2 epochs of the default model on the GPU in bf16 mixed
#             precision (--precision bf16), evaluated each epoch, with the
#             training data resident on the GPU (the log must say so)
#   parity    the same first epoch (4 steps, batch 1024) on the CPU engine
#             (host batches) and on the GPU in fp32, its parity mode
#             (resident data): per-step losses
#             must agree to PARITY_RTOL (below); and on the GPU with
#             --resident off: its losses must equal the resident run's
#             exactly (the gather converts float16 exactly)
#   eval      dinoclip eval of the GPU-trained model on the GPU (projected
#             in fp32 and ranked there) and on the CPU: the recall tables are
#             compared
#
# The check passes (exit status 0, "overall: PASS") only when every part ran
# and passed. A part that could not run is SKIP: train, parity and eval
# without data, eval without a trained model, parity and eval without
# python3 to compare the runs. A SKIP fails the check unless --allow-skip
# names that part (on a host without python3: --allow-skip parity,eval);
# the summary then says which parts were skipped.
#
# Environment: BIN (bin), DINOCLIP (the CLI), CUDA_TEST (the test binary),
# NVIDIA_SMI (nvidia-smi), PYTHON (python3), GIT_COMMIT (else BIN/BUILD-INFO),
# GPU_CHECK_TRAIN_FLAGS (extra flags of every train run, e.g. a smaller
# --hidden-dim; scripts/gpu_check_test.go uses it to run the script against
# the CPU build in seconds). Every command runs under a time limit; the
# whole has 110 s in device-run.sh (GPU_CHECK_LIMIT). Its first version took
# seconds a part on an H200 (bench/results/2026-11-28-h200-gpu-check.txt);
# today's, with the tensor-core tests and the PTX rerun, has not run on a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
# The checks give the verdict: the engines' own checks judge strictly here
# (DINOCLIP_CUDA_CHECK=warn would run what failed them).
unset DINOCLIP_CUDA_CHECK

# PARITY_RTOL bounds the relative difference of each of the first epoch's
# per-step losses between the CPU engine and the GPU. Both compute in float32
# from the same float16 data and initial weights and differ only in summation
# order (GEMM tiling, reductions), which moves a loss by a few float32 ulps
# (2^-23 = 1.2e-7 relative); an H200 measured at most 6e-9 over the 4 steps.
# 1e-6 (about 8 ulps, 170x the measurement) leaves room for another GPU's
# kernels and rounding, while a real error (a wrong term, a dropped row, a
# wrong learning rate) moves the second step's loss by far more than that.
PARITY_RTOL=1e-6

usage() { echo "usage: scripts/gpu-check.sh [--allow-skip PART[,PART...]] [OUTDIR]" >&2; exit 2; }
PARTS="device tensorcore driver tests ptx data train parity eval"
allowed=""
outarg=""
while [ $# -gt 0 ]; do
	case $1 in
	--allow-skip) [ $# -ge 2 ] || usage; allowed="$allowed ${2//,/ }"; shift 2 ;;
	--allow-skip=*) allowed="$allowed $(echo "${1#*=}" | tr , ' ')"; shift ;;
	-h | --help) usage ;;
	-*) echo "gpu-check.sh: unknown flag $1" >&2; usage ;;
	*) [ -z "$outarg" ] || usage; outarg=$1; shift ;;
	esac
done
for p in $allowed; do
	case " $PARTS " in *" $p "*) ;; *) echo "gpu-check.sh: --allow-skip $p: no such part (parts: $PARTS)" >&2; exit 2 ;; esac
done

OUTDIR=${outarg:-${OUT:-./gpu-check-out}}
BIN=${BIN:-bin}
CLI=${DINOCLIP:-$BIN/dinoclip-cuda}
TEST=${CUDA_TEST:-$BIN/cuda.test}
SMI=${NVIDIA_SMI:-nvidia-smi}
PY=${PYTHON:-python3}
read -r -a TRAIN_FLAGS <<<"${GPU_CHECK_TRAIN_FLAGS:-}"
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
passed="" failed="" skipped=""

say() { echo "$*" | tee -a "$SUMMARY"; }
result() { # NAME STATUS DETAIL
	say "$(printf '%-8s %-4s %s' "$1" "$2" "$3")"
	case $2 in
	PASS) passed="$passed $1" ;;
	FAIL) failed="$failed $1" ;;
	SKIP) skipped="$skipped $1" ;;
	esac
	return 0
}
# finish: the overall verdict. Every part must have passed, or been skipped
# with --allow-skip naming it.
finish() {
	local p bad_skips="" ok_skips="" missing=""
	for p in $skipped; do
		case " $allowed " in *" $p "*) ok_skips="$ok_skips $p" ;; *) bad_skips="$bad_skips $p" ;; esac
	done
	for p in $PARTS; do
		case " $passed $failed $skipped " in *" $p "*) ;; *) missing="$missing $p" ;; esac
	done
	if [ -z "$failed$bad_skips$missing" ]; then
		if [ -n "$ok_skips" ]; then
			say "overall: PASS, except the parts skipped with --allow-skip:$ok_skips"
		else
			say "overall: PASS (every part ran and passed)"
		fi
		exit 0
	fi
	local why=""
	[ -n "$failed" ] && why="$why; failed:$failed"
	[ -n "$bad_skips" ] && why="$why; skipped:$bad_skips (a skipped part fails the check unless --allow-skip names it)"
	[ -n "$missing" ] && why="$why; not run:$missing"
	say "overall: FAIL (${why#; })"
	exit 1
}
# run LOG LIMIT CMD...: CMD with a time limit, output appended to LOG and
# shown; returns CMD's status. --foreground keeps CMD in this script's
# process group, so that whatever kills the script at its own limit
# (device-run.sh) kills CMD too: without it timeout starts a group of its
# own, and a test binary would run on, holding the GPU through the bench.
run() {
	local log=$1 limit=$2
	shift 2
	echo "+ $*" | tee -a "$log"
	timeout --foreground --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
	return "${PIPESTATUS[0]}"
}

commit=${GIT_COMMIT:-}
if [ -z "$commit" ] && [ -f "$BIN/BUILD-INFO" ]; then
	commit=$(sed -n 's/^commit=//p' "$BIN/BUILD-INFO")
fi
say "dinoclip GPU check"
say "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "host:    $(hostname)"
say "commit:  ${commit:-unknown}"
[ -f "$BIN/BUILD-INFO" ] && say "build:   $(grep -v '^commit=' "$BIN/BUILD-INFO" | tr '\n' ' ')"
[ -n "$allowed" ] && say "allowed to skip:$allowed"

# --- device
log=$OUTDIR/nvidia-smi.txt
: >"$log"
if run "$log" 30 "$SMI"; then
	gpu=$("$SMI" --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
	say "device:  ${gpu:-unknown}"
	result device PASS "${gpu:-unknown GPU}"
else
	result device FAIL "$SMI failed: no GPU or driver?"
fi
for f in "$CLI" "$TEST"; do
	if [ ! -x "$f" ]; then
		result build FAIL "$f missing: run make build-cuda on a machine with Go and the CUDA toolkit"
		finish
	fi
done

DRIVER_TEST=${DRIVER_TEST:-$BIN/driver.test}

# --- tensorcore: first, as what every bf16 part rests on. The primitives
# (TestTC) all run, and then the GEMMs whatever the primitives did: the
# mma.sync ones (every GPU's) and the wgmma ones (Hopper's) in runs of
# their own, so that a failure of one kind does not hide the other. Each
# GEMM run stops at its first failure (-test.failfast): a pipeline that
# hangs traps after 10 s in each test (MBAR_WAIT_LIMIT_NS), which would
# spend the parts after it. Each run has 45 s: healthy, they take
# seconds, and the whole check has 110 s in device-run.sh (three hung
# runs would spend them all: device-run.sh then says the check was killed
# at its limit, and goes on to the bench).
log=$OUTDIR/tensorcore-test.log
: >"$log"
t0=$SECONDS
tc_ok() { # both runs, in order, each whatever the other did
	local rc=0
	run "$log" 45 "./$(basename "$DRIVER_TEST")" -test.run 'TestTC' -test.v -test.timeout 40s || rc=1
	run "$log" 45 "./$(basename "$DRIVER_TEST")" -test.run 'TestGemmBF16.*Mma' -test.failfast -test.v -test.timeout 40s || rc=1
	run "$log" 45 "./$(basename "$DRIVER_TEST")" -test.run 'TestGemmBF16' -test.skip 'Mma' -test.failfast -test.v -test.timeout 40s || rc=1
	return $rc
}
if [ ! -x "$DRIVER_TEST" ]; then
	result tensorcore FAIL "$DRIVER_TEST missing: run make build-cuda"
elif (cd "$(dirname "$DRIVER_TEST")" && tc_ok); then
	if grep -q '^--- PASS' "$log"; then
		result tensorcore PASS "$(grep -c '^--- PASS' "$log") tests, $(grep -c '^--- SKIP' "$log") skipped, $((SECONDS - t0)) s"
	else
		result tensorcore SKIP "$(grep -m1 -A1 '^--- SKIP' "$log" | tail -1 | tr -s ' ')"
	fi
else
	result tensorcore FAIL "$(grep -E '^\s*--- FAIL' "$log" | head -5 | tr -s ' \n' ' ') (see tensorcore-test.log)"
fi

# --- driver (begin) ------------------------------------------------------
# The driver calls gorgonia/cu lacks (package cuda/driver/libcuda, through
# the cu driver's Extended methods) on the real driver: bin/driver.test
# (make build-cuda) launches gelu through cuLaunchKernelEx and compares it
# with cuLaunchKernel (plain, above 48 KiB of dynamic shared memory after
# cuFuncSetAttribute, in clusters of 2 on compute capability 9.0), encodes
# tensor maps for a device buffer (9.0), copies into pinned memory, and
# replays and updates a captured graph of two launches.
log=$OUTDIR/driver-test.log
: >"$log"
t0=$SECONDS
if [ ! -x "$DRIVER_TEST" ]; then
	result driver FAIL "$DRIVER_TEST missing: run make build-cuda"
elif (cd "$(dirname "$DRIVER_TEST")" && run "$log" 120 "./$(basename "$DRIVER_TEST")" -test.skip 'TestTC|TestGemmBF16' -test.v -test.timeout 100s); then
	result driver PASS "$(grep -c '^--- PASS' "$log") tests ($(grep -c '^--- SKIP' "$log") skipped), $((SECONDS - t0)) s"
else
	result driver FAIL "$(grep -E '^\s*--- FAIL' "$log" | head -5 | tr -s ' \n' ' ') (see driver-test.log)"
fi
# --- driver (end) --------------------------------------------------------

# --- tests
log=$OUTDIR/cuda-test.log
: >"$log"
t0=$SECONDS
if (cd "$(dirname "$TEST")" && run "$log" 300 "./$(basename "$TEST")" -test.v -test.timeout 280s); then
	result tests PASS "$(grep -c '^--- PASS' "$log") tests, $((SECONDS - t0)) s"
else
	result tests FAIL "$(grep -E '^\s*--- FAIL' "$log" | head -5 | tr -s ' \n' ' ') (see cuda-test.log)"
fi
grep -E 'worst relative difference|largest difference|tests on' "$log" | sed 's/^ */         /' | tee -a "$SUMMARY"

# --- ptx
loaded=$(grep -m1 -o 'kernels="[^"]*"' "$log" | cut -d'"' -f2)
fallback=$(grep -m1 -o 'fallback="[^"]*"' "$log" | cut -d'"' -f2)
say "kernels: ${loaded:-unknown (no \"cuda: kernels loaded\" line)}${fallback:+ (fallback: $fallback)}"
log=$OUTDIR/cuda-test-ptx.log
: >"$log"
if [ "$loaded" = "sm_90a cubins" ]; then
	t0=$SECONDS
	if (cd "$(dirname "$TEST")" && run "$log" 300 env DINOCLIP_CUDA_KERNELS=ptx "./$(basename "$TEST")" -test.failfast -test.timeout 280s) &&
		grep -q 'kernels="portable PTX"' "$log"; then
		result ptx PASS "the tests on the portable PTX too, $((SECONDS - t0)) s"
	else
		result ptx FAIL "the tests on the portable PTX (DINOCLIP_CUDA_KERNELS=ptx): see cuda-test-ptx.log"
	fi
elif [ "$loaded" = "portable PTX" ]; then
	result ptx PASS "the tests above ran on the portable PTX (no sm_90a cubins for this GPU or driver)"
	# (On a Hopper GPU that is the driver's refusal, most likely one older
	# than the cubins' CUDA 13.0: the lease measures nothing of the
	# Hopper kernels, which the reader of the summary must see at once.)
	if [ "$("$SMI" --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')" = 9.0 ]; then
		say "NOTE:    a compute capability 9.0 GPU, but the sm_90a cubins did not load${fallback:+ ($fallback)}: the wgmma, TMA and cluster kernels did not run, and a bench here measures the mma.sync GEMMs"
	fi
else
	result ptx FAIL "the tests named no kernels they loaded (no \"cuda: kernels loaded\" line in cuda-test.log)"
fi

# python3 compares the numbers of the parity and eval parts.
py_ok=0
if pyv=$("$PY" -c 'import json, math, sys; print(sys.version.split()[0])' 2>/dev/null); then
	py_ok=1
	say "python:  $PY $pyv"
else
	say "python:  no $PY: the parity and eval parts will run but cannot compare their runs"
fi

# --- data
log=$OUTDIR/train.log
: >"$log"
data_ok=0
if run "$log" 120 "$CLI" synth --out "$WORK/synth" --rows 4096 --eval-images 500 --float16; then
	# Found rather than assumed: the shard directory and the evaluation set.
	shard=$(find "$WORK/synth" -name '*.dino.npy' ! -name 'images.dino.npy' | sort | head -1)
	evalset=$(find "$WORK/synth" -name 'captions.image.npy' | sort | head -1)
	if [ -n "$shard" ] && [ -n "$evalset" ]; then
		DATA=$(dirname "$shard")
		EVAL=$(dirname "$evalset")
		data_ok=1
		result data PASS "dinoclip synth: 4096 float16 training rows, 500 images x 5 captions"
	else
		result data FAIL "dinoclip synth succeeded but wrote no training shard or evaluation set (see train.log)"
	fi
else
	result data FAIL "dinoclip synth failed (see train.log)"
fi
if [ $data_ok = 0 ]; then
	for p in train parity eval; do result $p SKIP "no data"; done
	finish
fi

# fallbacks LOG: what a run in LOG fell back from where the first-use
# checks of the GPU's kernels failed (cuda/gemm_check.go, search_check.go):
# it ran right, on other kernels, and the line says so.
fallbacks() {
	grep -q "wgmma GEMMs failed their check" "$1" && printf '; but the wgmma GEMMs FAILED their check: the bf16 GEMMs ran on mma.sync'
	grep -q "GPU search failed its check" "$1" && printf '; but the GPU search FAILED its check: the evaluations ranked on the CPU'
	true
}

# --- train: the default model, 2 epochs of 4 steps, evaluated after each,
# with the training data resident on the GPU (--resident auto, the default)
t0=$SECONDS
train_ok=0
if run "$log" 240 "$CLI" train --data "$DATA" --eval "$EVAL" --out "$WORK/run-gpu" --epochs 2 --batch 1024 \
	--log-every 1 --device cuda --precision bf16 "${TRAIN_FLAGS[@]}"; then
	if ! grep -q '"precision": *"bf16"' "$WORK/run-gpu/run.json" 2>/dev/null; then
		result train FAIL "trained, but run.json does not record precision bf16 (see train.log)"
	elif grep -q 'training data resident on the device' "$log"; then
		train_ok=1
		result train PASS "8 steps of 1024 rows in bf16, data resident on the GPU, $((SECONDS - t0)) s$(fallbacks "$log")"
	else
		result train FAIL "trained, but the training data was not resident on the GPU (see train.log)"
	fi
else
	result train FAIL "see train.log"
fi

# --- parity: the first epoch on the CPU engine and on the GPU
log=$OUTDIR/parity.log
: >"$log"
if ! { run "$log" 240 "$CLI" train --data "$DATA" --out "$WORK/run-cpu1" --epochs 1 --batch 1024 --log-every 1 --device cpu "${TRAIN_FLAGS[@]}" &&
	run "$log" 120 "$CLI" train --data "$DATA" --out "$WORK/run-gpu1" --epochs 1 --batch 1024 --log-every 1 --device cuda --precision fp32 "${TRAIN_FLAGS[@]}" &&
	run "$log" 120 "$CLI" train --data "$DATA" --out "$WORK/run-gpu1-host" --epochs 1 --batch 1024 --log-every 1 --device cuda --precision fp32 --resident off "${TRAIN_FLAGS[@]}"; }; then
	result parity FAIL "a run failed: see parity.log"
elif [ $py_ok = 0 ]; then
	result parity SKIP "the three runs finished; no $PY to compare their losses"
elif run "$log" 30 "$PY" - "$PARITY_RTOL" "$WORK/run-cpu1/metrics.jsonl" "$WORK/run-gpu1/metrics.jsonl" "$WORK/run-gpu1-host/metrics.jsonl" <<'EOF'; then
import json, math, sys
rtol = float(sys.argv[1])
def losses(path):
    return [r["loss"] for r in map(json.loads, open(path)) if r.get("type") == "train"]
cpu, gpu, host = (losses(p) for p in sys.argv[2:5])
if not cpu or len(cpu) != len(gpu) or len(gpu) != len(host):
    sys.exit(f"{len(cpu)} CPU, {len(gpu)} GPU and {len(host)} GPU host-batch training records")
# The GPU is deterministic and both GPU runs see the same float16 values,
# resident or uploaded from the host: the losses must be the same bits.
if gpu != host:
    sys.exit(f"GPU losses with resident data {gpu} differ from those with host batches {host}")
worst = 0.0
for i, (c, g) in enumerate(zip(cpu, gpu), 1):
    d = abs(g - c) / abs(c) if c != 0 else abs(g)
    worst = max(worst, d) if math.isfinite(d) else math.inf
    print(f"step {i}: CPU loss {c:.9g}, GPU loss {g:.9g}, relative difference {d:.3g}")
verdict = "within" if worst <= rtol else "BEYOND"
print(f"GPU resident = host batches exactly; worst CPU/GPU relative loss difference {worst:.3g}, {verdict} {rtol:g}")
sys.exit(0 if worst <= rtol else 1)
EOF
	result parity PASS "$(tail -1 "$log")"
else
	result parity FAIL "$(tail -1 "$log")"
fi

# --- eval: the GPU-trained model, projected and ranked on the GPU and on the CPU
log=$OUTDIR/eval.log
: >"$log"
if [ $train_ok = 0 ]; then
	result eval SKIP "no GPU-trained model to evaluate (the train part failed)"
elif ! { run "$log" 120 "$CLI" eval --model "$WORK/run-gpu" --eval "$EVAL" --device cuda &&
	timeout --foreground --kill-after=10 120 "$CLI" eval --model "$WORK/run-gpu" --eval "$EVAL" --device cuda --precision fp32 --json >"$WORK/eval-gpu.json" 2>>"$log" &&
	timeout --foreground --kill-after=10 120 "$CLI" eval --model "$WORK/run-gpu" --eval "$EVAL" --device cpu --json >"$WORK/eval-cpu.json" 2>>"$log"; }; then
	result eval FAIL "see eval.log"
elif [ $py_ok = 0 ]; then
	result eval SKIP "ran on the GPU and the CPU; no $PY to compare the recall tables"
elif run "$log" 30 "$PY" - "$WORK/eval-cpu.json" "$WORK/eval-gpu.json" <<'EOF'; then
import json, sys
cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
rc = [r["projected"] for r in cpu["reports"]]
rg = [r["projected"] for r in gpu["reports"]]
print("CPU projected recall:", json.dumps(rc))
print("GPU projected recall:", json.dumps(rg))
def values(results):
    return [v for r in results for rk in r["recall"] for k, v in sorted(rk.items()) if k != "k"]
vc, vg = values(rc), values(rg)
if len(vc) != len(vg) or not vc:
    sys.exit("the two reports have different shapes")
worst = max(abs(a - b) for a, b in zip(vc, vg))
# The projections differ in the last bits (another summation order), so a
# near-tied pair of scores may swap: a few hits out of thousands at most.
print(f"recall: largest CPU/GPU difference {worst:.3g} points (at most 0.5)")
sys.exit(0 if worst <= 0.5 else 1)
EOF
	result eval PASS "$(tail -1 "$log")"
else
	result eval FAIL "$(tail -1 "$log")"
fi

finish
