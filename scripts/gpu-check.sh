#!/usr/bin/env bash
# gpu-check.sh: check the GPU engine on a GPU host, with binaries built on
# another machine by `make build-cuda` (no Go needed here):
#
#   bin/cuda.test       the cuda package's tests (engine suite against the
#                       float64 CPU oracle, per-kernel tests, top-k)
#   bin/dinoclip-cuda   the CLI built with -tags cuda
#   bin/BUILD-INFO      the commit and date of the build
#
# Usage: scripts/gpu-check.sh [OUTDIR]   (default $OUT, else ./gpu-check-out)
#
# Parts, each PASS, FAIL or SKIP in OUTDIR/summary.txt (also printed):
#   device    nvidia-smi
#   tests     bin/cuda.test -test.v
#   tensorcore  bin/driver.test -test.run 'TestTC|TestGemmBF16' -test.v:
#             mma.sync, ldmatrix, cp.async, wgmma, TMA, clusters and the
#             reference GEMMs, against the layouts and float64 reference
#             the emulator is tested with; the wgmma, TMA and cluster ones
#             need the module built for sm_90a (the compute_80 PTX traps)
#   data      a small synthetic data set in the default model's shapes:
#             dinoclip synth --float16 (4096 rows, 500 images), else
#             python3 + numpy; the training shards are float16, so the GPU's
#             resident copy (float16) and the CPU's host batches hold the
#             same values
#   train     2 epochs of the default model on the GPU, evaluated each epoch,
#             with the training data resident on the GPU (the log must say so)
#   parity    the same first epoch (4 steps, batch 1024) on the CPU engine
#             (host batches) and on the GPU (resident data): per-step losses
#             must agree to 1e-4 relative; and on the GPU with --resident
#             off: its losses must equal the resident run's exactly (the
#             gather converts float16 exactly)
#   eval      dinoclip eval of the GPU-trained model on the GPU (projected
#             and ranked there) and on the CPU: the recall tables are compared
# The exit status is 0 when no part failed. Environment: BIN (bin),
# DINOCLIP (the CLI), CUDA_TEST (the test binary), GIT_COMMIT (else
# BIN/BUILD-INFO). It takes about 3 minutes on an H100; every command runs
# under a time limit.
set -uo pipefail
cd "$(dirname "$0")/.."

OUTDIR=${1:-${OUT:-./gpu-check-out}}
BIN=${BIN:-bin}
CLI=${DINOCLIP:-$BIN/dinoclip-cuda}
TEST=${CUDA_TEST:-$BIN/cuda.test}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
failed=0

say() { echo "$*" | tee -a "$SUMMARY"; }
result() { # NAME STATUS DETAIL
	say "$(printf '%-8s %-4s %s' "$1" "$2" "$3")"
	[ "$2" = FAIL ] && failed=1
	return 0
}
# run LOG LIMIT CMD...: CMD with a time limit, output appended to LOG and
# shown; returns CMD's status.
run() {
	local log=$1 limit=$2
	shift 2
	echo "+ $*" | tee -a "$log"
	timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
	return "${PIPESTATUS[0]}"
}
have_python() { command -v python3 >/dev/null 2>&1; }

commit=${GIT_COMMIT:-}
if [ -z "$commit" ] && [ -f "$BIN/BUILD-INFO" ]; then
	commit=$(sed -n 's/^commit=//p' "$BIN/BUILD-INFO")
fi
say "dinoclip GPU check"
say "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
say "host:    $(hostname)"
say "commit:  ${commit:-unknown}"
[ -f "$BIN/BUILD-INFO" ] && say "build:   $(grep -v '^commit=' "$BIN/BUILD-INFO" | tr '\n' ' ')"

# --- device
log=$OUTDIR/nvidia-smi.txt
: >"$log"
if run "$log" 30 nvidia-smi; then
	gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
	say "device:  ${gpu:-unknown}"
	result device PASS "$gpu"
else
	result device FAIL "nvidia-smi failed: no GPU or driver?"
fi
for f in "$CLI" "$TEST"; do
	if [ ! -x "$f" ]; then
		result build FAIL "$f missing: run make build-cuda on a machine with Go and the CUDA toolkit"
		say "overall: FAIL"
		exit 1
	fi
done

# --- tests
log=$OUTDIR/cuda-test.log
: >"$log"
t0=$SECONDS
if (cd "$(dirname "$TEST")" && run "$log" 300 "./$(basename "$TEST")" -test.v -test.timeout 280s); then
	result tests PASS "$(grep -c '^--- PASS' "$log") tests, $((SECONDS - t0)) s"
else
	result tests FAIL "$(grep -E '^\s*--- FAIL' "$log" | head -5 | tr -s ' \n' ' ') (see cuda-test.log)"
fi
grep -E 'worst relative difference|tests on' "$log" | sed 's/^ */         /' | tee -a "$SUMMARY"

# --- driver (begin) ------------------------------------------------------
# The driver calls gorgonia/cu lacks (package cuda/driver/libcuda, through
# the cu driver's Extended methods) on the real driver: bin/driver.test
# (make build-cuda) launches gelu through cuLaunchKernelEx and compares it
# with cuLaunchKernel (plain, above 48 KiB of dynamic shared memory after
# cuFuncSetAttribute, in clusters of 2 on compute capability 9.0), encodes
# tensor maps for a device buffer (9.0), copies into pinned memory, and
# replays and updates a captured graph of two launches. Env: DRIVER_TEST.
DRIVER_TEST=${DRIVER_TEST:-$BIN/driver.test}
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

# --- tensorcore
log=$OUTDIR/tensorcore-test.log
: >"$log"
t0=$SECONDS
if [ ! -x "$DRIVER_TEST" ]; then
	result tensorcore FAIL "$DRIVER_TEST missing: run make build-cuda"
elif (cd "$(dirname "$DRIVER_TEST")" && run "$log" 300 "./$(basename "$DRIVER_TEST")" -test.run 'TestTC|TestGemmBF16' -test.v -test.timeout 280s); then
	if grep -q '^--- PASS' "$log"; then
		result tensorcore PASS "$(grep -c '^--- PASS' "$log") tests, $(grep -c '^--- SKIP' "$log") skipped, $((SECONDS - t0)) s"
	else
		result tensorcore SKIP "$(grep -m1 -A1 '^--- SKIP' "$log" | tail -1 | tr -s ' ')"
	fi
else
	result tensorcore FAIL "$(grep -E '^\s*--- FAIL' "$log" | head -5 | tr -s ' \n' ' ') (see tensorcore-test.log)"
fi

# --- data
log=$OUTDIR/train.log
: >"$log"
DATA=$WORK/data
EVAL=$WORK/eval
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
	fi
fi
if [ $data_ok = 0 ] && have_python && python3 -c 'import numpy' 2>/dev/null; then
	if run "$log" 120 python3 - "$DATA" "$EVAL" <<'EOF'; then
import json, os, sys
import numpy as np
data, ev = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
din, dout = 768, 512
a = (rng.standard_normal((din, dout)) / np.sqrt(din)).astype(np.float32)
def feats(n):
    return rng.standard_normal((n, din)).astype(np.float32)
def clip(x):
    return np.tanh(x @ a).astype(np.float32)
os.makedirs(data, exist_ok=True)
for s in range(2):  # 2 shards x 2048 rows
    x = feats(2048)
    y = clip(x) + np.float32(0.1) * rng.standard_normal((2048, dout)).astype(np.float32)
    np.save(f"{data}/shard-{s:05d}.dino.npy", x.astype(np.float16))
    np.save(f"{data}/shard-{s:05d}.clip.npy", y.astype(np.float16))
os.makedirs(ev, exist_ok=True)
images, per = 500, 5
x = feats(images)
img = clip(x)
cap = np.repeat(img, per, axis=0) + np.float32(0.3) * rng.standard_normal((images * per, dout)).astype(np.float32)
np.save(f"{ev}/images.dino.npy", x)
np.save(f"{ev}/images.clip.npy", img)
np.save(f"{ev}/captions.clip.npy", cap.astype(np.float32))
np.save(f"{ev}/captions.image.npy", np.repeat(np.arange(images, dtype=np.int64), per))
with open(f"{ev}/eval.json", "w") as f:
    json.dump({"name": "synthetic", "source": "scripts/gpu-check.sh"}, f)
print("wrote", data, "and", ev)
EOF
		data_ok=1
		result data PASS "python3 + numpy: 4096 float16 training rows, 500 images x 5 captions"
	fi
fi
if [ $data_ok = 0 ]; then
	result data SKIP "no dinoclip synth and no python3 with numpy: training, parity and eval skipped"
	for p in train parity eval; do result $p SKIP "no data"; done
	say "overall: $([ $failed = 0 ] && echo PASS || echo FAIL)"
	exit $failed
fi

# --- train: the default model, 2 epochs of 4 steps, evaluated after each,
# with the training data resident on the GPU (--resident auto, the default)
t0=$SECONDS
if run "$log" 240 "$CLI" train --data "$DATA" --eval "$EVAL" --out "$WORK/run-gpu" --epochs 2 --batch 1024 \
	--log-every 1 --device cuda; then
	train_ok=1
	if grep -q 'training data resident on the device' "$log"; then
		result train PASS "default model, 8 steps of 1024 rows, data resident on the GPU, $((SECONDS - t0)) s"
	else
		result train FAIL "trained, but the training data was not resident on the GPU (see train.log)"
	fi
else
	result train FAIL "see train.log"
	train_ok=0
fi

# --- parity: the first epoch on the CPU engine and on the GPU
log=$OUTDIR/parity.log
: >"$log"
if run "$log" 240 "$CLI" train --data "$DATA" --out "$WORK/run-cpu1" --epochs 1 --batch 1024 --log-every 1 --device cpu &&
	run "$log" 120 "$CLI" train --data "$DATA" --out "$WORK/run-gpu1" --epochs 1 --batch 1024 --log-every 1 --device cuda &&
	run "$log" 120 "$CLI" train --data "$DATA" --out "$WORK/run-gpu1-host" --epochs 1 --batch 1024 --log-every 1 --device cuda --resident off; then
	if have_python; then
		if run "$log" 30 python3 - "$WORK/run-cpu1/metrics.jsonl" "$WORK/run-gpu1/metrics.jsonl" "$WORK/run-gpu1-host/metrics.jsonl" <<'EOF'; then
import json, math, sys
def losses(path):
    return [r["loss"] for r in map(json.loads, open(path)) if r.get("type") == "train"]
cpu, gpu, host = losses(sys.argv[1]), losses(sys.argv[2]), losses(sys.argv[3])
if not cpu or len(cpu) != len(gpu) or len(gpu) != len(host):
    sys.exit(f"{len(cpu)} CPU, {len(gpu)} GPU and {len(host)} GPU host-batch training records")
# The GPU is deterministic and both GPU runs see the same float16 values,
# resident or uploaded from the host: the losses must be the same bits.
if gpu != host:
    sys.exit(f"GPU losses with resident data {gpu} differ from those with host batches {host}")
worst = 0.0
for i, (c, g) in enumerate(zip(cpu, gpu), 1):
    d = abs(g - c) / abs(c)
    worst = max(worst, d)
    print(f"step {i}: CPU loss {c:.9g}, GPU loss {g:.9g}, relative difference {d:.3g}")
print(f"resident and host batches on the GPU: identical losses; worst CPU/GPU relative difference {worst:.3g}")
sys.exit(0 if math.isfinite(worst) and worst <= 1e-4 else 1)
EOF
			result parity PASS "$(tail -1 "$log")"
		else
			result parity FAIL "$(tail -1 "$log")"
		fi
	else
		result parity SKIP "both runs finished; no python3 to compare the losses"
	fi
else
	result parity FAIL "a run failed: see parity.log"
fi

# --- eval: the GPU-trained model, projected and ranked on the GPU and on the CPU
log=$OUTDIR/eval.log
: >"$log"
if [ $train_ok = 1 ] &&
	run "$log" 120 "$CLI" eval --model "$WORK/run-gpu" --eval "$EVAL" --device cuda &&
	timeout 120 "$CLI" eval --model "$WORK/run-gpu" --eval "$EVAL" --device cuda --json >"$WORK/eval-gpu.json" 2>>"$log" &&
	timeout 120 "$CLI" eval --model "$WORK/run-gpu" --eval "$EVAL" --device cpu --json >"$WORK/eval-cpu.json" 2>>"$log"; then
	if have_python; then
		if run "$log" 30 python3 - "$WORK/eval-cpu.json" "$WORK/eval-gpu.json" <<'EOF'; then
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
print(f"recall: largest CPU/GPU difference {worst:.3g} points")
sys.exit(0 if worst <= 0.5 else 1)
EOF
			result eval PASS "$(tail -1 "$log")"
		else
			result eval FAIL "$(tail -1 "$log")"
		fi
	else
		result eval PASS "ran on the GPU and the CPU; no python3 to compare"
	fi
else
	result eval FAIL "see eval.log"
fi

say "overall: $([ $failed = 0 ] && echo PASS || echo FAIL)"
exit $failed
