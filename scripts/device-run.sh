#!/usr/bin/env bash
# device-run.sh: everything a short GPU lease is for, in one call, building
# nothing on the GPU host. Build here first (make build-cuda: bin/dinoclip-cuda,
# bin/cuda.test, bin/driver.test, bin/BUILD-INFO, 43 MB), carry those four
# files to the GPU host (not all of bin/: the CPU build beside them takes
# it to 68 MB), and run this there from the repository root:
#
#   scripts/device-run.sh [OUTDIR]      (default $OUT, else ./device-out)
#
# Whatever runs this must allow it DEVICE_RUN_LIMIT + 20 s: a stage killed
# at the limit has 10 s to go, and logs.tar.gz is written last. It is
# also written after every stage, so that a run killed from outside
# still brings back the logs of the stages it finished.
#
# Stages, in order, each under its own time limit and all of them under
# DEVICE_RUN_LIMIT seconds together, 295 by default (a short lease: the
# checks and the target bench in under 5 minutes, time left to run it
# again); a stage gets what is left when its limit is larger, and a bench
# with under DEVICE_RUN_MIN_STAGE (45 s) left (a search shape: under
# SEARCH_MIN_STAGE, 25 s) is skipped and says so:
#   1. nvidia-smi, and the clocks, temperature and power as the GPU was
#      found (read only: nothing on the GPU is changed); whether the
#      carried binaries load here (they need the C library of the machine
#      that built them, glibc 2.34 or later from Debian 12: an older host
#      refuses each of them, which the summary says once, up front);
#   2. scripts/gpu-check.sh (GPU_CHECK_LIMIT, 110 s): the kernel tests on the
#      sm_90a cubins and again on the portable PTX, the driver calls, the
#      tensor-core primitives and reference GEMMs, training in bf16 (the
#      GPU's default precision), CPU/GPU parity in fp32, eval;
#   2b. with DEVICE_RUN_SANITIZER=1 (a diagnosis, when gpu-check failed;
#      DEVICE_RUN_LIMIT then defaults to 560), compute-sanitizer on
#      bin/cuda.test (SANITIZER_LIMIT, 120 s: 2/3 for memcheck, 1/3 for
#      racecheck): memcheck over the kernel tests of the bf16 engine, the
#      first-use checks and the search (out-of-bounds and misaligned
#      accesses, errors), then racecheck over those of the row kernels
#      (grad rows, LayerNorm, the output LayerNorm + loss, AdamW, the
#      casts: shared-memory hazards) on the portable PTX, so that no
#      wgmma, TMA or mbarrier runs under it (it slows a kernel a
#      hundredfold, and a wait past 10 s traps); each run's ERROR SUMMARY
#      line, or its absence, and its failed tests in the summary;
#   3. the target bench (BENCH_TARGET_LIMIT, 130 s): bench/compare.py
#      --device cuda at batch 8192, the batch of the step target (bench/README.md):
#      dinoclip bf16 (step, every kernel timed, top-k) and fp32 (step),
#      PyTorch eager fp32, tf32, bf16 autocast and torch.compile bf16,
#      each GEMM beside torch.matmul at its shape and layout, the
#      memory-bound kernels beside the copy bandwidth, the targets as met /
#      missed by how much / unmeasured;
#   4. the exact search (SEARCH_LIMIT, 55 s): bench/search_compare.py
#      --device cuda, the GPU search beside torch.mm + torch.topk in
#      float16 at 25k queries x 5k keys x 512, with and without the copy of
#      the keys to the GPU, and against the roofline; with
#      DEVICE_RUN_SEARCH_10M=1 also at 10k queries x 10M keys x 512 (about
#      4 min, most of it writing the 10 GB index: raise DEVICE_RUN_LIMIT
#      and SEARCH_LIMIT); needs torch;
#   5. max-autotune (BENCH_AUTOTUNE_LIMIT, 150 s): the step at batch 8192,
#      dinoclip bf16 beside torch.compile(mode="max-autotune"), which
#      compiles for minutes: in a call of its own, so that a slow compile
#      cannot take the target bench's PyTorch rows with it;
#   6. the batch sweep (what is left): the training steps alone at batch
#      1024, 2048, 4096 and 16384, dinoclip bf16 and fp32 beside PyTorch
#      eager fp32, tf32, bf16 autocast and torch.compile bf16.
# Stages 5 and 6 run with what the first four left of the total: with
# DEVICE_RUN_LIMIT=560 (a call of its own) they have their time.
# The benches (stages 3 to 6) run with DINOCLIP_CUDA_CHECK=warn (or the
# value the caller set): an engine or a search that fails its first-use
# check runs anyway and is timed, marked UNCHECKED in the summary, so that
# a check that wrongly refuses a good GPU does not cost the lease its
# numbers; gpu-check and compute-sanitizer run without it (gpu-check gives
# the verdict).
# Where a stage is killed at its limit, the summary says so and the next
# stage still runs.
#
# What comes back (the device tool returns at most 8 files, 2 folders down):
# OUTDIR/summary.txt (the verdicts and the bench tables), OUTDIR/logs.tar.gz
# (every log and both sides' raw reports), OUTDIR/results-8192.{json,md}
# OUTDIR/results-autotune.{json,md} and OUTDIR/results-sweep.{json,md}
# (bench/compare.py's results; --render
# rebuilds the tables from a results.json).
# Exit status 0 only when gpu-check passed and the target bench wrote its
# results; else 1 (2: bad usage).
#
# Environment: DEVICE_RUN_LIMIT (295 s; 560 with DEVICE_RUN_SANITIZER=1), GPU_CHECK_LIMIT (110 s),
# BENCH_TARGET_LIMIT (130 s), SEARCH_LIMIT (55 s), BENCH_AUTOTUNE_LIMIT
# (150 s), DEVICE_RUN_SEARCH_10M (0), DEVICE_RUN_SANITIZER (0), SANITIZER_LIMIT
# (120 s), COMPUTE_SANITIZER (compute-sanitizer on the PATH, else
# /usr/local/cuda/bin's), CUDA_TEST (BIN/cuda.test), PYTHON (python3), BIN (bin), NVIDIA_SMI
# (nvidia-smi), GPU_CHECK (scripts/gpu-check.sh), GPU_CHECK_FLAGS (its
# flags, e.g. --allow-skip parity,eval), DEVICE_RUN_MIN_STAGE (45 s: a bench
# stage with less time left is skipped), SEARCH_MIN_STAGE (25 s: likewise
# for a search shape, which at 25k x 5k takes seconds beside torch's
# import). scripts/gpu_check_test.go runs this
# script with fake binaries and a fake python3.
set -uo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in -*) echo "usage: scripts/device-run.sh [OUTDIR]" >&2; exit 2 ;; esac
[ $# -le 1 ] || { echo "usage: scripts/device-run.sh [OUTDIR]" >&2; exit 2; }
OUTDIR=${1:-${OUT:-./device-out}}
PY=${PYTHON:-python3}
BIN=${BIN:-bin}
SMI=${NVIDIA_SMI:-nvidia-smi}
CHECK=${GPU_CHECK:-scripts/gpu-check.sh}
read -r -a CHECK_FLAGS <<<"${GPU_CHECK_FLAGS:-}"
SANITIZE=${DEVICE_RUN_SANITIZER:-0}
BENCH_CHECK=${DINOCLIP_CUDA_CHECK-warn} # the benches' setting (above; set but empty is on)
unset DINOCLIP_CUDA_CHECK
case $BENCH_CHECK in '' | on | warn) ;; *) echo "device-run.sh: DINOCLIP_CUDA_CHECK=$BENCH_CHECK: want warn or on (or unset)" >&2; exit 2 ;; esac
SANITIZER_LIMIT=${SANITIZER_LIMIT:-120}
# (With compute-sanitizer the benches need the longer call's time.)
TOTAL=${DEVICE_RUN_LIMIT:-$([ "$SANITIZE" = 1 ] && echo 560 || echo 295)}
MIN_STAGE=${DEVICE_RUN_MIN_STAGE:-45} # a bench with less time than this left is skipped
SEARCH_MIN=${SEARCH_MIN_STAGE:-25}    # likewise a search shape
for v in "$TOTAL" "${GPU_CHECK_LIMIT:-110}" "${BENCH_TARGET_LIMIT:-130}" "${BENCH_AUTOTUNE_LIMIT:-150}" "${SEARCH_LIMIT:-55}" "$SANITIZER_LIMIT" "$MIN_STAGE" "$SEARCH_MIN"; do
	case $v in '' | *[!0-9]*) echo "device-run.sh: time limits are whole seconds, not '$v'" >&2; exit 2 ;; esac
done
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
START=$SECONDS
left() { echo $((TOTAL - (SECONDS - START))); }
# limit WANT: WANT seconds, or what is left of the total when less.
limit() { local l; l=$(left); echo $((l < $1 ? l : $1)); }
# boxed NAME LIMIT LOG CMD...: CMD under LIMIT seconds (then killed), its
# output in LOG; says in the summary when it was killed. Returns CMD's status.
boxed() {
	local name=$1 lim=$2 log=$3 t0=$SECONDS rc
	shift 3
	[ "$lim" -ge 1 ] || lim=1 # timeout 0 would mean no limit
	echo "+ $*" >"$log"
	timeout --kill-after=10 "$lim" "$@" >>"$log" 2>&1
	rc=$?
	if [ $rc = 124 ] || [ $rc = 137 ]; then
		say "$name: KILLED at its limit of $lim s (see $(basename "$log") in logs.tar.gz)"
	else
		say "$name: exit status $rc after $((SECONDS - t0)) s"
	fi
	return $rc
}

# pack_logs writes every log so far into OUTDIR/logs.tar.gz, whole or not
# at all (a kill mid-write leaves the last whole one).
pack_logs() {
	# (GNU tar's status 1: a file changed as it was read, a log being
	# written; the archive is whole.)
	tar -czf "$OUTDIR/logs.tar.gz.part" -C "$WORK" . 2>/dev/null
	if [ $? -le 1 ]; then
		mv -f "$OUTDIR/logs.tar.gz.part" "$OUTDIR/logs.tar.gz"
	else
		rm -f "$OUTDIR/logs.tar.gz.part"
	fi
}

say "== device-run $(date -u +%Y-%m-%dT%H:%M:%SZ) $(tr '\n' ' ' <"$BIN/BUILD-INFO" 2>/dev/null)"
say "limits: $TOTAL s in all; gpu-check ${GPU_CHECK_LIMIT:-110} s,$([ "$SANITIZE" = 1 ] && echo " compute-sanitizer $SANITIZER_LIMIT s,") target bench ${BENCH_TARGET_LIMIT:-130} s, search ${SEARCH_LIMIT:-55} s, max-autotune ${BENCH_AUTOTUNE_LIMIT:-150} s, the sweep what is left"
timeout 30 "$SMI" >"$WORK/nvidia-smi.txt" 2>&1 || say "nvidia-smi failed: see logs"
head -20 "$WORK/nvidia-smi.txt" >>"$SUMMARY"
# The state the GPU was found in, read only (clocks are not locked: a
# throttled or idle-clocked GPU shows here, and in the bench's spread).
timeout 30 "$SMI" --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw,power.limit \
	--format=csv >>"$SUMMARY" 2>&1 || say "nvidia-smi --query-gpu failed"
# Each carried binary, run to do nothing: one that the loader refuses
# (an older C library, a missing libcuda.so.1) fails every stage alike,
# and says why here rather than in every log.
for b in dinoclip-cuda:--help cuda.test:-test.list=^$ driver.test:-test.list=^$; do
	f=$BIN/${b%%:*}
	[ -x "$f" ] || { say "$f: missing (make build-cuda, then carry it)"; continue; }
	timeout 30 "$f" "${b#*:}" >"$WORK/load-${b%%:*}.txt" 2>&1 ||
		say "$f does not run here (every stage that uses it fails): $(head -c 300 "$WORK/load-${b%%:*}.txt" | tr -s '\n' ' ')"
done
pack_logs

say "== gpu-check"
lim=$(limit "${GPU_CHECK_LIMIT:-110}")
boxed gpu-check "$lim" "$WORK/gpu-check.out" "$CHECK" "${CHECK_FLAGS[@]}" "$WORK/check"
check=$?
cat "$WORK/check/summary.txt" >>"$SUMMARY" 2>/dev/null || say "gpu-check wrote no summary"
pack_logs

if [ "$SANITIZE" = 1 ]; then
	say "== compute-sanitizer (DEVICE_RUN_SANITIZER=1)"
	TEST=${CUDA_TEST:-$BIN/cuda.test}
	# sanitize TOOL WANT TESTS [ENV...]: TEST's tests matching TESTS under
	# TOOL (its own exit status 86 on errors: a failing test exits 1), in
	# WANT seconds or what is left, with ENV set.
	sanitize() {
		local tool=$1 lim out=$WORK/sanitizer-$1.out
		lim=$(limit "$2")
		if [ "$lim" -lt 10 ]; then
			say "compute-sanitizer $tool: SKIPPED: $(left) s of the $TOTAL s left"
			return
		fi
		(cd "$(dirname "$TEST")" && boxed "compute-sanitizer $tool" "$lim" "$out" env "${@:4}" "$SAN" --tool "$tool" \
			--error-exitcode 86 --print-limit 20 "./$(basename "$TEST")" -test.run "$3" -test.short -test.v)
		local errs
		errs=$(grep -m1 "ERROR SUMMARY" "$out")
		say "compute-sanitizer $tool: ${errs:-no ERROR SUMMARY line (see $(basename "$out") in logs.tar.gz)}"
		grep -E '^\s*--- FAIL' "$out" | head -5 | sed "s/^/compute-sanitizer $tool: /" | tee -a "$SUMMARY"
	}
	# (compute-sanitizer is often installed off the PATH.)
	SAN=$(command -v "${COMPUTE_SANITIZER:-compute-sanitizer}" || command -v /usr/local/cuda/bin/compute-sanitizer)
	if [ -z "$SAN" ]; then
		say "compute-sanitizer: ${COMPUTE_SANITIZER:-compute-sanitizer} not found here (nor /usr/local/cuda/bin/compute-sanitizer): not run"
	else
		# memcheck: the bf16 engine's kernels, the first-use checks and the
		# search; racecheck: the row kernels alone, on the portable PTX (no
		# wgmma, TMA or mbarrier anywhere, none of which it should judge).
		sanitize memcheck $((SANITIZER_LIMIT * 2 / 3)) '^(TestGemmBF16Launcher|TestGemmBF16BackwardLaunchers|TestGemmBF16FusedEpilogues|TestGradRows|TestLayerNormBF16Input|TestOutNormMSE|TestAdamWBF16|TestCastBF16|TestInfoNCEBF16|TestCheckBF16GEMMsPasses|TestSearchCheck|TestSearcherContract|TestEngineBF16Paths|TestEngineCheckPasses)$'
		sanitize racecheck $((SANITIZER_LIMIT / 3)) '^(TestGradRows|TestLayerNormBF16Input|TestOutNormMSE|TestAdamWBF16|TestCastBF16)$' DINOCLIP_CUDA_KERNELS=ptx
	fi
	pack_logs
fi

# bench NAME WANT ARGS...: bench/compare.py --device cuda into WORK/NAME under
# WANT seconds or what is left. compare.py's own --budget ends it 15 s
# before the kill, so that a side that runs long is recorded as failed and
# what the others measured is still written; each side may take 3/4 of it.
bench_ok=0
bench() {
	local name=$1 want=$2 lim
	shift 2
	lim=$(limit "$want")
	if [ "$lim" -lt "$MIN_STAGE" ]; then
		say "bench $name: SKIPPED: $(left) s of the $TOTAL s left"
		return 1
	fi
	boxed "bench $name" "$lim" "$WORK/bench-$name.out" env DINOCLIP_CUDA_CHECK="$BENCH_CHECK" "$PY" bench/compare.py --device cuda --ours-bin "$BIN/dinoclip-cuda" \
		--timeout $((lim * 3 / 4)) --budget $((lim > 30 ? lim - 15 : lim / 2)) --out "$WORK/bench-$name" "$@"
	# compare.py writes each file whole (temporary and rename), results.md
	# first: a stage killed while writing leaves no results.json.
	if [ -f "$WORK/bench-$name/results.json" ] && [ -f "$WORK/bench-$name/results.md" ] &&
		cp "$WORK/bench-$name/results.json" "$OUTDIR/results-$name.json" &&
		cp "$WORK/bench-$name/results.md" "$OUTDIR/results-$name.md"; then
		cat "$WORK/bench-$name/results.md" >>"$SUMMARY"
		pack_logs
		return 0
	fi
	say "bench $name: no results (see bench-$name.out in logs.tar.gz)"
	pack_logs
	return 1
}

say "== bench at batch 8192 (the GPU engine's targets)"
bench 8192 "${BENCH_TARGET_LIMIT:-130}" --batches 8192 --modes fp32,tf32,bf16,compile_bf16 && bench_ok=1

say "== exact search (bench/search_compare.py --device cuda)"
# search SHAPE...: each "QUERIES KEYS" under SEARCH_LIMIT or what is left.
search() {
	local lim
	for shape in "$@"; do
		set -- $shape
		lim=$(limit "${SEARCH_LIMIT:-55}")
		if [ "$lim" -lt "$SEARCH_MIN" ]; then
			say "search $1 x $2: SKIPPED: $(left) s of the $TOTAL s left"
			continue
		fi
		boxed "search $1 x $2" "$lim" "$WORK/search-$1x$2.out" env DINOCLIP_CUDA_CHECK="$BENCH_CHECK" "$PY" bench/search_compare.py --device cuda \
			--ours-bin "$BIN/dinoclip-cuda" --queries "$1" --keys "$2" --dim 512 --k 10 --rounds 3 --torch-chunk 200000 \
			--out "$WORK/search-$1x$2"
		cat "$WORK/search-$1x$2/search.md" >>"$SUMMARY" 2>/dev/null
		pack_logs
	done
}
shapes=("25000 5000")
[ "${DEVICE_RUN_SEARCH_10M:-0}" = 1 ] && shapes+=("10000 10000000")
if [ "$(limit "${SEARCH_LIMIT:-55}")" -lt "$SEARCH_MIN" ]; then
	say "search: SKIPPED: $(left) s of the $TOTAL s left"
elif ! timeout "$(limit 30)" "$PY" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
	say "search: $PY has no torch with CUDA here: not run"
else
	search "${shapes[@]}"
fi

say "== bench: torch.compile max-autotune at batch 8192 (training step)"
bench autotune "${BENCH_AUTOTUNE_LIMIT:-150}" --batches 8192 --modes compile_max_autotune --precisions bf16 \
	--ours-args="--kernels=false --topk=false --data=false" --torch-args="--no-gemm --no-copy --no-topk"

say "== bench sweep: batch 1024, 2048, 4096, 16384 (training steps)"
bench sweep "$TOTAL" --batches 1024,2048,4096,16384 --modes fp32,tf32,bf16,compile_bf16 \
	--ours-args="--kernels=false --topk=false --data=false" --torch-args="--no-gemm --no-copy --no-topk"

pack_logs
# A bf16 engine whose wgmma GEMMs fail their check at open (cuda/gemm_check.go)
# runs the mma.sync ones, and a GPU search that fails its check
# (cuda/search_check.go) searches on the CPU; each warns, and the rows
# measured after it are those. (gpu-check's logs are not searched: its
# tests provoke the warnings.)
fallback=$(cat "$WORK"/bench-*.out 2>/dev/null | grep -m1 "wgmma GEMMs failed their check")
[ -z "$fallback" ] || say "WGMMA FALLBACK: the bf16 engine ran its GEMMs on the mma.sync kernels in the bench: $(echo "$fallback" | head -c 600)"
# (search_compare.py refuses a search that ran on the CPU, quoting why in
# its traceback's last line; compare.py passes the engine's warning on.)
fallback=$(cat "$WORK"/bench-*.out "$WORK"/search-*.out 2>/dev/null |
	grep -E -m1 "^RuntimeError: .*GPU search failed its check|GPU search failed its check on this GPU; searches run on the CPU")
[ -z "$fallback" ] || say "SEARCH FALLBACK: the GPU search ran on the CPU: $(echo "$fallback" | head -c 600)"
# Under DINOCLIP_CUDA_CHECK=warn, what failed its check runs anyway: its
# rows are timings of code proven wrong on this GPU (each warning names
# why; compare.py's prefix and the log's time stripped, each said once).
# A search's is in its table above (search_compare.py keeps dinoclip's
# output to itself).
cat "$WORK"/bench-*.out 2>/dev/null | grep "DINOCLIP_CUDA_CHECK=warn asks" |
	sed -E 's/^ *[A-Za-z0-9_-]+\| //; s/^[0-9]{4}\/[0-9]{2}\/[0-9]{2} [0-9:]{8} //' | sort -u | head -5 |
	while IFS= read -r line; do say "UNCHECKED in the benches (their rows time code that failed its check): $(echo "$line" | head -c 600)"; done
say "== done in $((SECONDS - START)) s; gpu-check exit status $check; target bench $([ $bench_ok = 1 ] && echo wrote its results || echo FAILED)"
[ "$check" = 0 ] && [ $bench_ok = 1 ]
