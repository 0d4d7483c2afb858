#!/usr/bin/env bash
# device-run.sh: everything a short GPU lease is for, in one call, building
# nothing on the GPU host. Build here first (make build-cuda: bin/dinoclip-cuda,
# bin/cuda.test, bin/driver.test, bin/BUILD-INFO), carry bin/ to the GPU host,
# and run this there from the repository root:
#
#   scripts/device-run.sh [OUTDIR]      (default $OUT, else ./device-out)
#
# Parts, in order, each under its own time limit:
#   1. nvidia-smi, recorded as the GPU found it (nothing is changed on it);
#   2. scripts/gpu-check.sh: device, kernel tests on the sm_90a cubins and on
#      the portable PTX, the driver calls, the tensor-core primitives and
#      reference GEMMs, a training run, CPU/GPU parity, eval (about 3 min);
#   3. bench/compare.py --device cuda --quick: the training step at batch
#      8192 beside PyTorch (fp32, tf32, bf16 autocast, torch.compile bf16),
#      each GEMM beside torch.matmul, the memory-bound kernels beside the
#      copy bandwidth, top-k (about 2 min; skipped with a note when the
#      host's python3 has no torch);
#   4. bench/search_compare.py --device cuda: the exact GPU search beside
#      torch.mm + torch.topk in float16, at 25k x 5k x 512 and at 10k
#      queries x 10M keys x 512 (streamed in chunks from host memory; torch
#      in chunks of keys resident on the GPU); about 4 min, most of it
#      writing the 10 GB index; needs torch too.
# What comes back (the device tool returns at most 8 files, 2 folders down):
# OUTDIR/summary.txt (the verdicts and the bench table), OUTDIR/logs.tar.gz
# (every log), OUTDIR/results.json and OUTDIR/results.md (the bench).
# The exit status is gpu-check's: 0 only when every check ran and passed.
set -uo pipefail
cd "$(dirname "$0")/.."

OUTDIR=${1:-${OUT:-./device-out}}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

say "== device-run $(date -u +%Y-%m-%dT%H:%M:%SZ) $(cat bin/BUILD-INFO 2>/dev/null | tr '\n' ' ')"
timeout 30 nvidia-smi >"$WORK/nvidia-smi.txt" 2>&1 || say "nvidia-smi failed: see logs"
head -20 "$WORK/nvidia-smi.txt" >>"$SUMMARY"

say "== gpu-check"
timeout --kill-after=10 900 scripts/gpu-check.sh "$WORK/check" >"$WORK/gpu-check.out" 2>&1
check=$?
cat "$WORK/check/summary.txt" >>"$SUMMARY" 2>/dev/null || say "gpu-check wrote no summary (exit $check)"

say "== bench (bench/compare.py --device cuda --quick)"
if "$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
	timeout --kill-after=10 600 "$PY" bench/compare.py --device cuda --quick --ours-bin bin/dinoclip-cuda \
		--timeout 300 --out "$WORK/bench" >"$WORK/bench.out" 2>&1 || say "bench/compare.py failed: see logs (bench.out)"
	cp "$WORK/bench/results.json" "$WORK/bench/results.md" "$OUTDIR/" 2>/dev/null
	cat "$WORK/bench/results.md" >>"$SUMMARY" 2>/dev/null
else
	say "bench: $PY has no torch with CUDA here, so nothing to compare against: not run"
fi

say "== exact search (bench/search_compare.py --device cuda)"
if "$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null; then
	for shape in "25000 5000" "10000 10000000"; do
		set -- $shape
		timeout --kill-after=10 420 "$PY" bench/search_compare.py --device cuda --ours-bin bin/dinoclip-cuda \
			--queries "$1" --keys "$2" --dim 512 --k 10 --rounds 3 --torch-chunk 200000 \
			--out "$WORK/search-$1x$2" >"$WORK/search-$1x$2.out" 2>&1 ||
			say "search_compare $1 x $2 failed: see logs (search-$1x$2.out)"
		cat "$WORK/search-$1x$2/search.md" >>"$SUMMARY" 2>/dev/null
	done
else
	say "search: $PY has no torch with CUDA here: not run"
fi

tar -czf "$OUTDIR/logs.tar.gz" -C "$WORK" . 2>/dev/null
say "== gpu-check exit status $check"
exit "$check"
